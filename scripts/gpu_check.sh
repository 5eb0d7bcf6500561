#!/usr/bin/env bash
# The checks that need a GPU, in one go (about 8 minutes on one GPU): the tests marked cuda, then the GPU benchmarks
# (heatmaps img/s in float32, bfloat16 and float16 on alexnet and resnet50 at 224 px, with their ratios; the GPU section
# of scripts/bench_scale.py). Each part's output goes to OUT (default gpu-check/), one file each, and a summary to the
# terminal. Without a CUDA device the tests skip and the benchmarks shrink to a few small images on the CPU, so the
# script can be checked anywhere.
# Usage: scripts/gpu_check.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
# the repository's venv (scripts/setup-venv test); HUDD_PYTHON=python3 uses an interpreter that has the packages already
# (a machine without a package index), with this tree on PYTHONPATH
py="${HUDD_PYTHON:-}"
if [ -z "$py" ]; then
    scripts/setup-venv test && py=.venv/bin/python || { echo "scripts/setup-venv failed; trying python3" >&2; py=python3; }
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    gpu=1
    "$py" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' > "$out/device.txt" 2>&1
    nvidia-smi >> "$out/device.txt" 2>&1 || true
else
    gpu=0
    echo "no CUDA device: the cuda tests skip, the benchmarks run small on the CPU" > "$out/device.txt"
fi
cat "$out/device.txt" | head -1
status=0
run() {  # run NAME SECONDS COMMAND...: the command's output in OUT/NAME.txt, its time and exit status on the terminal
    local name="$1" limit="$2"; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.txt" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - start)) s ($out/$name.txt)"
    tail -n 3 "$out/$name.txt" | sed 's/^/    /'
    [ "$rc" = 0 ] || status=1
}
run tests 150 "$py" -m pytest -q -m cuda -p no:cacheprovider --durations=10 tests
if [ "$gpu" = 1 ]; then
    run bench_precision 120 "$py" scripts/bench_precision.py --device cuda --models alexnet,resnet50 --size 224 --batch 64 --repeats 5
    run bench_scale 200 "$py" scripts/bench_scale.py --gpu-only --gpu-errors 2000 --gpu-batch 64
else
    run bench_precision 120 "$py" scripts/bench_precision.py --device cpu --models alexnet,resnet18 --size 64 --batch 2 --repeats 1
    run bench_scale 200 "$py" scripts/bench_scale.py --dry-run
fi
exit $status
