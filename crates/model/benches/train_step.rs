//! One training step of the seed CNN (batch 32, 160×160×3, forward + loss + backward + Adam,
//! after warm-up): `cargo xtask bench train`, which runs Keras's own throughput mode beside it.
//!
//! Settings from the environment: `SHARDFEED_BENCH_RUNS` (timed steps, default 5),
//! `SHARDFEED_BENCH_JSON` (write the result there too).

use std::time::Instant;

use shardfeed_model::{ImageBatch, TrainConfig, Trainer, cpu_device};

fn main() {
    let steps: usize = std::env::var("SHARDFEED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (batch, side) = (32usize, 160usize);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let pixels: Vec<f32> = (0..batch * side * side * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 256) as f32 / 255.0
        })
        .collect();
    let labels = (0..batch as i64).map(|i| i % 2).collect();
    let images = ImageBatch {
        pixels,
        labels,
        side,
    };
    let mut trainer = Trainer::new(TrainConfig::default(), cpu_device());
    for _ in 0..2 {
        trainer.step(&images); // warm-up
    }
    let mut seconds: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            trainer.step(&images);
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "train step, batch {batch}, {side}×{side}×3: {median:.3} s median (min {:.3}, max {:.3}, n={steps}), {:.1} images/s",
        seconds[0],
        seconds[seconds.len() - 1],
        batch as f64 / median
    );
    if let Some(path) = std::env::var_os("SHARDFEED_BENCH_JSON") {
        let document = serde_json::json!({
            "bench": "train", "step_s_median": median, "step_s_min": seconds[0],
            "step_s_max": seconds[seconds.len() - 1], "images_per_s": batch as f64 / median, "steps": steps,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }
}
