//! One training step of the seed CNN (batch 32, 160×160×3, forward + loss + backward + Adam,
//! after warm-up) with burn-flex's own kernels ("stock"), with our fast CPU path ("fast") and
//! with it in bfloat16 ("bf16", where the CPU has AVX512-BF16), in one process; and single-image inference latency for both. `cargo xtask bench train`
//! runs Keras's own throughput mode beside it.
//!
//! Settings from the environment: `SHARDFEED_BENCH_RUNS` (timed steps, default 5),
//! `SHARDFEED_BENCH_JSON` (write the result there too), `SHARDFEED_BENCH_MODE=stock|fast|bf16` (only those, comma-separated), `SHARDFEED_BENCH_PROFILE=1` (also time
//! every layer's forward and backward pass alone, for `docs/PERFORMANCE.md`).

use std::time::Instant;

use shardfeed_model::burn::nn::PaddingConfig2d;
use shardfeed_model::burn::nn::conv::Conv2dConfig;
use shardfeed_model::burn::nn::pool::{AdaptiveAvgPool2dConfig, MaxPool2dConfig};
use shardfeed_model::burn::prelude::*;
use shardfeed_model::burn::tensor::Distribution;
use shardfeed_model::{Cnn, ImageBatch, TrainConfig, Trainer, cpu_device, fast};

#[global_allocator]
static ALLOCATOR: shardfeed_model::BlockCache = shardfeed_model::BlockCache;

const BATCH: usize = 32;
const SIDE: usize = 160;

/// Median, min and max of `runs` timings of `f` (after two warm-up calls), in seconds.
fn time(runs: usize, mut f: impl FnMut()) -> [f64; 3] {
    f();
    f();
    let mut seconds: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    [
        seconds[seconds.len() / 2],
        seconds[0],
        seconds[seconds.len() - 1],
    ]
}

fn noise(len: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 256) as f32 / 255.0
        })
        .collect()
}

/// Seconds per training step: median, min, max.
fn train_step(runs: usize) -> [f64; 3] {
    let images = ImageBatch {
        pixels: noise(BATCH * SIDE * SIDE * 3),
        labels: (0..BATCH as i64).map(|i| i % 2).collect(),
        side: SIDE,
    };
    let mut trainer = Trainer::new(TrainConfig::default(), cpu_device());
    trainer.step(&images); // a second warm-up: the first step allocates everything
    time(runs, || {
        trainer.step(&images);
    })
}

/// Seconds to classify one 160 px image (no autodiff): median, min, max.
fn predict_one(runs: usize) -> [f64; 3] {
    let device = Device::flex();
    let model = Cnn::seeded(2, 1, &device);
    let image = Tensor::<4>::from_data(
        TensorData::new(noise(SIDE * SIDE * 3), [1, 3, SIDE, SIDE]),
        &device,
    );
    time(runs * 4, || {
        let _ = model.forward(image.clone()).into_data();
    })
}

/// Forward and backward milliseconds of each layer alone, batch 32, with the current kernels.
fn profile(runs: usize) -> Vec<(String, f64, f64, f64)> {
    let device = Device::flex().autodiff();
    let mut rows = Vec::new();
    let mut layer = |name: String,
                     shape: [usize; 4],
                     input_grad: bool,
                     macs: f64,
                     forward: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let x = Tensor::<4>::random(shape, Distribution::Uniform(0.0, 1.0), &device);
        let x = if input_grad { x.require_grad() } else { x };
        // burn-flex computes eagerly: the output exists when `forward` returns.
        let fwd = time(runs, || drop(forward(x.clone())))[0];
        let both = time(runs, || {
            let _ = forward(x.clone()).sum().backward();
        })[0];
        let bwd = (both - fwd).max(0.0);
        rows.push((name, fwd * 1e3, bwd * 1e3, macs));
    };
    let convs = [
        (3, 16, 160),
        (16, 32, 160),
        (32, 64, 80),
        (64, 128, 40),
        (128, 256, 20),
    ];
    for (i, (cin, cout, side)) in convs.into_iter().enumerate() {
        let conv = Conv2dConfig::new([cin, cout], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let macs = (BATCH * cout * side * side * cin * 9) as f64;
        // As the model runs them: the three convolutions followed by a max-pool fused with it.
        if (1..4).contains(&i) {
            let pool = MaxPool2dConfig::new([2, 2]).init();
            layer(
                format!("conv{cout} + relu + max-pool 2×2, {cin}→{cout} at {side}²"),
                [BATCH, cin, side, side],
                true,
                macs,
                &|x| fast::conv3x3_relu_pool(&conv, &pool, x),
            );
        } else {
            layer(
                format!("conv{cout} + relu, {cin}→{cout} at {side}²"),
                [BATCH, cin, side, side],
                i > 0,
                macs,
                &|x| fast::conv3x3_relu(&conv, x),
            );
        }
    }
    let global = AdaptiveAvgPool2dConfig::new([1, 1]).init();
    layer(
        "global average pool, 256 at 20²".into(),
        [BATCH, 256, 20, 20],
        true,
        0.0,
        &|x| global.forward(x),
    );
    rows
}

