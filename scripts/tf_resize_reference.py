#!/usr/bin/env python3
"""TensorFlow's own decode + resize + centre crop of every JPEG in a folder, as raw RGB.

Usage: tf_resize_reference.py SRC_DIR OUT_DIR --target T

For each SRC_DIR/NAME.jpg: tf.image.decode_jpeg(channels=3) (TF's default decode), the
tutorial's resize (shorter side -> T, long side floor(long*T/short), tf.image.resize
bilinear, no antialias) and crop ((excess)//2), tf.cast to uint8 (truncation), written to
OUT_DIR/NAME.rgb (T*T*3 bytes). OUT_DIR/index.json lists the names and source sizes.
The resize is the same expression as ../shared/baseline/tf/tutorial_pipeline.py's.
"""
import argparse
import glob
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402


def resize_and_crop(image, target):
    h = tf.shape(image)[0]
    w = tf.shape(image)[1]
    t = tf.constant(target, tf.int32)
    new_h, new_w = tf.cond(h < w, lambda: (t, (w * t) // h), lambda: ((h * t) // w, t))
    image = tf.image.resize(image, tf.stack([new_h, new_w]))
    return tf.image.crop_to_bounding_box(image, (new_h - t) // 2, (new_w - t) // 2, t, t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--target", type=int, required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    index = []
    for path in sorted(glob.glob(os.path.join(args.src, "*.jpg"))):
        image = tf.image.decode_jpeg(tf.io.read_file(path), channels=3)
        square = tf.cast(resize_and_crop(image, args.target), tf.uint8).numpy()
        name = os.path.basename(path)
        with open(os.path.join(args.out, name + ".rgb"), "wb") as f:
            f.write(square.tobytes())
        index.append({"name": name, "height": int(image.shape[0]), "width": int(image.shape[1])})
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump({"target": args.target, "images": index}, f)
    print(f"{len(index)} references at {args.target} px in {args.out}")


if __name__ == "__main__":
    main()
