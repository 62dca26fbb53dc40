#!/usr/bin/env bash
# shardfeed's GPU check, packed by `cargo xtask gpu-check` beside the stripped `--features
# cuda` binary (shardfeed.xz) and libdevice.10.bc. Runs on a machine with an NVIDIA GPU and no
# network: generates a labelled set, shards it, trains EPOCHS epochs with --device cuda at
# batch 32 and at the largest of BIG_BATCHES that runs, evaluates each run, does the same at
# batch 32 on the CPU, and prints one table (also written to $OUT/summary.md).
#
#   bash run.sh                      # on the GPU machine
#   GPU_CHECK_DEVICE=cpu bash run.sh # every step on the CPU (checks this script anywhere)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
device="${GPU_CHECK_DEVICE:-cuda}"
images="${GPU_CHECK_IMAGES:-8000}"
epochs="${GPU_CHECK_EPOCHS:-3}"
big_batches="${GPU_CHECK_BIG_BATCHES:-1024 512 256}"
limit="${GPU_CHECK_STEP_TIMEOUT:-240}"
out="${OUT:-$here/out}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1

bin="$work/shardfeed"
xz -dc "$here/shardfeed.xz" >"$bin"
chmod +x "$bin"
# burn's kernels link libdevice from $CUDA_PATH/nvvm/libdevice (no toolkit needed).
mkdir -p "$work/cuda/nvvm/libdevice"
cp "$here/libdevice.10.bc" "$work/cuda/nvvm/libdevice/"
export CUDA_PATH="$work/cuda"
export NO_COLOR=1

echo "== $("$bin" --version), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
    echo "no nvidia-smi on PATH: GPU memory is not measured"
fi

started=$(date +%s)
timeout "$limit" "$bin" gen-data --n-train "$images" --n-test 64 --out "$work/data"
timeout "$limit" "$bin" shard "$work/data/train" --out "$work/shards"
echo "== data: $images images generated and sharded in $(($(date +%s) - started)) s"

rows=()

# train LABEL DEVICE BATCH: trains, evaluates, appends a row; fails if training fails.
train() {
    local label=$1 dev=$2 batch=$3
    local log="$out/train-$label.log" mem="$out/gpu-memory-$label.csv" watcher=""
    if [ "$dev" = cuda ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$mem" &
        watcher=$!
    fi
    local status=0 began
    began=$(date +%s)
    timeout "$limit" "$bin" train "$work/shards" --device "$dev" --epochs "$epochs" \
        --batch "$batch" --out "$work/run-$label" >"$log" 2>&1 || status=$?
    if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null || true; fi
    echo "== train $label ($dev, batch $batch): exit $status in $(($(date +%s) - began)) s"
    grep -E '^(Epoch [0-9]+/|input pipeline|  )|error' "$log" | grep -v ETA | tail -20 || true
    if [ "$status" -ne 0 ]; then
        tail -5 "$log"
        return "$status"
    fi
    local accuracy memory
    accuracy=$(timeout "$limit" "$bin" evaluate --model "$work/run-$label" --device "$dev" --json |
        grep -o '"accuracy": *[0-9.e-]*' | head -1 | sed 's/.*: *//')
    memory="-"
    if [ -s "$mem" ]; then memory="$(sort -n "$mem" | tail -1) MiB"; fi
    # Epoch lines: "... - 1234.5 images/s (waited 0.1s for input, 0.8% of training time)".
    local figures
    figures=$(grep -E '^Epoch [0-9]+/' "$log" | awk '
        { for (i = 1; i <= NF; i++) {
              if ($i == "images/s") ips = $(i - 1)
              if ($i ~ /%$/ && $(i + 1) == "of") { w = $i; sub("%", "", w) } }
          n++; if (n == 1) { first = ips; firstw = w } else { sum += ips; sumw += w; later++ } }
        END { if (later) printf "%.1f|%.1f|%.1f|%.2f", first, firstw, sum / later, sumw / later;
              else printf "%.1f|%.1f|-|-", first, firstw }')
    IFS='|' read -r first first_wait later later_wait <<<"$figures"
    rows+=("| $label | $dev | $batch | $first | $first_wait % | $later | $later_wait % | $memory | $(awk -v a="$accuracy" 'BEGIN { printf "%.2f %%", a * 100 }') |")
}

train gpu-b32 "$device" 32
for batch in $big_batches; do
    if train "gpu-b$batch" "$device" "$batch"; then break; fi
    echo "== batch $batch did not run; trying the next smaller one"
done
train cpu-b32 cpu 32

{
    echo "| run | device | batch | epoch 1 images/s | epoch 1 input wait | epochs 2+ images/s | epochs 2+ input wait | peak GPU memory | validation accuracy |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "$images generated images (16 shards, 160 px), $epochs epochs each; $(nproc) CPU cores; total $(($(date +%s) - started)) s."
} | tee "$out/summary.md"
