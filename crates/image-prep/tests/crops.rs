//! The fused crop (only the region decoded, at a DCT scale) against the reference path (the
//! whole image decoded, the box cut out, resized with the same filter), on JPEGs of every
//! chroma subsampling, odd sizes, restart markers, grayscale and CMYK; and the crop sampling
//! rule's statistics against torchvision's, computed independently.

use std::ffi::c_int;

use shardfeed_image_prep::augment::RandomResizedCrop;
use shardfeed_image_prep::crop::{CropBox, CropResizer};
use shardfeed_image_prep::{DecodeOptions, Decoder, RgbImage};
use turbojpeg::raw;

/// A photo-like image: smooth gradients and low-frequency waves, per channel.
fn photo(width: usize, height: usize, channels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height * channels);
    for y in 0..height {
        for x in 0..width {
            for c in 0..channels {
                let (fx, fy) = (x as f64 / width as f64, y as f64 / height as f64);
                let wave =
                    ((fx * (3.0 + c as f64) * 3.1).sin() * (fy * 4.3 + c as f64).cos()) * 60.0;
                let v = 128.0 + wave + (fx - 0.5) * 80.0 - (fy - 0.5) * 50.0;
                out.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Encodes with TurboJPEG's own API: `format` a `TJPF`, `subsamp` a `TJSAMP`, restart markers
/// every `restart_rows` MCU rows (0: none).
fn encode(
    pixels: &[u8],
    width: usize,
    height: usize,
    format: raw::TJPF,
    subsamp: raw::TJSAMP,
    restart_rows: c_int,
) -> Vec<u8> {
    // SAFETY: plain TurboJPEG calls on a handle made here and destroyed at the end; the pixel
    // buffer holds height rows of width × pixel size bytes; TurboJPEG allocates the output.
    unsafe {
        let handle = raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as c_int);
        assert!(!handle.is_null());
        assert_eq!(
            raw::tj3Set(handle, raw::TJPARAM_TJPARAM_QUALITY as c_int, 90),
            0
        );
        assert_eq!(
            raw::tj3Set(handle, raw::TJPARAM_TJPARAM_SUBSAMP as c_int, subsamp),
            0
        );
        assert_eq!(
            raw::tj3Set(
                handle,
                raw::TJPARAM_TJPARAM_RESTARTROWS as c_int,
                restart_rows
            ),
            0
        );
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut size: raw::size_t = 0;
        let status = raw::tj3Compress8(
            handle,
            pixels.as_ptr(),
            width as c_int,
            0,
            height as c_int,
            format as c_int,
            &mut out,
            &mut size,
        );
        assert_eq!(status, 0, "compress failed");
        let jpeg = std::slice::from_raw_parts(out, size as usize).to_vec();
        raw::tj3Free(out.cast());
        raw::tj3Destroy(handle);
        jpeg
    }
}

/// The variants: (name, JPEG).
fn variants() -> Vec<(&'static str, Vec<u8>)> {
    let (w, h) = (333, 251);
    let rgb = photo(w, h, 3);
    let mut out = vec![];
    for (name, samp) in [
        ("4:4:4", raw::TJSAMP_TJSAMP_444),
        ("4:2:2", raw::TJSAMP_TJSAMP_422),
        ("4:2:0", raw::TJSAMP_TJSAMP_420),
        ("4:4:0", raw::TJSAMP_TJSAMP_440),
        ("4:1:1", raw::TJSAMP_TJSAMP_411),
    ] {
        out.push((name, encode(&rgb, w, h, raw::TJPF_TJPF_RGB, samp, 0)));
    }
    out.push((
        "4:2:0 restart markers",
        encode(&rgb, w, h, raw::TJPF_TJPF_RGB, raw::TJSAMP_TJSAMP_420, 1),
    ));
    out.push((
        "grayscale",
        encode(
            &photo(w, h, 1),
            w,
            h,
            raw::TJPF_TJPF_GRAY,
            raw::TJSAMP_TJSAMP_GRAY,
            0,
        ),
    ));
    out.push((
        "CMYK",
        encode(
            &photo(w, h, 4),
            w,
            h,
            raw::TJPF_TJPF_CMYK,
            raw::TJSAMP_TJSAMP_444,
            0,
        ),
    ));
    out.push((
        "even 4:2:0",
        encode(
            &photo(640, 480, 3),
            640,
            480,
            raw::TJPF_TJPF_RGB,
            raw::TJSAMP_TJSAMP_420,
            0,
        ),
    ));
    out
}

/// The reference: the whole image decoded, the integer box cut out, resized.
fn reference(jpeg: &[u8], crop: CropBox, out: u32) -> RgbImage {
    let whole = Decoder::new()
        .unwrap()
        .decode(jpeg, &DecodeOptions::default(), None)
        .unwrap();
    let (w, h) = (crop.width as u32, crop.height as u32);
    let cut = whole.cut(crop.left as u32, crop.top as u32, w, h);
    CropResizer::new()
        .resize(&cut, CropBox::whole(w, h), (out, out))
        .unwrap()
}

fn fused(jpeg: &[u8], crop: CropBox, out: u32, dct_scaling: bool) -> (RgbImage, u32) {
    let options = DecodeOptions {
        dct_scaling,
        ..DecodeOptions::default()
    };
    let decoded = Decoder::new()
        .unwrap()
        .decode_crop(jpeg, &options, crop, (out, out))
        .unwrap();
    let image = CropResizer::new()
        .resize(&decoded.image, decoded.within, (out, out))
        .unwrap();
    (image, decoded.eighths)
}

fn max_difference(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.pixels
        .iter()
        .zip(&b.pixels)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap()
}

/// A fixed uniform source (SplitMix64).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn the_region_decode_equals_the_whole_decode_cropped() {
    let rrc = RandomResizedCrop::default();
    for (name, jpeg) in variants() {
        let info = Decoder::new().unwrap().probe(&jpeg).unwrap();
        let mut draw = uniform(7);
        for i in 0..25 {
            let crop = rrc.sample(info.width, info.height, &mut draw);
            let expected = reference(&jpeg, crop, 64);
            let (got, eighths) = fused(&jpeg, crop, 64, false);
            assert_eq!(eighths, 8);
            let diff = max_difference(&got, &expected);
            assert!(
                diff == 0,
                "{name}, crop {i} {crop:?}: the region decode differs by {diff} levels"
            );
        }
    }
}

#[test]
fn the_scaled_region_decode_stays_close_to_the_reference() {
    let rrc = RandomResizedCrop::default();
    let mut scales_seen = std::collections::BTreeSet::new();
    for (name, jpeg) in variants() {
        let info = Decoder::new().unwrap().probe(&jpeg).unwrap();
        let mut draw = uniform(11);
        for i in 0..25 {
            let crop = rrc.sample(info.width, info.height, &mut draw);
            let expected = reference(&jpeg, crop, 48);
            let (got, eighths) = fused(&jpeg, crop, 48, true);
            scales_seen.insert(eighths);
            let diff = max_difference(&got, &expected);
            let mean = got
                .pixels
                .iter()
                .zip(&expected.pixels)
                .map(|(a, b)| f64::from(a.abs_diff(*b)))
                .sum::<f64>()
                / got.pixels.len() as f64;
            // A DCT-scaled decode is a different low-pass filter from the antialiased
            // bilinear over the full-size pixels: measured at most 5 levels (mean ≤ 1.05) on
            // these images; 4:1:1 is decoded at full size (see `decode_crop`).
            assert!(
                diff <= 5 && mean <= 1.2,
                "{name}, crop {i} {crop:?} at {eighths}/8: differs by {diff} levels (mean {mean:.2})"
            );
        }
    }
    assert!(scales_seen.len() >= 3, "scales tried: {scales_seen:?}");
}

/// torchvision's rule, integrated numerically (no sampling): the probability that a try is
/// accepted and its area fraction is at most `a`, for a square image far larger than a pixel.
fn accepted_area_cdf(a: f64, scale: (f64, f64), ratio: (f64, f64)) -> f64 {
    let steps = 2000;
    let (l0, l1) = (ratio.0.ln(), ratio.1.ln());
    let mut mass = 0.0;
    for i in 0..steps {
        let s = scale.0 + (scale.1 - scale.0) * (i as f64 + 0.5) / steps as f64;
        if s > a {
            continue;
        }
        for j in 0..steps {
            let r = (l0 + (l1 - l0) * (j as f64 + 0.5) / steps as f64).exp();
            if (s * r).sqrt() <= 1.0 && (s / r).sqrt() <= 1.0 {
                mass += 1.0;
            }
        }
    }
    mass / (steps * steps) as f64
}

#[test]
fn ten_thousand_draws_follow_torchvisions_rule() {
    let rrc = RandomResizedCrop::default();
    let side = 2000u32;
    let mut draw = uniform(3);
    let draws: Vec<CropBox> = (0..10_000)
        .map(|_| rrc.sample(side, side, &mut draw))
        .collect();
    // Every draw fits inside the image, its sides within the ratio bounds (up to rounding).
    for b in &draws {
        assert!(b.left >= 0.0 && b.left + b.width <= f64::from(side));
        assert!(b.top >= 0.0 && b.top + b.height <= f64::from(side));
        let r = b.width / b.height;
        assert!(r > 0.74 && r < 1.35, "{b:?}");
    }
    // The area fractions against the rule's distribution (one try accepted with probability
    // p; the whole image when all 10 fail), by the Kolmogorov–Smirnov distance.
    let accept = accepted_area_cdf(1.0, rrc.scale, rrc.ratio);
    let fallback = (1.0 - accept).powi(10);
    let mut areas: Vec<f64> = draws
        .iter()
        .map(|b| b.width * b.height / f64::from(side * side))
        .collect();
    areas.sort_by(f64::total_cmp);
    let mut worst = 0f64;
    for a in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99] {
        let expected = accepted_area_cdf(a, rrc.scale, rrc.ratio) / accept * (1.0 - fallback);
        let observed = areas.partition_point(|&x| x <= a) as f64 / areas.len() as f64;
        worst = worst.max((expected - observed).abs());
    }
    // 1.63/√n is the 1 % critical value; ~0.016 for 10,000 draws.
    assert!(worst < 0.02, "area CDF off by {worst}");
    // The log-ratio is uniform over accepted tries: its mean is near 0 and a quarter of the
    // draws lie in each quarter of the range, up to the acceptance's symmetric cut.
    let logs: Vec<f64> = draws.iter().map(|b| (b.width / b.height).ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    assert!(mean.abs() < 0.01, "mean log ratio {mean}");
    let below = logs.iter().filter(|&&l| l < 0.0).count() as f64 / logs.len() as f64;
    assert!((below - 0.5).abs() < 0.02, "{below} below ratio 1");
}

/// The reference path at the fused path's DCT scale: the whole image decoded at `eighths`/8,
/// the box (scaled) cut out, resized with the same filter.
fn reference_at_scale(jpeg: &[u8], crop: CropBox, out: u32, eighths: u32) -> RgbImage {
    let info = Decoder::new().unwrap().probe(jpeg).unwrap();
    let options = DecodeOptions {
        dct_scaling: true,
        ..DecodeOptions::default()
    };
    // The whole image as the crop, with an output side that makes the decoder choose
    // `eighths`/8 (the smallest scale that keeps it at least that side).
    let side = info.width.min(info.height) * eighths / 8;
    let whole = Decoder::new()
        .unwrap()
        .decode_crop(
            jpeg,
            &options,
            CropBox::whole(info.width, info.height),
            (side, side),
        )
        .unwrap();
    assert_eq!(
        whole.eighths, eighths,
        "{}×{} at side {side}",
        info.width, info.height
    );
    assert_eq!((whole.within.left, whole.within.top), (0.0, 0.0));
    let f = f64::from(eighths) / 8.0;
    let scaled = CropBox {
        left: crop.left * f,
        top: crop.top * f,
        width: crop.width * f,
        height: crop.height * f,
    };
    CropResizer::new()
        .resize(&whole.image, scaled, (out, out))
        .unwrap()
}

/// With DCT scaling, the fused crop (only its region decoded) equals the reference path at
/// the same scale bit for bit, on every kind of JPEG: the region decode and the box's
/// mapping add nothing. (Against the full-size reference it differs as a DCT-domain
/// downscale differs from the bilinear filter: the test above.)
#[test]
fn the_scaled_region_decode_equals_the_whole_decode_at_that_scale() {
    let rrc = RandomResizedCrop::default();
    let mut scales_seen = std::collections::BTreeSet::new();
    for (name, jpeg) in variants() {
        let info = Decoder::new().unwrap().probe(&jpeg).unwrap();
        let mut draw = uniform(13);
        for i in 0..25 {
            let crop = rrc.sample(info.width, info.height, &mut draw);
            let (got, eighths) = fused(&jpeg, crop, 48, true);
            scales_seen.insert(eighths);
            let expected = reference_at_scale(&jpeg, crop, 48, eighths);
            let diff = max_difference(&got, &expected);
            assert!(
                diff == 0,
                "{name}, crop {i} {crop:?} at {eighths}/8: differs by {diff} levels from the whole decode at that scale"
            );
        }
    }
    assert!(scales_seen.len() >= 3, "scales tried: {scales_seen:?}");
}

/// The box's pixels of a region decode are the whole decode's, bit for bit (the region is
/// widened so that chroma upsampling has its context).
#[test]
fn a_region_holds_the_whole_decodes_pixels() {
    for (name, jpeg) in variants() {
        let whole = Decoder::new()
            .unwrap()
            .decode(&jpeg, &DecodeOptions::default(), None)
            .unwrap();
        let mut draw = uniform(5);
        for _ in 0..40 {
            let crop = RandomResizedCrop::default().sample(whole.width, whole.height, &mut draw);
            let d = Decoder::new()
                .unwrap()
                .decode_crop(&jpeg, &DecodeOptions::default(), crop, (8, 8))
                .unwrap();
            let x0 = crop.left as usize - d.within.left as usize;
            let y0 = crop.top as usize - d.within.top as usize;
            let (w, ww) = (d.image.width as usize, whole.width as usize);
            for y in d.within.top as usize..(d.within.top + d.within.height) as usize {
                let left = d.within.left as usize;
                let right = (d.within.left + d.within.width) as usize;
                assert_eq!(
                    d.image.pixels[(y * w + left) * 3..(y * w + right) * 3],
                    whole.pixels[((y + y0) * ww + left + x0) * 3..((y + y0) * ww + right + x0) * 3],
                    "{name}, crop {crop:?}, row {y}"
                );
            }
        }
    }
}
