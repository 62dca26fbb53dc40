"""Real training loops fed by Loader, whose loss falls: Keras (in the TensorFlow venv) and
JAX (in the wheel's venv). Under CI (SHARDFEED_REQUIRE_ALL=1) a missing framework fails."""

import importlib.util

import numpy as np
import pytest

import shardfeed
from conftest import need


@pytest.mark.keras
def test_a_keras_model_learns_from_loader_batches(easy_shards):
    need(importlib.util.find_spec("tensorflow") is not None, "TensorFlow (Keras) in this venv")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        tf.keras.layers.Conv2D(8, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(2),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loader = shardfeed.Loader(easy_shards, batch_size=16, seed=4)
    losses = []
    for _ in range(8):
        epoch = [float(model.train_on_batch(tf.convert_to_tensor(x), tf.convert_to_tensor(y)))
                 for x, y in loader]
        losses.append(np.mean(epoch))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.jax
def test_a_jax_model_learns_from_loader_batches(easy_shards):
    need(importlib.util.find_spec("jax") is not None, "JAX in this venv")
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = {"w": jax.random.normal(key, (3, 2)) * 0.01, "b": jnp.zeros(2)}

    def loss_fn(params, x, y):
        # Global average pooling, then a dense layer.
        logits = x.mean(axis=(1, 2)) @ params["w"] + params["b"]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - 2.0 * g, params, grads), loss

    loader = shardfeed.Loader(easy_shards, batch_size=16, seed=4)
    losses = []
    for _ in range(10):
        epoch = []
        for x, y in loader:
            params, loss = step(params, jnp.asarray(x), jnp.asarray(y))
            epoch.append(float(loss))
        losses.append(np.mean(epoch))
    assert losses[-1] < 0.5 * losses[0], losses