fn main() {
    let runs: usize = std::env::var("SHARDFEED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let profiling = std::env::var_os("SHARDFEED_BENCH_PROFILE").is_some_and(|v| v == "1");
    let mut document =
        serde_json::json!({ "bench": "train", "steps": runs, "batch": BATCH, "side": SIDE });
    let only = std::env::var("SHARDFEED_BENCH_MODE").ok();
    let modes = [
        ("stock", false, fast::Precision::F32),
        ("fast", true, fast::Precision::F32),
        ("bf16", true, fast::Precision::Bf16),
    ];
    for (mode, on, precision) in modes.into_iter().filter(|(mode, ..)| {
        only.as_deref()
            .is_none_or(|m| m.split(',').any(|m| m == *mode))
    }) {
        if let Err(why) = fast::set_precision(precision) {
            println!("{mode:>5}: NOT MEASURED: {why}");
            continue;
        }
        fast::set_enabled(on);
        let step = train_step(runs);
        let predict = predict_one(runs);
        println!(
            "{mode:>5}: train step, batch {BATCH}, {SIDE}×{SIDE}×3: {:.3} s median (min {:.3}, max {:.3}, n={runs}), {:.1} images/s; \
             predict one image: {:.1} ms median (min {:.1}, max {:.1})",
            step[0],
            step[1],
            step[2],
            BATCH as f64 / step[0],
            predict[0] * 1e3,
            predict[1] * 1e3,
            predict[2] * 1e3,
        );
        document[mode] = serde_json::json!({
            "step_s_median": step[0], "step_s_min": step[1], "step_s_max": step[2],
            "images_per_s": BATCH as f64 / step[0],
            "predict_ms_median": predict[0] * 1e3, "predict_ms_min": predict[1] * 1e3,
            "predict_ms_max": predict[2] * 1e3,
        });
        if profiling {
            let rows = profile(runs);
            println!(
                "{mode:>5}: layer | forward ms | backward ms | GFLOP/s forward | GFLOP/s backward"
            );
            let (mut fwd_sum, mut bwd_sum) = (0.0, 0.0);
            for (name, fwd, bwd, macs) in &rows {
                fwd_sum += fwd;
                bwd_sum += bwd;
                let rate = |ms: f64, work: f64| {
                    if work > 0.0 && ms > 0.0 {
                        format!("{:.0}", work / ms / 1e6)
                    } else {
                        "–".into()
                    }
                };
                // Backward: weight gradient + input gradient (not for the first layer).
                let bwd_work = if name.starts_with("conv16") {
                    2.0 * macs
                } else {
                    4.0 * macs
                };
                println!(
                    "| {name} | {fwd:.1} | {bwd:.1} | {} | {} |",
                    rate(*fwd, 2.0 * macs),
                    rate(*bwd, bwd_work)
                );
            }
            println!(
                "| all layers above | {fwd_sum:.1} | {bwd_sum:.1} | | |\n| rest of the step (loss, dense, Adam, input) | {:.1} | | | |",
                step[0] * 1e3 - fwd_sum - bwd_sum
            );
            document[mode]["profile"] = serde_json::json!(rows
                .iter()
                .map(|(name, fwd, bwd, _)| serde_json::json!({"layer": name, "forward_ms": fwd, "backward_ms": bwd}))
                .collect::<Vec<_>>());
        }
    }
    // With `SHARDFEED_BENCH_MODE` only one of the two ran.
    if let (Some(fast), Some(stock)) = (
        document["fast"]["images_per_s"].as_f64(),
        document["stock"]["images_per_s"].as_f64(),
    ) {
        println!("fast vs stock: {:.2}x", fast / stock);
    }
    if let (Some(fast), Some(bf16)) = (
        document["fast"]["images_per_s"].as_f64(),
        document["bf16"]["images_per_s"].as_f64(),
    ) {
        println!("bf16 vs fast (f32): {:.2}x", bf16 / fast);
    }
    // The headline figure `cargo xtask bench train` compares with Keras: the default (fast) path.
    document["images_per_s"] = document["fast"]["images_per_s"].clone();
    if let Some(path) = std::env::var_os("SHARDFEED_BENCH_JSON") {
        std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }
}
