#!/usr/bin/env bash
# The whole demo from nothing (simulate, train, analyze, retrain with B1/B2 x 3 runs, evaluate,
# report) in a fresh folder, timed against issue 8's budget of 10 minutes on 2 CPU cores; then the
# same command again on the finished case (every step current, so skipped) as a ratio of the first.
# Usage: scripts/bench_demo.sh [extra hudd demo flags, e.g. --device cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv pretrained >/dev/null  # the default method needs the backbone, as scripts/demo installs it
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
seconds() { python3 -c 'import time; print(time.monotonic())'; }
t0=$(seconds)
.venv/bin/hudd --quiet demo "$dir/demo-case" "$@" > "$dir/first.txt"
t1=$(seconds)
.venv/bin/hudd --quiet demo "$dir/demo-case" "$@" > "$dir/second.txt"
t2=$(seconds)
tail -n 1 "$dir/first.txt"
if [ "$(tail -n 1 "$dir/first.txt")" = "$(tail -n 1 "$dir/second.txt")" ]; then echo "rerun: same evaluation"; else echo "rerun: different evaluation"; fi
python3 - "$t0" "$t1" "$t2" "$(nproc)" <<'PY'
import sys
t0, t1, t2, cores = map(float, sys.argv[1:])
first, second = t1 - t0, t2 - t1
print(f"demo from nothing: {first:.0f} s on {cores:.0f} cores = {first / 600:.2f} x the 10-minute budget")
print(f"demo again, every step current: {second:.1f} s = {second / first:.3f} x the first run")
PY
