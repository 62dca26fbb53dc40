//! Any bytes as a shard folder's `manifest.json`: no panic; what parses lists at least two
//! distinct, non-empty class names, and every shard it lists can be looked up by its name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardfeed_dataset::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::parse(data, std::path::Path::new("manifest.json")) else { return };
    assert!(manifest.classes.len() >= 2);
    for (i, name) in manifest.classes.iter().enumerate() {
        assert!(!name.is_empty());
        assert!(!manifest.classes[..i].contains(name));
    }
    for shard in &manifest.shards {
        assert!(manifest.records_of(&shard.file).is_some());
    }
});
