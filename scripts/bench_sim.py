"""Benchmark the eye simulator: images per second, batched vs one image at a time (the baseline).

Prints, from one run on this machine (absolute times are noisy, ratios are what to compare):
  - rendering in batches of 256 vs one image per call (the original tool's loop style);
  - the whole ``hudd simulate`` path (render + PNG + CSV) for 12,000 images.

Usage: .venv/bin/python scripts/bench_sim.py [--images N]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hudd.core.progress import set_quiet
from hudd.sim import SimulationSettings, render_eyes, sample_parameters, simulate_case


def _render_rate(n: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    params, _ = sample_parameters("gaze", n, 0.2, rng)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        render_eyes({k: v[lo:lo + batch] for k, v in params.items()}, 64, rng)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000, help="images for the end-to-end run (default 12000)")
    args = parser.parse_args()
    set_quiet(True)
    batched = _render_rate(4096, 256)
    single = _render_rate(512, 1)
    print(f"render 64x64, batch 256: {batched:,.0f} img/s")
    print(f"render 64x64, one per call (baseline): {single:,.0f} img/s")
    print(f"ratio batched / baseline: {batched / single:.1f}x")
    n_train = args.images // 2
    n_test = args.images // 4
    settings = SimulationSettings(n_train=n_train, n_test=n_test, n_improve=args.images - n_train - n_test)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        simulate_case(Path(tmp), settings)
        elapsed = time.perf_counter() - start
    print(f"hudd simulate, {args.images} images (render + PNG + CSV): {elapsed:.1f} s, {args.images / elapsed:,.0f} img/s")


if __name__ == "__main__":
    main()
