//! A generated, sharded set for the tests that need shards on disk.

use shardfeed_dataset::folder::Location;
use std::path::{Path, PathBuf};

use shardfeed_dataset::synthetic::{GenData, generate};
use shardfeed_dataset::{ShardConfig, shard};

/// Generates `data` into `dir` (`train/`, `test/`) and shards `train/` into `dir/shards` with
/// `config` (its input and output replaced); returns the shard folder.
pub fn generated_shards(dir: &Path, data: &GenData, config: ShardConfig) -> PathBuf {
    generate(dir, data).unwrap();
    let out = dir.join("shards");
    let config = ShardConfig {
        input: Location::local(dir.join("train")),
        out: Location::local(out.clone()),
        ..config
    };
    shard(&config, |_| {}).unwrap();
    out
}

/// `n` generated images (and `n / 4` test images) sharded at 32 px into 8 shards.
pub fn tiny_shards(dir: &Path, n: usize) -> PathBuf {
    let data = GenData {
        n_train: n,
        n_test: n / 4,
        seed: 4,
        sides: (40, 60),
        ..GenData::default()
    };
    let config = ShardConfig {
        shards: 8,
        size: 32,
        ..ShardConfig::default()
    };
    generated_shards(dir, &data, config)
}
