//! The fast CPU path: `shardfeed-cpu-kernels`' convolution plugged into burn as a custom
//! operation (a burn backend extension) on burn-flex, with its own backward pass under
//! autodiff.
//!
//! The model calls [`conv3x3_relu`] for its convolutions and [`conv3x3_relu_pool`] for the
//! three followed by a max-pool; on a flex device (with or without autodiff) they run our
//! kernels (implicit GEMM with bias and ReLU fused, AVX-512 or AVX2 chosen at run time; the
//! pool fused after it, its backward pass from the pool's winners alone), on any other
//! device (CUDA) burn's own `conv2d` + `relu` (+ `MaxPool2d`). [`fast_max_pool2x2`], the pool
//! alone, is kept as an operation of its own. [`set_enabled`] (or the environment variable
//! `SHARDFEED_STOCK_CPU=1`) turns the fast path off to compare with burn-flex's own kernels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};
use shardfeed_cpu_kernels::{Arithmetic, Conv3x3, ConvGrads, Isa, MaxPool2x2, Winners};

/// Custom operations of the fast CPU path.
#[backend_extension(Flex, Autodiff)]
pub trait FastCpu: Backend {
    /// `relu(conv2d(x, w, b))` for a 3×3 kernel, stride 1, one pixel of zero padding, NCHW.
    fn conv3x3_relu(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// 2×2 max-pooling, stride 2, no padding, NCHW.
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `max_pool2x2(relu(conv2d(x, w, b)))`: [`FastCpu::conv3x3_relu`] then
    /// [`FastCpu::max_pool2x2`], whose backward pass visits only the positions each window's
    /// gradient goes to.
    fn conv3x3_relu_pool(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static ENABLED: AtomicU8 = AtomicU8::new(UNSET);

/// Turns the fast CPU kernels on (the default) or off (burn-flex's own kernels), process-wide.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(if enabled { ON } else { OFF }, Ordering::Relaxed);
}

/// Whether the fast CPU kernels are on: by default unless `SHARDFEED_STOCK_CPU=1`.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = std::env::var_os("SHARDFEED_STOCK_CPU").is_none_or(|v| v != "1");
            set_enabled(on);
            on
        }
    }
}

/// The arithmetic of the fast kernels' convolutions (`--precision`). Weights, their
/// gradients' sums and Adam's state stay `f32` in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32` products and sums (AVX-512 or AVX2 + FMA, chosen at run time).
    #[default]
    F32,
    /// bfloat16 products with `f32` sums: AVX512-BF16's `vdpbf16ps`.
    Bf16,
}

impl Precision {
    /// `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this CPU runs it; if not, why (naming the CPU flags it needs).
    pub fn check(self) -> Result<(), String> {
        match self {
            Precision::F32 => Ok(()),
            Precision::Bf16 if Arithmetic::Bf16.available() => Ok(()),
            Precision::Bf16 => Err(
                "this CPU lacks AVX512-BF16 (`avx512_bf16` in /proc/cpuinfo), which bf16 \
                 training needs (AMX is not supported yet); use --precision f32"
                    .to_owned(),
            ),
        }
    }

    /// The kernels' arithmetic.
    fn arithmetic(self) -> Arithmetic {
        match self {
            Precision::F32 => Arithmetic::F32(Isa::active()),
            Precision::Bf16 => Arithmetic::Bf16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision {other:?}: f32 or bf16")),
        }
    }
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the fast kernels' arithmetic, process-wide (`f32` until set); refused, leaving it as
/// it was, when this CPU cannot run `precision` ([`Precision::check`]'s reason).
pub fn set_precision(precision: Precision) -> Result<(), String> {
    precision.check()?;
    PRECISION.store(precision as u8, Ordering::Relaxed);
    Ok(())
}

/// The fast kernels' arithmetic.
pub fn precision() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        1 => Precision::Bf16,
        _ => Precision::F32,
    }
}

/// The arithmetic a model on `device` computes in: [`precision`] on the fast kernels, `f32`
/// elsewhere (burn's own kernels, CUDA).
pub fn precision_on(device: &Device) -> Precision {
    if runs_fast(device) {
        precision()
    } else {
        Precision::F32
    }
}

