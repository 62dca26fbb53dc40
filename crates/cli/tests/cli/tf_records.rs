//! Our record images against the ones TensorFlow's own shard step made from the same
//! sources (`fixtures/tf-written`, records 0–5, whose sources are `fixtures/tf-resize/sources`).

use std::path::PathBuf;

use shardfeed_image_prep::{DecodeOptions, Decoder, Preparer};
use shardfeed_record_format::{ImageExample, ReaderOptions, RecordReader};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

#[test]
fn our_record_images_match_tensorflows_within_two_on_average() {
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("tf-written/expected.json")).unwrap(),
    )
    .unwrap();
    let tensorflow: Vec<ImageExample> = RecordReader::open(
        fixtures().join("tf-written/cat_dog00-8.tfrec"),
        ReaderOptions::default(),
    )
    .unwrap()
    .map(|r| ImageExample::decode(&r.unwrap()).unwrap())
    .collect();
    let mut preparer = Preparer::new(64, 95, DecodeOptions::default()).unwrap();
    let mut decoder = Decoder::new().unwrap();
    let (mut max, mut sum, mut count, mut compared) = (0u8, 0u64, 0u64, 0);
    for (record, theirs) in expected["records"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&tensorflow)
    {
        let source = fixtures()
            .join("tf-resize/sources")
            .join(record["source"].as_str().unwrap());
        let Ok(bytes) = std::fs::read(&source) else {
            continue;
        }; // records 6–7: sources not bundled
        let ours = preparer.prepare(&bytes).unwrap();
        let a = decoder
            .decode(&ours, &DecodeOptions::default(), None)
            .unwrap();
        let b = decoder
            .decode(&theirs.image, &DecodeOptions::default(), None)
            .unwrap();
        assert_eq!((a.width, a.height), (b.width, b.height));
        for (x, y) in a.pixels.iter().zip(&b.pixels) {
            let diff = x.abs_diff(*y);
            max = max.max(diff);
            sum += u64::from(diff);
            count += 1;
        }
        compared += 1;
    }
    let mean = sum as f64 / count as f64;
    println!("{compared} records: max |diff| {max}, mean {mean:.3}");
    assert_eq!(compared, 6);
    assert!(mean <= 2.0, "mean |diff| {mean:.3} (max {max})");
}
