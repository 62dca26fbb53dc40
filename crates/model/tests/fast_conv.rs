//! The fast CPU kernels (our custom burn operations) against burn-flex's own: `conv2d` +
//! `relu` (outputs and the gradients of the input, weight and bias under autodiff) and
//! `MaxPool2d` 2×2 (output and input gradient), on random shapes (batch 1–8, channels 1–64,
//! sizes 1–33, odd sizes included).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use shardfeed_model::fast::{
    fast_conv3x3_relu, fast_conv3x3_relu_pool, fast_max_pool2x2, runs_fast,
};

/// burn's random numbers come from one generator per backend, shared by the tests running in
/// parallel: each test holds this while it seeds and draws, so its inputs are the seed's and
/// not an interleaving.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded() -> std::sync::MutexGuard<'static, ()> {
    SEEDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Largest difference relative to the largest magnitude of `want`.
fn relative_error(got: Tensor<4>, want: Tensor<4>) -> f32 {
    let scale = want.clone().abs().max().into_scalar::<f32>().max(1e-6);
    (got - want).abs().max().into_scalar::<f32>() / scale
}

fn flat<const D: usize>(t: Tensor<D>) -> Tensor<4> {
    let n = t.shape().num_elements();
    t.reshape([1, 1, 1, n])
}

/// Where a window's largest ReLU output lies within `margin` of 0 or of the next largest (the
/// two paths, summing in other orders, may pick another input there — both right), 0; 1
/// elsewhere: `[batch, channels, height / 2, width / 2]`.
fn decided_windows(pre_activation: Tensor<4>, margin: f32) -> Tensor<4> {
    let [n, c, h, w] = pre_activation.dims();
    let values = pre_activation.into_data().try_to_vec::<f32>().unwrap();
    let (oh, ow) = (h / 2, w / 2);
    let mut mask = Vec::with_capacity(n * c * oh * ow);
    for plane in values.chunks(h * w) {
        for wy in 0..oh {
            for wx in 0..ow {
                let mut window: Vec<f32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| plane[(2 * wy + dy) * w + 2 * wx + dx].max(0.0))
                    .collect();
                window.sort_by(|a, b| b.total_cmp(a));
                let clear = window[0] - window[1] > margin && window[0] > margin;
                mask.push(if clear { 1.0 } else { 0.0 });
            }
        }
    }
    Tensor::from_data(TensorData::new(mask, [n, c, oh, ow]), &Device::flex())
}

fn compare(batch: usize, cin: usize, cout: usize, height: usize, width: usize, seed: u64) {
    compare_op(batch, cin, cout, height, width, seed, false);
    if height >= 2 && width >= 2 {
        compare_op(batch, cin, cout, height, width, seed, true);
    }
}

