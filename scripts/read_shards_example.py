import glob
import json

import tensorflow as tf

classes = json.load(open("shards/manifest.json"))["classes"]
spec = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "class": tf.io.FixedLenFeature([], tf.int64),
}


def parse(record):
    example = tf.io.parse_single_example(record, spec)
    image = tf.image.decode_jpeg(example["image"], channels=3)
    return tf.cast(image, tf.float32) / 255.0, example["class"]


files = sorted(glob.glob("shards/*.tfrec"))
dataset = (
    tf.data.TFRecordDataset(files)  # compression_type="GZIP" for shards of --compression gzip
    .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(32)
)
images, labels = next(iter(dataset))
print(images.shape, [classes[i] for i in labels.numpy()[:4]])
