"""Keras's single-image inference latency for the seed CNN, beside `cargo xtask bench train`.

Builds the tutorial's model with ../shared/baseline/tf/tutorial_pipeline.py and times, for one
160×160×3 image, `model.predict(x)` (what the tutorial calls) and `model(x, training=False)`
(Keras's fastest call for one input). Prints and writes JSON: milliseconds, median/min/max.

usage: keras_predict_latency.py --baseline DIR --runs N --json FILE
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timings(call, runs):
    call()  # warm-up: traces and compiles
    call()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1e3)
    out.sort()
    return {"median": statistics.median(out), "min": out[0], "max": out[-1], "n": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    sys.path.insert(0, args.baseline)
    import numpy as np
    import tutorial_pipeline as tp

    model = tp.build_model(160)
    x = np.random.default_rng(0).random((1, 160, 160, 3), dtype=np.float32)
    result = {
        "predict_ms": timings(lambda: model.predict(x, verbose=0), args.runs),
        "call_ms": timings(lambda: model(x, training=False).numpy(), args.runs),
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
