#!/usr/bin/env python3
"""Reads a folder of shards (any compression) with TensorFlow's tutorial reader and reports.

Usage: tf_read_shards.py DIR --compression none|gzip|zlib --target-size T --classes a,b

tf.data.TFRecordDataset(files, compression_type=...) (checks both CRCs of every record),
tf.io.parse_single_example with the tutorial's spec (image: string, class: int64),
tf.image.decode_jpeg(channels=3), shape == [T, T, 3], class in range. Prints one JSON line:
{"records": N, "per_class": {name: count}, "errors": [..]}; exits 1 on any error.
(`../shared/baseline/tf/verify_shards.py` does more checks but reads uncompressed files only.)
"""
import argparse
import glob
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "class": tf.io.FixedLenFeature([], tf.int64),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--target-size", type=int, required=True)
    ap.add_argument("--classes", required=True)
    args = ap.parse_args()
    classes = args.classes.split(",")
    kind = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}[args.compression]
    files = sorted(glob.glob(os.path.join(args.dir, "*.tfrec")))
    per_class = {name: 0 for name in classes}
    errors = []
    records = 0
    for path in files:
        try:
            for raw in tf.data.TFRecordDataset(path, compression_type=kind):
                example = tf.io.parse_single_example(raw, SPEC)
                image = tf.image.decode_jpeg(example["image"], channels=3)
                label = int(example["class"])
                if list(image.shape) != [args.target_size, args.target_size, 3]:
                    errors.append(f"{path}: record {records}: shape {list(image.shape)}")
                if not 0 <= label < len(classes):
                    errors.append(f"{path}: record {records}: class {label}")
                else:
                    per_class[classes[label]] += 1
                records += 1
        except tf.errors.OpError as error:
            errors.append(f"{path}: {error.message}")
    print(json.dumps({"files": len(files), "records": records, "per_class": per_class, "errors": errors}))
    sys.exit(1 if errors or not files else 0)


if __name__ == "__main__":
    main()
