#!/usr/bin/env python3
"""Reads TFRecord files shardfeed wrote with TensorFlow itself and compares every value.

Usage: tf_read_check.py EXPECTED.json

EXPECTED.json: {"files": [{"path", "compression": "" | "GZIP" | "ZLIB", "tutorial_spec": bool,
"records": [{feature name: {"kind": "bytes", "hex": [...]} | {"kind": "float", "bits": [...]}
| {"kind": "int64", "values": [...]} | {"kind": "none"}}]}]}

Each file is read with tf.data.TFRecordDataset(path, compression_type=...), which checks both
CRCs of every record, and each record parsed with tf.io.parse_single_example: a VarLenFeature
per feature (every value compared; floats by their bits), and for "tutorial_spec" files also
the tutorial's FixedLenFeature spec (image: string, class: int64). Exits 1 on any difference.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

DTYPES = {"bytes": tf.string, "float": tf.float32, "int64": tf.int64}
TUTORIAL_SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "class": tf.io.FixedLenFeature([], tf.int64),
}


def expected_values(feature):
    kind = feature["kind"]
    if kind == "bytes":
        return [bytes.fromhex(h) for h in feature["hex"]]
    if kind == "float":
        return [int(b) for b in feature["bits"]]
    return [int(v) for v in feature["values"]]


def actual_values(kind, tensor):
    values = tensor.values.numpy()
    if kind == "bytes":
        return [bytes(v) for v in values]
    if kind == "float":
        return [int(b) for b in values.astype(np.float32).view(np.uint32)]
    return [int(v) for v in values]


def check_file(entry):
    problems = []
    path = entry["path"]
    records = entry["records"]
    dataset = tf.data.TFRecordDataset(path, compression_type=entry["compression"])
    count = 0
    for index, serialized in enumerate(dataset):
        count += 1
        if index >= len(records):
            continue
        want = records[index]
        spec = {name: tf.io.VarLenFeature(DTYPES[f["kind"]]) for name, f in want.items() if f["kind"] != "none"}
        parsed = tf.io.parse_single_example(serialized, spec)
        for name, feature in want.items():
            if feature["kind"] == "none":
                continue
            got = actual_values(feature["kind"], parsed[name])
            if got != expected_values(feature):
                problems.append(f"{path} record {index} feature {name!r}: tensorflow read {got!r}")
        if entry.get("tutorial_spec"):
            fixed = tf.io.parse_single_example(serialized, TUTORIAL_SPEC)
            if fixed["image"].numpy() != expected_values(want["image"])[0]:
                problems.append(f"{path} record {index}: tutorial spec image differs")
            if int(fixed["class"].numpy()) != expected_values(want["class"])[0]:
                problems.append(f"{path} record {index}: tutorial spec class differs")
    if count != len(records):
        problems.append(f"{path}: tensorflow read {count} records, expected {len(records)}")
    return count, problems


def main():
    with open(sys.argv[1]) as f:
        expected = json.load(f)
    problems = []
    records = 0
    for entry in expected["files"]:
        count, file_problems = check_file(entry)
        records += count
        problems += file_problems
        status = "OK" if not file_problems else "FAIL"
        print(f"{status} {os.path.basename(entry['path'])} ({entry['compression'] or 'plain'}): {count} records")
    for problem in problems:
        print("FAIL", problem)
    print(f"tensorflow read {len(expected['files'])} files, {records} records, tensorflow {tf.__version__}: "
          f"{'all values match' if not problems else str(len(problems)) + ' problems'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
