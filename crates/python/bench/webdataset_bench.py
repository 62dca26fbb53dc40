"""WebDataset 1.0 + Pillow over the same JPEGs written as tar shards (one per TFRecord shard),
into float32 NHWC batches of 32: shuffle(2048) → decode("pil") → /255 → batched(32). Without
PyTorch, WebDataset runs in this one process (its parallel loader is torch's DataLoader).
Prints JSON: two passes (WebDataset has no cache)."""

import argparse
import glob
import io
import json
import os
import tarfile
import time

import numpy as np
import webdataset as wds

import shardfeed


def write_tars(shards, out):
    os.makedirs(out, exist_ok=True)
    tars = []
    for n, path in enumerate(sorted(glob.glob(os.path.join(shards, "*.tfrec")))):
        tar_path = os.path.join(out, f"data{n:02d}.tar")
        tars.append(tar_path)
        if os.path.exists(tar_path):
            continue
        with tarfile.open(tar_path + ".tmp", "w") as tar:
            for i, (jpeg, label) in enumerate(shardfeed.records(path)):
                for ext, data in (("jpg", jpeg), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{n:02d}{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        os.rename(tar_path + ".tmp", tar_path)
    return tars


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--tars", required=True)
    args = ap.parse_args()
    tars = write_tars(args.shards, args.tars)
    dataset = (
        wds.WebDataset(tars, shardshuffle=False)
        .shuffle(2048)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map_tuple(lambda im: np.asarray(im, dtype=np.float32) / np.float32(255), int)
        .batched(32, partial=False)
    )
    rates = []
    for _ in range(2):
        t0 = time.perf_counter()
        n = 0
        for images, labels in dataset:
            assert images.shape[1:] == (160, 160, 3) and images.dtype == np.float32
            n += len(labels)
        rates.append(n / (time.perf_counter() - t0))
    print(json.dumps({"pass1_images_per_s": rates[0], "pass2_images_per_s": rates[1],
                      "webdataset": wds.__version__ if hasattr(wds, "__version__") else "?"}))


if __name__ == "__main__":
    main()
