#!/bin/bash
# A/B of the read path between two builds: `shardfeed stream --no-cache` and the Python
# Loader (cache=False), alternating, N pairs each (docs/BENCHMARKS.md, issue 28).
# Put each build's `shardfeed` and `lib_native.so` (cargo build --release -p shardfeed
# -p shardfeed-python) in $AB/old and $AB/new; PY: a Python with numpy.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
N=${N:-6}
AB=${AB:-/tmp/ab}
PY=${PY:-python3}
OLD_REV=${OLD_REV:-360105a}
cd "$AB"
grep -m1 'model name' /proc/cpuinfo; nproc
if [ ! -d shards ]; then
  ./new/shardfeed gen-data --out data --n-train 4000 --n-test 0 --min-side 200 --max-side 400 >/dev/null
  ./new/shardfeed shard data/train --out shards --size 160 >/dev/null
fi
for v in old new; do mkdir -p pkg-$v/shardfeed; cp "$HERE"/../crates/python/python/shardfeed/*.py* pkg-$v/shardfeed/ 2>/dev/null || true; cp $v/lib_native.so pkg-$v/shardfeed/_native.abi3.so; done
# the old package's __init__ (no _after_fork_in_child)
git -C "$HERE" show "$OLD_REV:crates/python/python/shardfeed/__init__.py" > pkg-old/shardfeed/__init__.py
for i in $(seq $N); do
  for v in old new; do
    r=$(./$v/shardfeed stream shards --json --epochs 2 --no-cache --jobs 2 | $PY -c "import json,sys; e=json.load(sys.stdin)['epochs']; print(sum(x['images_per_second'] for x in e)/len(e))")
    echo "stream $v $r"
    p=$(PYTHONPATH=pkg-$v $PY -c "
import time, shardfeed
l = shardfeed.Loader('shards', batch_size=32, cache=False, jobs=2, epochs=1)
t = time.perf_counter(); n = sum(len(y) for _, y in l); print(n / (time.perf_counter() - t))")
    echo "python $v $p"
  done
done
