"""Writes fixtures/tf-image-keys: TFRecord shards as TensorFlow's image tools write them.

Each record is a tf.train.Example with the model garden ImageNet converter's keys:
image/encoded (JPEG bytes from tf.io.encode_jpeg), image/class/label (int64), image/height,
image/width (int64), image/format (b"JPEG") and image/filename. 2 shards x 12 records of
varying sizes (24-72 px a side), class 0 reddish and class 1 bluish with noise, deterministic
(seeded NumPy); expected.json lists, per file, each record's filename, label, height and
width as TensorFlow parses them back. No manifest.json: another tool's folder.

Usage: python scripts/make_tf_image_keys.py fixtures/tf-image-keys  (a Python with tensorflow)
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf


def example(image, label, name):
    encoded = tf.io.encode_jpeg(image, quality=90).numpy()
    h, w = int(image.shape[0]), int(image.shape[1])
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[h])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[w])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"JPEG"])),
        "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(29)
    expected = {}
    for shard in range(2):
        name = f"train-{shard:05d}-of-00002"
        records = []
        with tf.io.TFRecordWriter(os.path.join(out, name)) as writer:
            for i in range(12):
                label = (shard * 12 + i) % 2
                h, w = int(rng.integers(24, 73)), int(rng.integers(24, 73))
                base = np.array([200, 60, 40] if label == 0 else [40, 80, 200], np.float32)
                noise = rng.normal(0, 25, size=(h, w, 3))
                image = np.clip(base + noise, 0, 255).astype(np.uint8)
                filename = f"img_{shard}_{i}.jpg"
                writer.write(example(image, label, filename).SerializeToString())
                records.append({"filename": filename, "label": label, "height": h, "width": w})
        expected[name] = records
    # Read back with TensorFlow itself: what it parses is what the fixture claims.
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
    }
    for name, records in expected.items():
        for raw, want in zip(tf.data.TFRecordDataset(os.path.join(out, name)), records):
            parsed = tf.io.parse_single_example(raw, spec)
            image = tf.io.decode_jpeg(parsed["image/encoded"], channels=3)
            assert parsed["image/filename"].numpy().decode() == want["filename"]
            assert int(parsed["image/class/label"]) == want["label"]
            assert tuple(image.shape[:2]) == (want["height"], want["width"])
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"tensorflow": tf.__version__, "files": expected}, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {sum(map(len, expected.values()))} records, TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main(sys.argv[1])
