"""shardfeed.Loader's throughput into float32 NHWC batches, as `cargo xtask bench python`
measures it: first pass (decode + fill the cache), cached passes, no cache (steady state).
Each batch is touched (one value read) as a training step would receive it. Prints JSON."""

import argparse
import json
import time

import shardfeed


def passes(shards, cache, later, jobs):
    loader = shardfeed.Loader(shards, batch_size=32, cache=cache, epochs=None, jobs=jobs)
    steps = len(loader)
    it = iter(loader)
    t0 = time.perf_counter()
    touched = 0.0
    for _ in range(steps):
        images, labels = next(it)
        touched += float(images[0, 0, 0, 0])
    t1 = time.perf_counter()
    for _ in range(steps * later):
        images, labels = next(it)
        touched += float(images[0, 0, 0, 0])
    t2 = time.perf_counter()
    images_per_pass = steps * 32
    stats = loader.stats()
    del it
    return {
        "pass1_images_per_s": images_per_pass / (t1 - t0),
        "pass2_images_per_s": images_per_pass * later / (t2 - t1),
        "wait_fraction": stats["wait_fraction"],
        "touched": touched,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--later-passes", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    print(json.dumps({
        "cache": passes(args.shards, True, args.later_passes, args.jobs),
        "nocache": passes(args.shards, False, args.later_passes, args.jobs),
    }))


if __name__ == "__main__":
    main()
