"""One epoch of training-time augmentation (RandomResizedCrop 224 + horizontal flip +
ImageNet normalisation → float32 NCHW, batches of 32, shuffled) by one contender, over the
records of one shard folder; prints one JSON line: images/s and CPU seconds per 1,000 images
(this process and its children).

    python augment_bench.py CONTENDER --shards DIR [--mode train|eval|uint8] [--threads 2]

Contenders: ``shardfeed`` (``Loader(transform=...)``), ``tfdata`` (model-garden style
``sample_distorted_bounding_box`` + ``decode_and_crop_jpeg``, AUTOTUNE, a private pool of
``threads``), ``dali`` (``decoders.image_random_crop`` + ``resize`` +
``crop_mirror_normalize`` on the CPU, ``threads`` threads, DALI's own TFRecord reader over
our ``.idx`` files), ``torchvision`` (v2 ``decode_jpeg`` + ``RandomResizedCrop`` + flip +
``ToDtype`` + ``Normalize`` in a ``DataLoader(num_workers=threads)``, the records' JPEG bytes
held in memory). ``--mode eval``: resize 256 + centre crop 224 instead; ``--mode uint8``:
the crop and flip only, uint8 out (ours and DALI).
"""

import argparse
import glob
import json
import os
import sys
import time

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 224
BATCH = 32


def cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def counting(batches):
    """An epoch function: iterates `batches` (each `(images, labels)`), returns the images."""
    def epoch():
        return sum(len(labels) for _, labels in batches)

    return epoch