/// The fast convolution + ReLU (`pooled`: + 2×2 max-pool, fused) against burn's own ops.
fn compare_op(
    batch: usize,
    cin: usize,
    cout: usize,
    height: usize,
    width: usize,
    seed: u64,
    pooled: bool,
) {
    let device = Device::flex().autodiff();
    let draws = seeded();
    device.seed(seed);
    let conv = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&device);
    let x = Tensor::<4>::random(
        [batch, cin, height, width],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let (oh, ow) = if pooled {
        (height / 2, width / 2)
    } else {
        (height, width)
    };
    let upstream = Tensor::<4>::random(
        [batch, cout, oh, ow],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    drop(draws);
    let pool = MaxPool2dConfig::new([2, 2]).init();
    // ReLU has no derivative at 0: where a pre-activation lies within rounding of it, the two
    // paths (which sum in different orders, burn's depending on its threads' schedule) may
    // land on either side and route the gradient differently — both right. No gradient flows
    // from those outputs, so the comparison is of what is defined.
    let pre_activation = conv.forward(x.clone().detach()).detach();
    let upstream = if pooled {
        let decided = decided_windows(pre_activation.inner(), 1e-4);
        upstream.mask_fill(Tensor::from_inner(decided).lower_elem(0.5), 0.0)
    } else {
        upstream.mask_fill(pre_activation.abs().lower_elem(1e-4), 0.0)
    };

    let run = |fast: bool| {
        let x = x.clone().detach().require_grad();
        let (w, b) = (conv.weight.val(), conv.bias.as_ref().unwrap().val());
        let y = match (fast, pooled) {
            (true, false) => fast_conv3x3_relu(x.clone(), w, b),
            (true, true) => fast_conv3x3_relu_pool(x.clone(), w, b),
            (false, false) => relu(conv.forward(x.clone())),
            (false, true) => pool.forward(relu(conv.forward(x.clone()))),
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        (
            y.inner(),
            x.grad(&grads).unwrap(),
            conv.weight.grad(&grads).unwrap(),
            conv.bias.as_ref().unwrap().grad(&grads).unwrap(),
        )
    };
    let (y, gx, gw, gb) = run(true);
    let (y_ref, gx_ref, gw_ref, gb_ref) = run(false);
    let what = format!("batch {batch}, {cin} → {cout} channels, {height}×{width}, pooled {pooled}");
    // f32 sums of up to 64·9 (forward) and 8·33·33 (weight gradient) products in another
    // order than burn's: relative error 1e-5 of the largest value.
    for (name, err) in [
        ("output", relative_error(y, y_ref)),
        ("input gradient", relative_error(gx, gx_ref)),
        ("weight gradient", relative_error(gw, gw_ref)),
        ("bias gradient", relative_error(flat(gb), flat(gb_ref))),
    ] {
        assert!(
            err < 1e-5,
            "{what}: {name} differs from burn's by {err:e} (relative)"
        );
    }
}

/// A seeded generator of sizes in `lo..=hi`.
fn draws(seed: u64) -> impl FnMut(usize, usize) -> usize {
    let mut state = seed;
    move |lo, hi| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (state >> 33) as usize % (hi - lo + 1)
    }
}

#[test]
fn forward_and_gradients_match_burns_conv2d_and_relu_on_random_shapes() {
    let mut draw = draws(0x5EED);
    for case in 0..12 {
        let (batch, cin, cout) = (draw(1, 8), draw(1, 64), draw(1, 64));
        let (height, width) = (draw(1, 33), draw(1, 33));
        compare(batch, cin, cout, height, width, case);
    }
    // The edges of the ranges.
    compare(1, 1, 1, 1, 1, 100);
    compare(8, 64, 64, 33, 33, 101);
    compare(3, 3, 16, 1, 31, 102);
}

#[test]
fn the_fast_path_runs_on_flex_and_not_elsewhere_by_choice() {
    assert!(runs_fast(&Device::flex()));
    assert!(runs_fast(&Device::flex().autodiff()));
}

#[test]
fn without_autodiff_the_fast_op_gives_the_same_output() {
    let device = Device::flex();
    let draws = seeded();
    device.seed(3);
    let conv = Conv2dConfig::new([5, 7], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&device);
    let x = Tensor::<4>::random([2, 5, 9, 11], Distribution::Uniform(-1.0, 1.0), &device);
    drop(draws);
    let fast = fast_conv3x3_relu(
        x.clone(),
        conv.weight.val(),
        conv.bias.as_ref().unwrap().val(),
    );
    let stock = relu(conv.forward(x));
    assert!(relative_error(fast, stock) < 1e-5);
}

fn compare_pool(batch: usize, channels: usize, height: usize, width: usize, seed: u64) {
    let device = Device::flex().autodiff();
    let draws = seeded();
    device.seed(seed);
    let pool = MaxPool2dConfig::new([2, 2]).init();
    // Continuous random values: no ties, so both pick the same maximum.
    let x = Tensor::<4>::random(
        [batch, channels, height, width],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let (oh, ow) = (height / 2, width / 2);
    let upstream = Tensor::<4>::random(
        [batch, channels, oh, ow],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    drop(draws);
    let run = |fast: bool| {
        let x = x.clone().detach().require_grad();
        let y = if fast {
            fast_max_pool2x2(x.clone())
        } else {
            pool.forward(x.clone())
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        (y.inner(), x.grad(&grads).unwrap())
    };
    let (y, gx) = run(true);
    let (y_ref, gx_ref) = run(false);
    let what = format!("max-pool, batch {batch}, {channels} channels, {height}×{width}");
    assert_eq!(y.dims(), [batch, channels, oh, ow], "{what}");
    // Pooling only moves values: exactly equal.
    assert_eq!(y.into_data(), y_ref.into_data(), "{what}: output");
    assert_eq!(gx.into_data(), gx_ref.into_data(), "{what}: input gradient");
}

#[test]
fn max_pool_matches_burns_on_random_shapes() {
    let mut draw = draws(0xB00);
    for case in 0..10 {
        compare_pool(draw(1, 8), draw(1, 64), draw(2, 33), draw(2, 33), case);
    }
    compare_pool(1, 1, 2, 2, 50);
    compare_pool(8, 64, 33, 33, 51);
    compare_pool(2, 3, 3, 2, 52);
}
