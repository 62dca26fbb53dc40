"""Shared fixtures: a small synthetic data set, sharded once per session."""

import os
import pathlib
import shutil

import pytest

import shardfeed

# Under CI every check must run: a missing peer is a failure, not a skip.
REQUIRE_ALL = os.environ.get("SHARDFEED_REQUIRE_ALL") == "1"


def need(condition, why):
    """Skip loudly, or fail under CI, when a peer is missing."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required under CI: {why}")
    pytest.skip(f"SKIPPED (not proven here): {why}")


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    shardfeed.synthetic(root, train=203, test=0, min_side=40, max_side=80, seed=3)
    return root


@pytest.fixture(scope="session")
def shards(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    report = shardfeed.shard(data / "train", out, size=32, shards=8, jobs=2)
    assert report.records == 203
    return out


@pytest.fixture
def damaged_copy(shards, tmp_path):
    """A copy of the shards with one byte of one record's payload flipped."""
    copy = tmp_path / "damaged"
    shutil.copytree(shards, copy)
    first = sorted(copy.glob("*.tfrec"))[0]
    entries = [line.split() for line in first.with_name(first.name + ".idx").read_text().split("\n") if line]
    offset = int(entries[2][0])
    data = bytearray(first.read_bytes())
    data[offset + 30] ^= 0x5A
    first.write_bytes(bytes(data))
    return copy, first, offset


def cli_binary():
    path = os.environ.get("SHARDFEED_BIN")
    return pathlib.Path(path) if path and pathlib.Path(path).exists() else None


def encode_jpeg(pixels):
    """JPEG bytes of an HWC uint8 array, with Pillow or TensorFlow (whichever the venv has)."""
    try:
        import io

        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=90)
        return out.getvalue()
    except ImportError:
        import tensorflow as tf

        return tf.io.encode_jpeg(pixels, quality=90).numpy()


@pytest.fixture(scope="session")
def easy_shards(tmp_path_factory):
    """Two classes a small model tells apart at once (dark and bright noise), for showing
    that a training loop fed by Loader learns."""
    import numpy as np

    root = tmp_path_factory.mktemp("easy")
    src = root / "train"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(160):
        label = ("dark", "bright")[i % 2]
        centre = 70 if label == "dark" else 180
        pixels = np.clip(rng.normal(centre, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
        (src / f"{label}.{i}.jpg").write_bytes(encode_jpeg(pixels))
    out = root / "shards"
    shardfeed.shard(src, out, size=32, shards=4)
    return out