def shard_files(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.tfrec")))
    if not files:
        sys.exit(f"no .tfrec files in {folder}")
    return files


def run_shardfeed(args, files):
    import shardfeed
    from shardfeed.transforms import CenterCrop, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop

    if args.mode == "train":
        transform, dtype = Compose([RandomResizedCrop(SIZE), RandomHorizontalFlip(), Normalize(MEAN, STD)]), "float32"
    elif args.mode == "eval":
        transform, dtype = Compose([CenterCrop(SIZE), Normalize(MEAN, STD)]), "float32"
    else:
        transform, dtype = Compose([RandomResizedCrop(SIZE), RandomHorizontalFlip()]), "uint8"
    loader = shardfeed.Loader(args.shards, batch_size=BATCH, layout="NCHW", dtype=dtype,
                              transform=transform, jobs=args.threads, drop_remainder=False)
    return counting(loader)


def run_tfdata(args, files):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if args.mode == "uint8":
        sys.exit("tfdata: uint8 mode not measured")
    features = {"image": tf.io.FixedLenFeature([], tf.string), "class": tf.io.FixedLenFeature([], tf.int64)}
    mean = tf.constant(MEAN, shape=[1, 1, 3]) * 255.0
    std = tf.constant(STD, shape=[1, 1, 3]) * 255.0

    def train(record):
        parsed = tf.io.parse_single_example(record, features)
        jpeg = parsed["image"]
        shape = tf.image.extract_jpeg_shape(jpeg)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True)
        y, x, _ = tf.unstack(begin)
        h, w, _ = tf.unstack(size)
        image = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([y, x, h, w]), channels=3)
        image = tf.image.resize(image, [SIZE, SIZE], antialias=True)
        image = tf.image.random_flip_left_right(image)
        image = (image - mean) / std
        return tf.transpose(image, [2, 0, 1]), parsed["class"]

    def evaluate(record):
        parsed = tf.io.parse_single_example(record, features)
        image = tf.io.decode_jpeg(parsed["image"], channels=3)
        shape = tf.shape(image)
        h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        scale = 256.0 / tf.minimum(h, w)
        image = tf.image.resize(image, [tf.cast(h * scale, tf.int32), tf.cast(w * scale, tf.int32)], antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, SIZE, SIZE)
        image = (image - mean) / std
        return tf.transpose(image, [2, 0, 1]), parsed["class"]

    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=1)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.shuffle(2048, seed=1)
    ds = ds.map(train if args.mode == "train" else evaluate, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(BATCH).prefetch(tf.data.AUTOTUNE).with_options(options)
    return counting(ds)


def run_dali(args, files):
    from nvidia.dali import fn, pipeline_def, types
    import nvidia.dali.tfrecord as tfrec

    records = 0
    for f in files:
        with open(f + ".idx") as idx:
            records += sum(1 for line in idx if line.strip())

    @pipeline_def(batch_size=BATCH, num_threads=args.threads, device_id=None, exec_dynamic=True)
    def pipe():
        inputs = fn.readers.tfrecord(
            path=files, index_path=[f + ".idx" for f in files],
            features={"image": tfrec.FixedLenFeature((), tfrec.string, ""),
                      "class": tfrec.FixedLenFeature([1], tfrec.int64, -1)},
            random_shuffle=True, initial_fill=2048, name="reader")
        if args.mode == "eval":
            images = fn.decoders.image(inputs["image"], device="cpu", output_type=types.RGB)
            images = fn.resize(images, resize_shorter=256, antialias=True)
            mirror = 0
        else:
            images = fn.decoders.image_random_crop(
                inputs["image"], device="cpu", output_type=types.RGB,
                random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
            images = fn.resize(images, resize_x=SIZE, resize_y=SIZE, antialias=True)
            mirror = fn.random.coin_flip()
        if args.mode == "uint8":
            images = fn.crop_mirror_normalize(images, dtype=types.UINT8, output_layout="CHW",
                                              mean=[0.0] * 3, std=[1.0] * 3, mirror=mirror)
        else:
            images = fn.crop_mirror_normalize(
                images, dtype=types.FLOAT, output_layout="CHW", crop=(SIZE, SIZE),
                mean=[m * 255 for m in MEAN], std=[s * 255 for s in STD], mirror=mirror)
        return images, inputs["class"]

    p = pipe()
    p.build()

    def epoch():
        n = 0
        for _ in range((records + BATCH - 1) // BATCH):
            images, labels = p.run()
            n += len(labels)
        return min(n, records)

    return epoch


def run_torchvision(args, files):
    import torch
    import torchvision
    from torchvision.io import decode_jpeg
    from torchvision.transforms import v2

    import shardfeed

    if args.mode == "uint8":
        sys.exit("torchvision: uint8 mode not measured")
    torchvision.disable_beta_transforms_warning() if hasattr(torchvision, "disable_beta_transforms_warning") else None
    items = []
    for f in files:
        items.extend(shardfeed.records(f))
    if args.mode == "train":
        steps = [v2.RandomResizedCrop(SIZE, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(256, antialias=True), v2.CenterCrop(SIZE)]
    transform = v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])

    class Records(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            jpeg, label = items[i]
            data = torch.frombuffer(bytearray(jpeg), dtype=torch.uint8)
            return transform(decode_jpeg(data)), label

    def init(_):
        torch.set_num_threads(1)

    loader = torch.utils.data.DataLoader(Records(), batch_size=BATCH, shuffle=True,
                                         num_workers=args.threads, worker_init_fn=init)
    return counting(loader)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("contender", choices=["shardfeed", "tfdata", "dali", "torchvision"])
    parser.add_argument("--shards", required=True)
    parser.add_argument("--mode", choices=["train", "eval", "uint8"], default="train")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    files = shard_files(args.shards)
    run = {"shardfeed": run_shardfeed, "tfdata": run_tfdata, "dali": run_dali,
           "torchvision": run_torchvision}[args.contender]
    epoch = run(args, files)  # imports and pipeline building are not timed
    wall, cpu = time.perf_counter(), cpu_seconds()
    images = epoch()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(json.dumps({"contender": args.contender, "mode": args.mode, "images": images,
                      "seconds": wall, "images_per_second": images / wall,
                      "cpu_seconds_per_1000": cpu / images * 1000}))


if __name__ == "__main__":
    main()
