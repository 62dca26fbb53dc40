"""TensorFlow reads shards written with `shardfeed shard --resize fit|keep`.

Every record of every *.tfrec in DIR is parsed with tf.io.parse_single_example (image,
class, height, width), its image decoded with tf.io.decode_jpeg(channels=3); the decoded
shape must be the stored (height, width). Prints one JSON line: records, per-class counts,
and the sizes seen; exits 1 on any mismatch.

Usage: python scripts/tf_read_sized_shards.py DIR
"""

import glob
import json
import os
import sys

import tensorflow as tf

SPEC = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "class": tf.io.FixedLenFeature([], tf.int64),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def main(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.tfrec")))
    records, per_class, sizes, bad = 0, {}, set(), []
    for raw in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(raw, SPEC)
        image = tf.io.decode_jpeg(parsed["image"], channels=3)
        stored = (int(parsed["height"]), int(parsed["width"]))
        if tuple(image.shape) != stored + (3,):
            bad.append(f"record {records}: decoded {tuple(image.shape)}, stored {stored}")
        label = int(parsed["class"])
        per_class[label] = per_class.get(label, 0) + 1
        sizes.add(stored)
        records += 1
    print(json.dumps({"records": records, "per_class": per_class,
                      "sizes": sorted(sizes), "mismatches": bad}))
    sys.exit(1 if bad or records == 0 else 0)


if __name__ == "__main__":
    main(sys.argv[1])
