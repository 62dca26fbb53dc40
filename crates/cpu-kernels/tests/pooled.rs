//! The backward pass of convolution + ReLU + 2×2 max-pool that visits only the positions the
//! pool passes its gradient to, against the dense one (the pool's gradient expanded, then
//! the convolution's backward pass), on every instruction set this CPU has and in bf16: random shapes
//! (odd sizes, channel counts the sparse kernels take and ones they leave to the dense pass)
//! and outputs full of ties and zeros.

use proptest::prelude::*;
use shardfeed_cpu_kernels::{Arithmetic, Conv3x3, ConvGrads, Isa, MaxPool2x2};

mod common;
use common::values;

/// `f32` on every instruction set this CPU has, and bf16 (its operands rounded, multiplied
/// in `f32` by the sparse kernels) where it has AVX512-BF16 for the dense pass to compare with.
fn arithmetics() -> Vec<Arithmetic> {
    let (have, lack): (Vec<Isa>, Vec<Isa>) = Isa::ALL.into_iter().partition(|i| i.available());
    if !lack.is_empty() {
        eprintln!("NOT TESTED on this CPU (it lacks them): {lack:?}");
    }
    let mut arithmetics: Vec<Arithmetic> = have.into_iter().map(Arithmetic::F32).collect();
    if Arithmetic::Bf16.available() {
        arithmetics.push(Arithmetic::Bf16);
    } else {
        eprintln!("NOT TESTED: the sparse pass in bf16 (this CPU lacks AVX512-BF16)");
    }
    arithmetics
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-5 * scale * 64.0,
            "{what}[{i}]: {g} against {w} (scale {scale})"
        );
    }
}

/// `levels` 0: the convolution's own output; otherwise an output of that many levels
/// (0 included), so that windows tie and whole windows are zero.
fn check(s: Conv3x3, levels: u32, seed: u64) {
    let x = values(s.input_len(), seed);
    let w = values(s.weight_len(), seed + 1);
    let b = values(s.out_channels, seed + 2);
    let pool = MaxPool2x2 {
        planes: s.batch * s.out_channels,
        height: s.height,
        width: s.width,
    };
    let grad_p = values(pool.output_len(), seed + 3);
    for isa in arithmetics() {
        let y = if levels == 0 {
            s.forward_relu_on(isa, &x, &w, &b)
        } else {
            let raw = values(s.output_len(), seed + 4);
            raw.iter()
                .map(|v| ((v + 1.0) * levels as f32 / 2.0).floor().max(1.0) - 1.0)
                .collect()
        };
        let dense = s.backward_relu_on(isa, &x, &w, &y, &pool.backward(&y, &grad_p), true);
        let (pooled, winners) = pool.forward_winners(&y);
        assert_eq!(pooled, pool.forward(&y));
        for input_grad in [true, false] {
            let got = s.backward_relu_pool_on(isa, &x, &w, &winners, &grad_p, input_grad);
            let ConvGrads {
                input,
                weight,
                bias,
            } = got;
            let what = format!("{isa:?} {s:?} levels {levels}");
            assert_close(&format!("{what} grad_w"), &weight, &dense.weight);
            assert_close(&format!("{what} grad_b"), &bias, &dense.bias);
            match (input_grad, input) {
                (true, Some(gx)) => assert_close(
                    &format!("{what} grad_x"),
                    &gx,
                    dense.input.as_ref().unwrap(),
                ),
                (false, None) => {}
                (asked, got) => panic!("{what}: input gradient asked {asked}, got {got:?}"),
            }
        }
    }
}

/// Where the sparse kernels do not apply (the bf16 reference; channel counts that are no
/// multiple of the vector), the pass is the dense one on the expanded gradient: the same bits.
#[test]
fn elsewhere_the_dense_pass_runs_unchanged() {
    for (arithmetic, in_channels) in [
        (Arithmetic::Bf16Reference, 16),
        (Arithmetic::F32(Isa::Portable), 5),
        (Arithmetic::F32(Isa::active()), 12),
    ] {
        let s = Conv3x3 {
            batch: 2,
            in_channels,
            out_channels: 6,
            height: 9,
            width: 12,
        };
        let (x, w, b) = (
            values(s.input_len(), 5),
            values(s.weight_len(), 6),
            values(6, 7),
        );
        let y = s.forward_relu_on(arithmetic, &x, &w, &b);
        let pool = MaxPool2x2 {
            planes: 12,
            height: 9,
            width: 12,
        };
        let grad_p = values(pool.output_len(), 8);
        let (_, winners) = pool.forward_winners(&y);
        let want = s.backward_relu_on(arithmetic, &x, &w, &y, &pool.backward(&y, &grad_p), true);
        let got = s.backward_relu_pool_on(arithmetic, &x, &w, &winners, &grad_p, true);
        assert!(
            got == want,
            "{arithmetic:?}: other bits than the dense pass"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn equals_the_dense_backward_pass(
        batch in 1usize..4,
        in_channels in prop::sample::select(vec![3usize, 8, 16, 24, 32, 48]),
        out_channels in 1usize..12,
        height in 1usize..14,
        width in 1usize..40,
        levels in prop::sample::select(vec![0u32, 2, 3]),
        seed in 0u64..1000,
    ) {
        let s = Conv3x3 { batch, in_channels, out_channels, height, width };
        check(s, levels, seed);
    }
}

#[test]
fn equals_the_dense_backward_pass_on_the_networks_pooled_layers() {
    for (i, (ci, co, size)) in [(16, 32, 40), (32, 64, 20), (64, 128, 10)]
        .into_iter()
        .enumerate()
    {
        let s = Conv3x3 {
            batch: 3,
            in_channels: ci,
            out_channels: co,
            height: size,
            width: size + 1,
        };
        check(s, 0, 40 + i as u64);
        check(s, 3, 50 + i as u64);
    }
}

#[test]
fn the_sparse_pass_does_not_depend_on_the_number_of_threads() {
    let s = Conv3x3 {
        batch: 7,
        in_channels: 16,
        out_channels: 8,
        height: 12,
        width: 9,
    };
    let x = values(s.input_len(), 1);
    let w = values(s.weight_len(), 2);
    let b = values(s.out_channels, 3);
    let grad_p = values(s.batch * s.out_channels * 6 * 4, 4);
    let isa = Arithmetic::F32(Isa::active());
    let (_, winners) = s.forward_relu_pool_on(isa, &x, &w, &b);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| s.backward_relu_pool_on(isa, &x, &w, &winners, &grad_p, true))
    };
    let one = run(1);
    for threads in [2, 3, 8] {
        assert!(
            run(threads) == one,
            "{threads} threads gave other bits than 1"
        );
    }
}
