"""Benchmark Step 4's distances: single linkage of M improvement heatmaps to K clusters of N test heatmaps.

In one run, on random heatmaps: hudd's blocked GEMM (:func:`hudd.cluster.distance.distance_blocks` +
per-cluster minimum) over all M images, against a plain per-image loop (one image's distances to
every test heatmap, then the minimum per cluster), timed on a subset of images and scaled to M.
Also the peak traced memory of hudd's pass, bounded by its block size.

Usage: .venv/bin/python scripts/bench_assign.py [--m 20000] [--n 2000] [--d 43264] [--k 20] [--loop-images 40]
"""

import argparse
import time
import tracemalloc

import numpy as np

from hudd.selection.assignment import single_linkage
from hudd.cluster.distance import distance_blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=20000)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=43264)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256, help="improvement images per block (as hudd assign's batch)")
    parser.add_argument("--loop-images", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    reference = rng.random((args.n, args.d))  # float64, as hudd assign holds the clustered heatmaps
    labels = np.sort(rng.integers(0, args.k, args.n))
    starts = np.searchsorted(labels, np.arange(args.k))
    batch = rng.random((args.batch, args.d), dtype=np.float32)

    tracemalloc.start()
    start = time.perf_counter()
    done = 0
    while done < args.m:
        rows = min(args.batch, args.m - done)
        for _, _, block in distance_blocks(batch[:rows], reference, block_rows=rows):
            single_linkage(block, starts)
        done += rows
    t_gemm = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**30
    tracemalloc.stop()

    start = time.perf_counter()
    for image in batch[: args.loop_images].astype(np.float64):
        distances = np.sqrt(((reference - image) ** 2).sum(axis=1))
        [distances[labels == c].min() for c in range(args.k)]
    t_loop = (time.perf_counter() - start) / args.loop_images * args.m

    print(f"M = {args.m} improvement images, N = {args.n} clustered test heatmaps, D = {args.d}, K = {args.k}")
    print(f"  hudd blocked GEMM     {t_gemm:8.1f} s   peak traced memory {peak:.2f} GiB (block of {args.batch} images)")
    print(f"  per-image loop        {t_loop:8.1f} s   (timed on {args.loop_images} images, scaled to M)")
    print(f"  ratio                 {t_loop / t_gemm:8.1f}x  (target >= 50x)")


if __name__ == "__main__":
    main()
