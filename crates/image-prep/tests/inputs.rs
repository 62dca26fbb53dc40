//! Every kind of input the shard step meets: the JPEG variants to accept, and the bad
//! files to refuse with a clear reason (never a panic).

use shardfeed_image_prep::{ColorModel, DecodeOptions, Decoder, Error, Preparer, RgbImage};
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

/// A 120×90 test pattern.
fn pattern(width: usize, height: usize) -> Vec<u8> {
    (0..width * height)
        .flat_map(|i| {
            let (x, y) = (i % width, i / width);
            [(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8]
        })
        .collect()
}

fn encode(
    pixels: &[u8],
    width: usize,
    height: usize,
    format: PixelFormat,
    subsamp: Subsamp,
    progressive: bool,
) -> Vec<u8> {
    let mut compressor = Compressor::new().unwrap();
    compressor.set_quality(90).unwrap();
    compressor.set_subsamp(subsamp).unwrap();
    compressor.set_progressive(progressive).unwrap();
    let image = Image {
        pixels,
        width,
        pitch: width * format.size(),
        height,
        format,
    };
    compressor.compress_to_vec(image).unwrap()
}

fn rgb_jpeg(width: usize, height: usize) -> Vec<u8> {
    encode(
        &pattern(width, height),
        width,
        height,
        PixelFormat::RGB,
        Subsamp::Sub2x2,
        false,
    )
}

fn preparer() -> Preparer {
    Preparer::new(64, 95, DecodeOptions::default()).unwrap()
}

/// Decodes the prepared record image again: it must be a 64×64 colour JPEG.
fn assert_prepares(jpeg: &[u8]) -> RgbImage {
    let mut preparer = preparer();
    let record = preparer.prepare(jpeg).unwrap();
    let mut decoder = Decoder::new().unwrap();
    let info = decoder.probe(&record).unwrap();
    assert_eq!(
        (info.width, info.height, info.color),
        (64, 64, ColorModel::Color)
    );
    decoder
        .decode(&record, &DecodeOptions::default(), None)
        .unwrap()
}

#[test]
fn the_jpeg_variants_we_must_accept_all_prepare() {
    let (w, h) = (120, 90);
    for (name, jpeg) in [
        ("baseline 4:2:0", rgb_jpeg(w, h)),
        (
            "4:2:2",
            encode(
                &pattern(w, h),
                w,
                h,
                PixelFormat::RGB,
                Subsamp::Sub2x1,
                false,
            ),
        ),
        (
            "4:4:4",
            encode(&pattern(w, h), w, h, PixelFormat::RGB, Subsamp::None, false),
        ),
        (
            "progressive",
            encode(
                &pattern(w, h),
                w,
                h,
                PixelFormat::RGB,
                Subsamp::Sub2x2,
                true,
            ),
        ),
        ("portrait", rgb_jpeg(90, 120)),
        ("extreme aspect 2000×50", rgb_jpeg(2000, 50)),
        ("smaller than the target", rgb_jpeg(20, 30)),
        ("1×1", rgb_jpeg(1, 1)),
    ] {
        let image = assert_prepares(&jpeg);
        assert_eq!(image.pixels.len(), 64 * 64 * 3, "{name}");
    }
}

#[test]
fn grayscale_is_expanded_to_rgb() {
    let gray: Vec<u8> = (0..100 * 80).map(|i| (i % 251) as u8).collect();
    let jpeg = encode(&gray, 100, 80, PixelFormat::GRAY, Subsamp::Gray, false);
    assert_eq!(
        Decoder::new().unwrap().probe(&jpeg).unwrap().color,
        ColorModel::Gray
    );
    let decoded = Decoder::new()
        .unwrap()
        .decode(&jpeg, &DecodeOptions::default(), None)
        .unwrap();
    assert!(
        decoded
            .pixels
            .chunks(3)
            .all(|p| p[0] == p[1] && p[1] == p[2]),
        "R = G = B"
    );
    assert_prepares(&jpeg);
}

#[test]
fn cmyk_is_converted_to_rgb() {
    // Adobe-style inverted CMYK: K = 255 is "no black"; C = M = Y = 255 is "no ink".
    let cmyk: Vec<u8> = (0..64 * 48)
        .flat_map(|i| [255, (i % 256) as u8, 128, 255])
        .collect();
    let jpeg = encode(&cmyk, 64, 48, PixelFormat::CMYK, Subsamp::None, false);
    assert_eq!(
        Decoder::new().unwrap().probe(&jpeg).unwrap().color,
        ColorModel::Cmyk
    );
    let decoded = Decoder::new()
        .unwrap()
        .decode(&jpeg, &DecodeOptions::default(), None)
        .unwrap();
    assert_eq!(decoded.pixels.len(), 64 * 48 * 3);
    let (r, b): (Vec<u8>, Vec<u8>) = decoded.pixels.chunks(3).map(|p| (p[0], p[2])).unzip();
    let mean = |v: &[u8]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    assert!(
        (mean(&r) - 255.0).abs() < 4.0 && (mean(&b) - 128.0).abs() < 4.0,
        "{} {}",
        mean(&r),
        mean(&b)
    );
    assert_prepares(&jpeg);
}

#[test]
fn bad_files_are_refused_with_a_reason() {
    let good = rgb_jpeg(120, 90);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let truncated = good[..good.len() / 2].to_vec();
    let mut mangled = good.clone();
    mangled.truncate(200); // inside the headers
    for (name, bytes, want) in [
        ("zero bytes", Vec::new(), "not a JPEG file (empty file)"),
        ("a PNG named .jpg", png, "not a JPEG file (a PNG image)"),
        (
            "random bytes",
            random,
            "not a JPEG file (no JPEG start-of-image marker)",
        ),
        ("truncated", truncated, "invalid JPEG: "),
        ("cut in the headers", mangled, "invalid JPEG: "),
    ] {
        let error = preparer().prepare(&bytes).expect_err(name).to_string();
        assert!(error.starts_with(want), "{name}: {error}");
    }
}

#[test]
fn a_huge_header_is_refused_before_allocating() {
    let mut jpeg = rgb_jpeg(16, 16);
    // Rewrite the SOF0 frame size (FF C0, length, precision, height, width) to 20000×20000.
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline SOF0 marker");
    jpeg[sof + 5..sof + 7].copy_from_slice(&20000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&20000u16.to_be_bytes());
    match preparer().prepare(&jpeg) {
        Err(Error::TooLarge {
            width: 20000,
            height: 20000,
            limit,
        }) => assert_eq!(limit, 100_000_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn dct_scaling_decodes_smaller_and_stays_close() {
    let jpeg = rgb_jpeg(800, 600);
    let scaled = DecodeOptions {
        dct_scaling: true,
        ..DecodeOptions::default()
    };
    let decoded = Decoder::new()
        .unwrap()
        .decode(&jpeg, &scaled, Some(64))
        .unwrap();
    assert_eq!(
        (decoded.width, decoded.height),
        (100, 75),
        "1/8 keeps 600/8 = 75 ≥ 64"
    );
    let mut exact = preparer();
    let mut fast = Preparer::new(64, 95, scaled).unwrap();
    let (a, b) = (
        exact.resize_and_crop(&jpeg).unwrap(),
        fast.resize_and_crop(&jpeg).unwrap(),
    );
    let mean = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.pixels.len() as f64;
    assert!(mean < 8.0, "mean |diff| {mean}");
}

/// `Preparer::check(.., true)` (`shard --resize keep`'s check: the entropy-coded data read
/// at the 1/8 DCT scale) refuses exactly the damaged files a full decode refuses: every
/// truncation point of a baseline and a progressive JPEG, and a byte overwritten at many
/// places of their scans.
#[test]
fn the_eighth_scale_check_refuses_what_a_full_decode_refuses() {
    let pixels = pattern(120, 90);
    let mut preparer = preparer();
    let mut decoder = Decoder::new().unwrap();
    let full = DecodeOptions::default();
    let mut refused = 0;
    for progressive in [false, true] {
        let jpeg = encode(
            &pixels,
            120,
            90,
            PixelFormat::RGB,
            Subsamp::Sub2x2,
            progressive,
        );
        let mut damaged: Vec<Vec<u8>> = (200..jpeg.len())
            .step_by(7)
            .map(|cut| jpeg[..cut].to_vec())
            .collect();
        for at in (300..jpeg.len() - 2).step_by(11) {
            for value in [0x00, 0xFF, 0x5A] {
                let mut bytes = jpeg.clone();
                bytes[at] = value;
                damaged.push(bytes);
            }
        }
        for bytes in &damaged {
            let by_check = preparer.check(bytes, true).is_err();
            let by_decode = decoder.decode(bytes, &full, None).is_err();
            assert_eq!(
                by_check,
                by_decode,
                "{} bytes, progressive {progressive}",
                bytes.len()
            );
            refused += usize::from(by_check);
        }
    }
    assert!(refused > 100, "the damage is found: {refused}");
}