/// Whether `device` runs the fast kernels: burn-flex (with or without autodiff) while enabled.
pub fn runs_fast(device: &Device) -> bool {
    enabled()
        && matches!(
            device.clone().inner().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// `relu(conv(x))` for one of the model's 3×3 `same` convolutions: the fast kernel on the CPU,
/// burn's own ops elsewhere.
pub fn conv3x3_relu(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let bias = conv.bias.as_ref().map(|bias| bias.val());
    match bias {
        Some(bias) if runs_fast(&x.device()) => fast_conv3x3_relu(x, conv.weight.val(), bias),
        _ => relu(conv.forward(x)),
    }
}

/// `pool(relu(conv(x)))` for one of the model's 3×3 `same` convolutions followed by its 2×2
/// max-pool: the fused fast kernels on the CPU, burn's own ops elsewhere.
pub fn conv3x3_relu_pool(conv: &Conv2d, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let bias = conv.bias.as_ref().map(|bias| bias.val());
    match bias {
        Some(bias) if runs_fast(&x.device()) => fast_conv3x3_relu_pool(x, conv.weight.val(), bias),
        _ => pool.forward(relu(conv.forward(x))),
    }
}

/// The fused fast kernels themselves, whatever [`enabled`] says: `max_pool2x2(relu(conv2d(x,
/// w, b)))`, shapes as [`fast_conv3x3_relu`]'s.
///
/// # Panics
/// On a device other than burn-flex, or when the shapes do not fit.
pub fn fast_conv3x3_relu_pool(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
    let out = <Dispatch as FastCpu>::conv3x3_relu_pool(
        x.into_dispatch(),
        w.into_dispatch(),
        b.into_dispatch(),
    );
    Tensor::from_dispatch(out)
}

/// The fast 2×2 max-pool itself, whatever [`enabled`] says.
///
/// # Panics
/// On a device other than burn-flex.
pub fn fast_max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FastCpu>::max_pool2x2(x.into_dispatch()))
}

/// The fast kernel itself, whatever [`enabled`] says: `relu(conv2d(x, w, b))`, 3×3, stride 1,
/// `same` padding; `x` `[n, c, h, w]`, `w` `[o, c, 3, 3]`, `b` `[o]`, all `f32`.
///
/// # Panics
/// On a device other than burn-flex, or when the shapes do not fit.
pub fn fast_conv3x3_relu(x: Tensor<4>, w: Tensor<4>, b: Tensor<1>) -> Tensor<4> {
    let out = <Dispatch as FastCpu>::conv3x3_relu(
        x.into_dispatch(),
        w.into_dispatch(),
        b.into_dispatch(),
    );
    Tensor::from_dispatch(out)
}

/// The tensor's values as a contiguous `f32` slice (copied only when strided).
fn with_values<R>(tensor: &FlexTensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> R {
    assert_eq!(
        tensor.dtype(),
        DType::F32,
        "fast conv3x3: {what} must be f32"
    );
    match tensor.as_slice::<f32>() {
        Some(values) => f(values),
        None => {
            let contiguous = tensor.to_contiguous();
            f(contiguous
                .as_slice::<f32>()
                .expect("contiguous after to_contiguous"))
        }
    }
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The kernel's shape from `x` `[n, c, h, w]` and `w` `[o, c, 3, 3]`.
fn conv_shape(x: &FlexTensor, w: &FlexTensor) -> Conv3x3 {
    let (xs, ws) = (x.layout().shape(), w.layout().shape());
    assert!(
        xs.num_dims() == 4 && ws.num_dims() == 4 && ws[2] == 3 && ws[3] == 3 && ws[1] == xs[1],
        "fast conv3x3: input {xs:?} and weight {ws:?} are not NCHW and [out, in, 3, 3]"
    );
    Conv3x3 {
        batch: xs[0],
        in_channels: xs[1],
        out_channels: ws[0],
        height: xs[2],
        width: xs[3],
    }
}

impl FastCpu for Flex {
    fn conv3x3_relu(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        let shape = conv_shape(&x, &w);
        let y = with_values(&x, "input", |x| {
            with_values(&w, "weight", |w| {
                with_values(&b, "bias", |b| {
                    shape.forward_relu_on(precision().arithmetic(), x, w, b)
                })
            })
        });
        flex_tensor(
            y,
            vec![shape.batch, shape.out_channels, shape.height, shape.width],
        )
    }

    fn max_pool2x2(x: FlexTensor) -> FlexTensor {
        let (pool, dims) = pool_shape(&x);
        let y = with_values(&x, "input", |x| pool.forward(x));
        let (oh, ow) = pool.output_size();
        flex_tensor(y, vec![dims[0], dims[1], oh, ow])
    }

    fn conv3x3_relu_pool(x: FlexTensor, w: FlexTensor, b: FlexTensor) -> FlexTensor {
        conv_relu_pool(&x, &w, &b).0
    }
}

/// [`FastCpu::conv3x3_relu_pool`] on flex, and the pool's winners for the backward pass.
fn conv_relu_pool(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> (FlexTensor, Winners) {
    let shape = conv_shape(x, w);
    let (pooled, winners) = with_values(x, "input", |x| {
        with_values(w, "weight", |w| {
            with_values(b, "bias", |b| {
                shape.forward_relu_pool_on(precision().arithmetic(), x, w, b)
            })
        })
    });
    let dims = vec![
        shape.batch,
        shape.out_channels,
        shape.height / 2,
        shape.width / 2,
    ];
    (flex_tensor(pooled, dims), winners)
}

/// The pooling kernel's shape and the input's dimensions.
fn pool_shape(x: &FlexTensor) -> (MaxPool2x2, [usize; 4]) {
    let xs = x.layout().shape();
    assert_eq!(
        xs.num_dims(),
        4,
        "fast max_pool2x2: input {xs:?} is not NCHW"
    );
    let dims = [xs[0], xs[1], xs[2], xs[3]];
    let pool = MaxPool2x2 {
        planes: dims[0] * dims[1],
        height: dims[2],
        width: dims[3],
    };
    (pool, dims)
}

/// The backward step of [`FastCpu::max_pool2x2`] under autodiff.
#[derive(Debug)]
struct MaxPool2x2Backward;

impl Backward<Flex, 1> for MaxPool2x2Backward {
    /// The input's node.
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad_y = grads.consume::<Flex>(&ops.node);
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state);
        if let Some(node) = node_x {
            let (pool, dims) = pool_shape(&x);
            let grad = with_values(&x, "input", |x| {
                with_values(&grad_y, "gradient", |g| pool.backward(x, g))
            });
            grads.register::<Flex>(node.id, flex_tensor(grad, dims.to_vec()));
        }
    }
}

/// The backward step of [`FastCpu::conv3x3_relu`] under autodiff.
#[derive(Debug)]
struct Conv3x3ReluBackward;

impl Backward<Flex, 3> for Conv3x3ReluBackward {
    /// The input's and the weight's node, and the output.
    type State = (NodeId, NodeId, FlexTensor);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        conv_backward(ops, grads, checkpointer, |shape, x, w, y, g, input_grad| {
            with_values(y, "output", |y| {
                shape.backward_relu_on(precision().arithmetic(), x, w, y, g, input_grad)
            })
        });
    }
}

