//! The seed CNN's five convolutions at batch 32, forward and backward, on each instruction
//! set this CPU has: milliseconds (median of `SHARDFEED_BENCH_RUNS`, default 5) and GFLOP/s.
//! `cargo bench -p shardfeed-cpu-kernels --bench conv [-- avx512|avx2|portable|bf16]`.

use std::time::Instant;

use shardfeed_cpu_kernels::{Arithmetic, BlockCache, Conv3x3, Isa, MaxPool2x2};

#[path = "../tests/common/mod.rs"]
mod common;
use common::values;

/// As in training: large blocks reused, not page-faulted in again every call.
#[global_allocator]
static ALLOCATOR: BlockCache = BlockCache;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// GFLOP/s of a loop of independent multiply-adds (24 accumulators, nothing loaded) on
/// every thread at once: the CPU's peak for that instruction set, measured, not assumed.
fn peak(isa: Isa) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        const ROUNDS: usize = 20_000_000;
        #[target_feature(enable = "avx512f")]
        fn avx512() -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); 24];
            let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..ROUNDS {
                for v in &mut acc {
                    *v = _mm512_fmadd_ps(*v, a, b);
                }
            }
            acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2() -> f32 {
            let mut acc = [_mm256_set1_ps(0.0); 12];
            let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            for _ in 0..2 * ROUNDS {
                for v in &mut acc {
                    *v = _mm256_fmadd_ps(*v, a, b);
                }
            }
            let mut lanes = [0.0f32; 8];
            // SAFETY: 8 floats into an array of 8.
            acc.iter()
                .map(|&v| {
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
                    lanes.iter().sum::<f32>()
                })
                .sum()
        }
        let (run, flops): (fn() -> f32, f64) = match isa {
            // SAFETY (both): the CPU has the instruction set (`isa.available()`).
            Isa::Avx512 => (|| unsafe { avx512() }, (ROUNDS * 24 * 32) as f64),
            Isa::Avx2Fma => (|| unsafe { avx2() }, (2 * ROUNDS * 12 * 16) as f64),
            Isa::Portable => return None,
        };
        let threads = rayon::current_num_threads();
        let t = Instant::now();
        let sum: f32 = rayon::broadcast(|_| run()).into_iter().sum();
        std::hint::black_box(sum);
        Some(flops * threads as f64 / t.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        None
    }
}

/// A layer followed by the 2×2 max-pool: the backward pass through both, as the pool's
/// gradient expanded then the dense backward pass, and as the sparse pass that visits only
/// the windows' winners; alternating, medians.
fn pooled(s: Conv3x3, arithmetic: Arithmetic, runs: usize, x: &[f32], w: &[f32], y: &[f32]) {
    let pool = MaxPool2x2 {
        planes: s.batch * s.out_channels,
        height: s.height,
        width: s.width,
    };
    let gp = values(pool.output_len(), 5);
    let (_, winners) = pool.forward_winners(y);
    let (mut dense, mut sparse) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let gy = pool.backward(y, &gp);
        std::hint::black_box(s.backward_relu_on(arithmetic, x, w, y, &gy, true));
        dense.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(s.backward_relu_pool_on(arithmetic, x, w, &winners, &gp, true));
        sparse.push(t.elapsed().as_secs_f64());
    }
    let (dense, sparse) = (median(dense), median(sparse));
    println!(
        "           + max-pool backward: pool's gradient expanded + dense {:7.1} ms, winners only {:7.1} ms ({:.2}x)",
        dense * 1e3,
        sparse * 1e3,
        dense / sparse
    );
}

fn main() {
    let runs: usize = std::env::var("SHARDFEED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("{cpu}; {} threads", rayon::current_num_threads());
    let layers = [
        (3, 16, 160),
        (16, 32, 160),
        (32, 64, 80),
        (64, 128, 40),
        (128, 256, 20),
    ];
    // The machine's peak: the best of the multiply-add loops (a core may run two 256-bit
    // multiply-adds a cycle but only one 512-bit one, as AMD's Zen 4 does).
    let peaks: Vec<(Isa, f64)> = Isa::ALL
        .into_iter()
        .filter(|isa| isa.available())
        .filter_map(|isa| peak(isa).map(|p| (isa, p)))
        .collect();
    for (isa, p) in &peaks {
        println!(
            "peak of {} multiply-adds on every thread: {p:.0} GFLOP/s",
            isa.name()
        );
    }
    let machine_peak = peaks.iter().map(|&(_, p)| p).reduce(f64::max);
    let mut arithmetics: Vec<(&str, Arithmetic)> = Isa::ALL
        .into_iter()
        .filter(|isa| isa.available())
        .map(|isa| (isa.name(), Arithmetic::F32(isa)))
        .collect();
    if Arithmetic::Bf16.available() {
        arithmetics.push(("bf16", Arithmetic::Bf16));
    } else {
        println!("bf16 NOT MEASURED: this CPU lacks AVX512-BF16");
    }
    for (name, isa) in arithmetics {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let peak = machine_peak;
        let share =
            |gflops: f64| peak.map_or(String::new(), |p| format!(" ({:.0} %)", 100.0 * gflops / p));
        let (mut forward_total, mut backward_total) = (0.0, 0.0);
        for (ci, co, side) in layers {
            let s = Conv3x3 {
                batch: 32,
                in_channels: ci,
                out_channels: co,
                height: side,
                width: side,
            };
            let (x, w, b) = (
                values(s.input_len(), 1),
                values(s.weight_len(), 2),
                values(co, 3),
            );
            let gy = values(s.output_len(), 4);
            let input_grad = ci != 3;
            let mut y = s.forward_relu_on(isa, &x, &w, &b);
            let mut grads = s.backward_relu_on(isa, &x, &w, &y, &gy, input_grad);
            let (mut forward, mut backward) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let t = Instant::now();
                y = s.forward_relu_on(isa, &x, &w, &b);
                forward.push(t.elapsed().as_secs_f64());
                let t = Instant::now();
                grads = s.backward_relu_on(isa, &x, &w, &y, &gy, input_grad);
                backward.push(t.elapsed().as_secs_f64());
            }
            std::hint::black_box((&y, &grads));
            let (f, bw) = (median(forward), median(backward));
            let flops = 2.0 * s.macs() as f64;
            let backward_flops = flops * if input_grad { 2.0 } else { 1.0 };
            forward_total += f;
            backward_total += bw;
            let (forward_rate, backward_rate) = (flops / f / 1e9, backward_flops / bw / 1e9);
            println!(
                "{:>8} conv{co:<3} {ci:>3}→{co:<3} at {side:>3}²: forward {:7.1} ms {forward_rate:5.0} GFLOP/s{}, backward {:7.1} ms {backward_rate:5.0} GFLOP/s{}",
                name,
                f * 1e3,
                share(forward_rate),
                bw * 1e3,
                share(backward_rate),
            );
            if matches!(co, 32 | 64 | 128) {
                pooled(s, isa, runs, &x, &w, &y);
            }
        }
        println!(
            "{:>8} all five: forward {:.1} ms, backward {:.1} ms",
            name,
            forward_total * 1e3,
            backward_total * 1e3
        );
    }
}
