//! The seed CNN (SPEC §4): Conv16, Conv32, MaxPool, Conv64, MaxPool, Conv128, MaxPool,
//! Conv256 (all 3×3, `same` padding, ReLU), global average pool, Dense. One output (a sigmoid
//! logit) for two classes, `k` outputs (softmax logits) for more: 392,865 parameters for two.

use std::sync::Mutex;

use burn::module::{ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::fast::{conv3x3_relu, conv3x3_relu_pool};

/// The CNN. Input: `[batch, 3, height, width]` in [0, 1]; output: logits `[batch, outputs]`.
#[derive(Module, Debug)]
pub struct Cnn {
    conv16: Conv2d,
    conv32: Conv2d,
    pool1: MaxPool2d,
    conv64: Conv2d,
    pool2: MaxPool2d,
    conv128: Conv2d,
    pool3: MaxPool2d,
    conv256: Conv2d,
    global_pool: AdaptiveAvgPool2d,
    dense: Linear,
}

/// Outputs of the head for `classes` classes: 1 (sigmoid) for two, `classes` (softmax) else.
pub fn outputs_for(classes: usize) -> usize {
    if classes == 2 { 1 } else { classes }
}

/// Keras's default initialisation: Glorot-uniform weights (`±√(6 / (fan_in + fan_out))`),
/// zero biases. (burn's default, PyTorch's Kaiming-uniform with random biases, trained a
/// little worse and slower here.)
const GLOROT: Initializer = Initializer::XavierUniform { gain: 1.0 };

fn zeros(outputs: usize, device: &Device) -> Option<Param<Tensor<1>>> {
    Some(Param::from_tensor(Tensor::zeros([outputs], device)))
}

fn conv(input: usize, output: usize, device: &Device) -> Conv2d {
    let mut conv = Conv2dConfig::new([input, output], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .with_initializer(GLOROT)
        .init(device);
    conv.bias = zeros(output, device);
    conv
}

fn dense(input: usize, output: usize, device: &Device) -> Linear {
    let mut dense = LinearConfig::new(input, output)
        .with_initializer(GLOROT)
        .init(device);
    dense.bias = zeros(output, device);
    dense
}

impl Cnn {
    /// A freshly initialised CNN for `classes` classes (at least 2) on `device`.
    pub fn new(classes: usize, device: &Device) -> Self {
        let pool = || MaxPool2dConfig::new([2, 2]).init();
        Cnn {
            conv16: conv(3, 16, device),
            conv32: conv(16, 32, device),
            pool1: pool(),
            conv64: conv(32, 64, device),
            pool2: pool(),
            conv128: conv(64, 128, device),
            pool3: pool(),
            conv256: conv(128, 256, device),
            global_pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dense: dense(256, outputs_for(classes), device),
        }
    }

    /// A CNN whose initial weights depend on `seed` alone.
    ///
    /// burn initialises parameters lazily, on first use, from one process-wide generator:
    /// this seeds it and draws every parameter at once, under a lock, so other models being
    /// created or used at the same time cannot interleave their draws.
    pub fn seeded(classes: usize, seed: u64, device: &Device) -> Self {
        static INIT: Mutex<()> = Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(seed);
        let model = Cnn::new(classes, device);
        struct Materialise;
        impl ModuleVisitor for Materialise {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        model.visit(&mut Materialise);
        model
    }

    /// Logits for a batch of NCHW images.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = conv3x3_relu(&self.conv16, images);
        let x = conv3x3_relu_pool(&self.conv32, &self.pool1, x);
        let x = conv3x3_relu_pool(&self.conv64, &self.pool2, x);
        let x = conv3x3_relu_pool(&self.conv128, &self.pool3, x);
        let x = conv3x3_relu(&self.conv256, x);
        let x = self.global_pool.forward(x); // [batch, 256, 1, 1]
        let x: Tensor<2> = x.flatten(1, 3);
        self.dense.forward(x)
    }
}
