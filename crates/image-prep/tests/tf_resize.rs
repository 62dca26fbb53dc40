//! Our decode + resize + crop against TensorFlow's own pixels for the same sources.

use std::path::{Path, PathBuf};

use shardfeed_image_prep::{DecodeOptions, Decoder, ResizeCrop};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tf-resize")
}

fn shared() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/tf-resize");
    dir.join("expected.json").exists().then_some(dir)
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

/// Max and mean absolute difference of our pixels against TF's for every case of `dir`
/// with `target`, for one decode.
fn compare(dir: &Path, target: u32, fast_idct: bool) -> (u8, f64, usize) {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let options = DecodeOptions {
        fast_idct,
        ..DecodeOptions::default()
    };
    let mut decoder = Decoder::new().unwrap();
    let mut resizer = ResizeCrop::new();
    let (mut max, mut sum, mut count, mut cases) = (0u8, 0u64, 0u64, 0);
    for case in expected["cases"].as_array().unwrap() {
        if case["target"].as_u64().unwrap() != u64::from(target) {
            continue;
        }
        let reference = case[if fast_idct {
            "tf_default_decode"
        } else {
            "tf_accurate_idct_decode"
        }]
        .as_str()
        .unwrap();
        let source = std::fs::read(dir.join(case["source"].as_str().unwrap())).unwrap();
        let decoded = decoder.decode(&source, &options, Some(target)).unwrap();
        let [h, w] = [0, 1].map(|i| case["source_hw"][i].as_u64().unwrap() as u32);
        assert_eq!((decoded.width, decoded.height), (w, h));
        let ours = resizer
            .apply(&decoded, target, DecodeOptions::default().max_pixels)
            .unwrap();
        let (width, height, theirs) = read_png(&dir.join(reference));
        assert_eq!((ours.width, ours.height), (width, height), "{reference}");
        for (a, b) in ours.pixels.iter().zip(&theirs) {
            let diff = a.abs_diff(*b);
            max = max.max(diff);
            sum += u64::from(diff);
            count += 1;
        }
        cases += 1;
    }
    (max, sum as f64 / count.max(1) as f64, cases)
}

#[test]
fn resize_and_crop_match_tensorflow_within_one_at_64_pixels() {
    for fast_idct in [true, false] {
        let (max, mean, cases) = compare(&fixtures(), 64, fast_idct);
        println!("64 px, fast_idct {fast_idct}: {cases} images, max |diff| {max}, mean {mean:.4}");
        assert_eq!(cases, 6);
        assert!(
            max <= 1,
            "fast_idct {fast_idct}: max |diff| {max} (mean {mean:.4})"
        );
    }
}

#[test]
fn resize_and_crop_match_tensorflow_within_one_at_160_pixels() {
    let Some(dir) = shared() else {
        eprintln!("SKIPPED: ../shared/fixtures/tf-resize (the 160 px references) is not present");
        return;
    };
    for fast_idct in [true, false] {
        let (max, mean, cases) = compare(&dir, 160, fast_idct);
        println!("160 px, fast_idct {fast_idct}: {cases} images, max |diff| {max}, mean {mean:.4}");
        assert_eq!(cases, 6);
        assert!(
            max <= 1,
            "fast_idct {fast_idct}: max |diff| {max} (mean {mean:.4})"
        );
    }
}