/// The backward step of [`FastCpu::conv3x3_relu_pool`] under autodiff.
#[derive(Debug)]
struct Conv3x3ReluPoolBackward;

impl Backward<Flex, 3> for Conv3x3ReluPoolBackward {
    /// The input's and the weight's node, and the pool's winners.
    type State = (NodeId, NodeId, Arc<Winners>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        conv_backward(
            ops,
            grads,
            checkpointer,
            |shape, x, w, winners, g, input_grad| {
                shape.backward_relu_pool_on(precision().arithmetic(), x, w, winners, g, input_grad)
            },
        );
    }
}

/// What the convolutions' backward steps share: the input and weight the forward step kept,
/// the output's gradient, `compute(shape, x, w, kept, grad, input_grad)` for the gradients
/// (with what else the forward step kept), each registered with the parent (input, weight,
/// bias) that takes it.
fn conv_backward<S>(
    ops: Ops<(NodeId, NodeId, S), 3>,
    grads: &mut Gradients,
    checkpointer: &mut Checkpointer,
    compute: impl FnOnce(Conv3x3, &[f32], &[f32], &S, &[f32], bool) -> ConvGrads,
) {
    let [node_x, node_w, node_b] = ops.parents;
    let grad = grads.consume::<Flex>(&ops.node);
    let (x_state, w_state, kept) = ops.state;
    let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
    let w: FlexTensor = checkpointer.retrieve_node_output(w_state);
    let shape = conv_shape(&x, &w);
    let computed = with_values(&x, "input", |x| {
        with_values(&w, "weight", |w| {
            with_values(&grad, "gradient", |g| {
                compute(shape, x, w, &kept, g, node_x.is_some())
            })
        })
    });
    if let (Some(node), Some(grad)) = (node_x, computed.input) {
        let dims = vec![shape.batch, shape.in_channels, shape.height, shape.width];
        grads.register::<Flex>(node.id, flex_tensor(grad, dims));
    }
    if let Some(node) = node_w {
        let dims = vec![shape.out_channels, shape.in_channels, 3, 3];
        grads.register::<Flex>(node.id, flex_tensor(computed.weight, dims));
    }
    if let Some(node) = node_b {
        let dims = vec![shape.out_channels];
        grads.register::<Flex>(node.id, flex_tensor(computed.bias, dims));
    }
}

impl<C: CheckpointStrategy> FastCpu for Autodiff<Flex, C> {
    fn conv3x3_relu(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match Conv3x3ReluBackward
            .prepare::<C>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&w);
                let y =
                    Flex::conv3x3_relu(x.into_primitive(), w.into_primitive(), b.into_primitive());
                prep.finish((x_state, w_state, y.clone()), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv3x3_relu(
                x.into_primitive(),
                w.into_primitive(),
                b.into_primitive(),
            )),
        }
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match MaxPool2x2Backward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish(x_state, Flex::max_pool2x2(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::max_pool2x2(x.into_primitive())),
        }
    }

    fn conv3x3_relu_pool(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match Conv3x3ReluPoolBackward
            .prepare::<C>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&w);
                let (pooled, winners) = conv_relu_pool(
                    &x.into_primitive(),
                    &w.into_primitive(),
                    &b.into_primitive(),
                );
                prep.finish((x_state, w_state, Arc::new(winners)), pooled)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv3x3_relu_pool(
                x.into_primitive(),
                w.into_primitive(),
                b.into_primitive(),
            )),
        }
    }
}
