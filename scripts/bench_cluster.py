"""Benchmark Step 1b (clustering one layer): hudd's kernels against the obvious baselines, in one run.

For each N (error-inducing images) and D (heatmap size), on random heatmaps of 12 Gaussian blobs:
  - distance matrix: hudd.cluster.distance (blocked float64 GEMM) vs scipy ``pdist`` (target >= 10x);
  - WICD for every k in 2..min(N/2, 500): hudd's O(N^2) sweep vs the per-k reference that the
    original tool's approach implies (cut at k, then the mean pairwise distance of every cluster
    from the distance matrix, for every k) (target >= 100x at N = 3000);
  - the whole layer (normalise, distances, Ward, WICD, knee, cut) and its peak traced memory.
hudd's kernels are timed as the median of several calls, the slow baselines once.
``--large N`` also runs the whole layer once at N images (D = 4096) in a child process and prints
its peak resident memory (the README states N = 20,000 on a 24 GB machine).

Usage: .venv/bin/python scripts/bench_cluster.py [--sizes 1000,3000] [--dims 4096,43264] [--large 20000]
"""

import argparse
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from scipy.spatial.distance import pdist

from hudd.cluster.clustering import choose_k, cut, k_range, ward_linkage, wicd_curve
from hudd.cluster.distance import euclidean_distances, minmax_scale


def heatmaps(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.random((12, d), dtype=np.float32)
    return centres[rng.integers(0, 12, n)] + 0.3 * rng.random((n, d), dtype=np.float32)


def per_k_reference(distances: np.ndarray, Z: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """WICD(k) from scratch for every k: the O(N^2)-per-k loop hudd replaces."""
    n = len(distances)
    out = []
    for k in ks:
        labels = cut(Z, int(k))
        total = 0.0
        for c in range(k):
            members = np.flatnonzero(labels == c)
            m = len(members)
            if m > 1:
                total += distances[np.ix_(members, members)].sum() / (m * (m - 1)) * m / n
        out.append(total / k)
    return np.array(out)


def whole_layer(x: np.ndarray) -> tuple[int, str]:
    distances = euclidean_distances(x, scale=minmax_scale(x))
    Z = ward_linkage(distances)
    ks = k_range(len(x))
    k, method = choose_k(ks, wicd_curve(distances, Z)[ks - 1])
    cut(Z, k)
    return k, method


def timed(fn, repeats: int = 1):
    """Median wall time of ``repeats`` calls (the machines are noisy) and the last result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000")
    parser.add_argument("--dims", default="4096,43264")
    parser.add_argument("--large", type=int, default=0, help="also run one layer of this many images (D = 4096) and report its peak RSS")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        elapsed, (k, method) = timed(lambda: whole_layer(heatmaps(args.child, 4096)))
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"N = {args.child}, D = 4096: whole layer {elapsed:.1f} s, k = {k} ({method}), peak RSS {peak_gib:.1f} GiB")
        return
    for n in map(int, args.sizes.split(",")):
        for d in map(int, args.dims.split(",")):
            x = heatmaps(n, d)
            t_pdist, _ = timed(lambda: pdist(x.astype(np.float64)))
            t_ours, distances = timed(lambda: euclidean_distances(x), 3)
            Z = ward_linkage(distances)
            ks = k_range(n)
            t_sweep, fast = timed(lambda: wicd_curve(distances, Z)[ks - 1], 5)
            t_ref, ref = timed(lambda: per_k_reference(distances, Z, ks))
            assert np.allclose(fast, ref, rtol=1e-9)
            tracemalloc.start()
            t_layer, (k, method) = timed(lambda: whole_layer(x))
            peak = tracemalloc.get_traced_memory()[1] / 2**30
            tracemalloc.stop()
            print(f"N = {n}, D = {d}:")
            print(f"  distances  hudd {t_ours:7.2f} s   scipy pdist {t_pdist:7.2f} s   ratio {t_pdist / t_ours:6.1f}x (target >= 10x)")
            print(f"  WICD sweep hudd {t_sweep:7.3f} s   per-k ref   {t_ref:7.2f} s   ratio {t_ref / t_sweep:6.0f}x (target >= 100x at N = 3000), k = 2..{ks[-1]}")
            print(f"  whole layer {t_layer:.2f} s, k = {k} ({method}), peak traced memory {peak:.2f} GiB")
    if args.large:
        subprocess.run([sys.executable, __file__, "--child", str(args.large)], check=True)


if __name__ == "__main__":
    main()
