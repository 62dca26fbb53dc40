//! The fast convolution against a direct, obviously correct one: forward and every gradient,
//! on random shapes including 1-pixel and odd sizes.

use proptest::prelude::*;
use shardfeed_cpu_kernels::{Arithmetic, Conv3x3, ConvGrads, Isa};

mod common;
use common::values;

/// The instruction sets this CPU runs, each checked by every test (the portable one always).
fn isas() -> impl Iterator<Item = Isa> {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.available()).collect();
    let skipped: Vec<&str> = Isa::ALL
        .into_iter()
        .filter(|isa| !isa.available())
        .map(Isa::name)
        .collect();
    if !skipped.is_empty() {
        eprintln!(
            "NOT TESTED on this CPU (it lacks them): {}",
            skipped.join(", ")
        );
    }
    isas.into_iter()
}

struct Direct<'a> {
    s: Conv3x3,
    x: &'a [f32],
    w: &'a [f32],
}

impl Direct<'_> {
    fn x_at(&self, n: usize, c: usize, y: isize, x: isize) -> Option<usize> {
        let s = &self.s;
        (y >= 0 && x >= 0 && (y as usize) < s.height && (x as usize) < s.width)
            .then(|| ((n * s.in_channels + c) * s.height + y as usize) * s.width + x as usize)
    }

    /// Calls `f(out_index, x_index, w_index)` for every product of the convolution.
    fn each(&self, mut f: impl FnMut(usize, usize, usize)) {
        let s = self.s;
        for n in 0..s.batch {
            for o in 0..s.out_channels {
                for oy in 0..s.height {
                    for ox in 0..s.width {
                        let out = ((n * s.out_channels + o) * s.height + oy) * s.width + ox;
                        for c in 0..s.in_channels {
                            for tap in 0..9 {
                                let (ky, kx) = (tap / 3, tap % 3);
                                let at = self.x_at(
                                    n,
                                    c,
                                    oy as isize + ky as isize - 1,
                                    ox as isize + kx as isize - 1,
                                );
                                if let Some(xi) = at {
                                    f(out, xi, (o * s.in_channels + c) * 9 + tap);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn forward(&self, b: &[f32]) -> Vec<f32> {
        let s = self.s;
        let hw = s.height * s.width;
        let mut y: Vec<f64> = (0..s.output_len())
            .map(|i| b[(i / hw) % s.out_channels] as f64)
            .collect();
        self.each(|o, xi, wi| y[o] += self.x[xi] as f64 * self.w[wi] as f64);
        y.into_iter().map(|v| v.max(0.0) as f32).collect()
    }

    fn backward(&self, y: &[f32], gy: &[f32]) -> ConvGrads {
        let s = self.s;
        let hw = s.height * s.width;
        let dy: Vec<f64> = y
            .iter()
            .zip(gy)
            .map(|(&y, &g)| if y > 0.0 { g as f64 } else { 0.0 })
            .collect();
        let mut gx = vec![0.0f64; s.input_len()];
        let mut gw = vec![0.0f64; s.weight_len()];
        let mut gb = vec![0.0f64; s.out_channels];
        for (i, d) in dy.iter().enumerate() {
            gb[(i / hw) % s.out_channels] += d;
        }
        self.each(|o, xi, wi| {
            gx[xi] += dy[o] * self.w[wi] as f64;
            gw[wi] += dy[o] * self.x[xi] as f64;
        });
        let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
        ConvGrads {
            input: Some(f(gx)),
            weight: f(gw),
            bias: f(gb),
        }
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], scale: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // f32 sums of up to a few thousand products of values in [-1, 1).
        let tolerance = 1e-5 * scale + 1e-5 * w.abs();
        assert!(
            (g - w).abs() <= tolerance,
            "{what}[{i}]: {g} vs {w} (tolerance {tolerance})"
        );
    }
}

fn check(s: Conv3x3, seed: u64) {
    for isa in isas() {
        check_on(isa, s, seed);
    }
}

fn check_on(isa: Isa, s: Conv3x3, seed: u64) {
    let x = values(s.input_len(), seed);
    let w = values(s.weight_len(), seed + 1);
    let b = values(s.out_channels, seed + 2);
    let gy = values(s.output_len(), seed + 3);
    let direct = Direct { s, x: &x, w: &w };
    let terms = (s.in_channels * 9) as f32;
    let what = |name: &str| format!("{name} on {isa:?}");

    let y = s.forward_relu_on(isa, &x, &w, &b);
    assert_close(&what("y"), &y, &direct.forward(&b), terms);

    let want = direct.backward(&y, &gy);
    let got = s.backward_relu_on(isa, &x, &w, &y, &gy, true);
    let positions = (s.batch * s.height * s.width) as f32;
    assert_close(
        &what("grad_x"),
        got.input.as_deref().unwrap(),
        want.input.as_deref().unwrap(),
        (s.out_channels * 9) as f32,
    );
    assert_close(&what("grad_w"), &got.weight, &want.weight, positions);
    assert_close(&what("grad_b"), &got.bias, &want.bias, positions);

    let without = s.backward_relu_on(isa, &x, &w, &y, &gy, false);
    assert!(without.input.is_none());
    assert_eq!(
        without.weight, got.weight,
        "grad_w must not depend on whether grad_x is asked"
    );
    assert_eq!(without.bias, got.bias);
}

/// `v` rounded to bfloat16 and back (to nearest even): the operands bf16 arithmetic
/// multiplies, so that the direct convolution of the rounded values is its exact reference.
fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|x| {
            let bits = x.to_bits();
            f32::from_bits(bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000)
        })
        .collect()
}

/// bf16 arithmetic (the plain-Rust reference, on every CPU) against the direct convolution of
/// the bf16-rounded operands: the products are exact there, so only the f32 sums differ.
fn check_bf16(s: Conv3x3, seed: u64) {
    let x = values(s.input_len(), seed);
    let w = values(s.weight_len(), seed + 1);
    let b = values(s.out_channels, seed + 2);
    let gy = values(s.output_len(), seed + 3);
    let (xr, wr) = (rounded(&x), rounded(&w));
    let direct = Direct { s, x: &xr, w: &wr };
    let arithmetic = Arithmetic::Bf16Reference;
    let y = s.forward_relu_on(arithmetic, &x, &w, &b);
    assert_close(
        "bf16 y",
        &y,
        &direct.forward(&b),
        (s.in_channels * 9) as f32,
    );
    let got = s.backward_relu_on(arithmetic, &x, &w, &y, &gy, true);
    let want = direct.backward(&y, &rounded(&gy));
    let positions = (s.batch * s.height * s.width) as f32;
    assert_close(
        "bf16 grad_x",
        got.input.as_deref().unwrap(),
        want.input.as_deref().unwrap(),
        (s.out_channels * 9) as f32,
    );
    assert_close("bf16 grad_w", &got.weight, &want.weight, positions);
    // The bias gradient sums the f32 output gradient itself.
    let exact = direct.backward(&y, &gy);
    assert_close("bf16 grad_b", &got.bias, &exact.bias, positions);
}

/// The instruction (`vdpbf16ps`) against the plain-Rust reference: the same bits.
fn check_bf16_instruction(s: Conv3x3, seed: u64) {
    if !Arithmetic::Bf16.available() {
        eprintln!(
            "NOT TESTED on this CPU: the AVX512-BF16 kernels (it lacks avx512_bf16); the \
             reference was checked against f64"
        );
        return;
    }
    let x = values(s.input_len(), seed);
    let w = values(s.weight_len(), seed + 1);
    let b = values(s.out_channels, seed + 2);
    let gy = values(s.output_len(), seed + 3);
    let run = |arithmetic: Arithmetic| {
        let y = s.forward_relu_on(arithmetic, &x, &w, &b);
        let grads = s.backward_relu_on(arithmetic, &x, &w, &y, &gy, true);
        (y, grads)
    };
    let (hardware, reference) = (run(Arithmetic::Bf16), run(Arithmetic::Bf16Reference));
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&hardware.0), bits(&reference.0), "bf16 y, {s:?}");
    let (h, r) = (&hardware.1, &reference.1);
    assert_eq!(
        bits(h.input.as_deref().unwrap()),
        bits(r.input.as_deref().unwrap()),
        "bf16 grad_x, {s:?}"
    );
    assert_eq!(bits(&h.weight), bits(&r.weight), "bf16 grad_w, {s:?}");
    assert_eq!(bits(&h.bias), bits(&r.bias), "bf16 grad_b, {s:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_direct_convolution(
        batch in 1usize..5,
        in_channels in 1usize..9,
        out_channels in 1usize..9,
        height in 1usize..14,
        width in 1usize..14,
        seed in any::<u64>(),
    ) {
        check(Conv3x3 { batch, in_channels, out_channels, height, width }, seed);
    }

    #[test]
    fn bf16_matches_the_direct_convolution_of_rounded_operands(
        batch in 1usize..4,
        in_channels in 1usize..8,
        out_channels in 1usize..10,
        height in 1usize..12,
        width in 1usize..40,
        seed in any::<u64>(),
    ) {
        let s = Conv3x3 { batch, in_channels, out_channels, height, width };
        check_bf16(s, seed);
        check_bf16_instruction(s, seed);
    }
}

#[test]
fn bf16_on_the_networks_channel_counts() {
    for (ci, co, side) in [(3, 16, 21), (16, 32, 17), (32, 64, 9), (128, 256, 5)] {
        let s = Conv3x3 {
            batch: 2,
            in_channels: ci,
            out_channels: co,
            height: side,
            width: side,
        };
        check_bf16(s, 11);
        check_bf16_instruction(s, 11);
    }
}

#[test]
fn matches_direct_convolution_on_the_networks_channel_counts() {
    // Blocks of several image rows, and blocks that split rows (patch 576 → 455 positions).
    for (ci, co, side) in [
        (3, 16, 33),
        (16, 32, 17),
        (32, 64, 9),
        (64, 128, 33),
        (128, 256, 5),
    ] {
        check(
            Conv3x3 {
                batch: 2,
                in_channels: ci,
                out_channels: co,
                height: side,
                width: side,
            },
            7,
        );
    }
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let s = Conv3x3 {
        batch: 9,
        in_channels: 5,
        out_channels: 7,
        height: 21,
        width: 19,
    };
    let x = values(s.input_len(), 1);
    let w = values(s.weight_len(), 2);
    let b = values(s.out_channels, 3);
    let gy = values(s.output_len(), 4);
    let bf16 = [Arithmetic::Bf16, Arithmetic::Bf16Reference]
        .into_iter()
        .filter(|a| a.available());
    for isa in isas().map(Arithmetic::from).chain(bf16) {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = s.forward_relu_on(isa, &x, &w, &b);
                let grads = s.backward_relu_on(isa, &x, &w, &y, &gy, true);
                (y, grads)
            })
        };
        let one = run(1);
        for threads in [2, 3, 16] {
            assert!(
                run(threads) == one,
                "{isa:?}: {threads} threads gave other bits than 1 thread"
            );
        }
    }
}

#[test]
fn one_image_split_over_threads_gives_the_batchs_bits() {
    // Fewer images than threads: the forward pass splits the output channels instead.
    let s = Conv3x3 {
        batch: 1,
        in_channels: 4,
        out_channels: 37,
        height: 23,
        width: 29,
    };
    let x = values(s.input_len(), 5);
    let w = values(s.weight_len(), 6);
    let b = values(s.out_channels, 7);
    for isa in isas() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| s.forward_relu_on(isa, &x, &w, &b))
        };
        let one = run(1);
        for threads in [2, 5] {
            assert!(run(threads) == one, "{isa:?}: {threads} threads");
        }
    }
}

#[test]
#[should_panic(expected = "weight length")]
fn a_wrong_weight_length_is_refused() {
    let s = Conv3x3 {
        batch: 1,
        in_channels: 2,
        out_channels: 2,
        height: 3,
        width: 3,
    };
    s.forward_relu(&[0.0; 18], &[0.0; 35], &[0.0; 2]);
}
