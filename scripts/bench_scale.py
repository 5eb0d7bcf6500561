"""Benchmark hudd under torchrun: the heatmaps and the assignment with 1 process against N (gloo on the CPU), and on
GPUs, when there are any, LRP throughput of torchvision models and Step 1 for thousands of error images.

CPU section, in one run: a simulated gaze case (64 px, an untrained-for-long alexnet-small, so most test images are
errors) analysed once, then ``hudd heatmaps --force`` and ``hudd assign --force`` timed with one process and with
``--procs`` processes (``torchrun --standalone``), every process with ``--threads`` threads (the same per process,
as byte-identical files need). A command's time includes starting Python, loading the model and joining the
process group; that overhead is measured by the same command once its step is current (it then only skips) and
subtracted, giving the step's own time and its images per second. The heatmaps of both runs are compared byte by
byte.

GPU section (only with CUDA): LRP heatmaps of every layer, img/s, for torchvision alexnet and resnet50 (untrained,
224 px, batches of ``--gpu-batch``); then Step 1 (``hudd heatmaps`` and the paper's ``hudd cluster``) for about
``--gpu-errors`` error images of an untrained resnet50 on a simulated 224 px case, on every GPU of the machine
(torchrun, one process per GPU).

Usage: .venv/bin/python scripts/bench_scale.py [--procs 2] [--threads 1] [--test 1200] [--improve 600] [--workdir DIR]
       [--gpu-errors 5000] [--gpu-batch 64] [--gpu-only] [--dry-run]
(``--gpu-only``: the GPU section alone; ``--dry-run``: the GPU section on the CPU with a few small images, to check the
script on a machine without GPUs.)
"""

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _hudd(procs: int, *args: str, threads: int = 1) -> float:
    """Wall seconds of ``hudd ARGS`` run by one process or by ``procs`` under torchrun; a failure stops the benchmark."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"] if procs > 1 else []
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *launcher, "-m", "hudd", "--quiet", *args], env=_env(threads), capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"hudd {' '.join(args)} with {procs} process(es) failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def _step_seconds(procs: int, threads: int, command: str, case: Path, extra: list[str]) -> tuple[float, float]:
    """(the step's own seconds, the command's overhead): the forced run minus a run that finds the step current."""
    total = _hudd(procs, command, str(case), "--force", *extra, threads=threads)
    overhead = _hudd(procs, command, str(case), *extra, threads=threads)
    return max(total - overhead, 1e-9), overhead


def _digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.glob("*.npy")):
        sha.update(path.read_bytes())
    return sha.hexdigest()


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}; "
            f"load average {load:.2f} at the start")


def _simulated(folder: Path, *, size: int, n_train: int, n_test: int, n_improve: int) -> Path:
    from hudd.sim import SimulationSettings, simulate_case

    case = folder / f"case-{size}px"
    simulate_case(case, SimulationSettings(task="gaze", n_train=n_train, n_test=n_test, n_improve=n_improve, size=size, seed=0,
                                           hazard_rate=0.5))
    (case / "hudd.toml").write_text("allow_weak_model = true\n")
    return case


def cpu_section(args, work: Path) -> None:
    case = _simulated(work, size=64, n_train=160, n_test=args.test, n_improve=args.improve)
    batch = ["--batch-size", str(args.batch)]
    _hudd(1, "train", str(case), "--epochs", "1", "--batch-size", "32", threads=args.threads)
    _hudd(1, "analyze", str(case), *batch, threads=args.threads)
    _hudd(1, "assign", str(case), *batch, threads=args.threads)
    import pandas as pd

    n_errors = len(pd.read_csv(case / "HUDD/Heatmaps/images.csv"))
    print(f"CPU: gaze case 64 px, alexnet-small, {n_errors} error-inducing test images, {args.improve} improvement images, "
          f"batch {args.batch}, {args.threads} thread(s) per process")
    digests = {}
    for command, n in (("heatmaps", n_errors), ("assign", args.improve)):
        rates = {}
        for procs in (1, args.procs):
            seconds, overhead = _step_seconds(procs, args.threads, command, case, batch)
            rates[procs] = n / seconds
            if command == "heatmaps":
                digests[procs] = _digest(case / "HUDD/Heatmaps")
            print(f"  {command:9s} {procs} process(es): {seconds:7.1f} s  {rates[procs]:8.1f} img/s  "
                  f"(command overhead {overhead:.1f} s: start, model, process group)")
        print(f"  {command:9s} ratio {args.procs} : 1 = {rates[args.procs] / rates[1]:.2f}x")
    print(f"  heatmaps byte-identical between 1 and {args.procs} processes: {'yes' if digests[1] == digests[args.procs] else 'NO'}")


def _lrp_rate(arch: str, device, batch: int, size: int, repeats: int) -> float:
    import torch
    import torchvision

    from hudd.explain.lrp import Explainer

    model = torchvision.models.get_model(arch, weights=None, num_classes=8).eval()
    explainer = Explainer(model, device=device, input_shape=(3, size, size))
    images = torch.randn(batch, 3, size, size)
    explainer.relevance(images)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        _, relevance = explainer.relevance(images)
        maps = [explainer.heatmap(name, rel).float().cpu() for name, rel in relevance.items()]
    del maps
    return batch * repeats / (time.perf_counter() - start)


def gpu_section(args, work: Path, device_name: str) -> None:
    import torch
    import torchvision

    device = torch.device(device_name)
    size = 224 if not args.dry_run else 64
    gpus = torch.cuda.device_count() if device.type == "cuda" else 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"GPU: {gpus} x {name}")
    for arch in ("alexnet", "resnet50"):
        rate = _lrp_rate(arch, device, args.gpu_batch, size, repeats=5 if not args.dry_run else 1)
        print(f"  LRP heatmaps of every layer, {arch} {size} px, batch {args.gpu_batch}: {rate:8.1f} img/s on one device")
    n_test = int(args.gpu_errors * 8 / 7) + 1  # an untrained 8-class model gets about 1 in 8 right
    case = _simulated(work, size=size, n_train=64, n_test=n_test, n_improve=16)
    model = torchvision.models.get_model("resnet50", weights=None, num_classes=8)
    torch.save(model.state_dict(), case / "DNNModels" / "resnet50.pt")
    flags = ["--model", "resnet50.pt", "--arch", "resnet50", "--batch-size", str(args.gpu_batch), "--device", device.type]
    threads = max(1, (os.cpu_count() or 1) // gpus)
    _hudd(gpus, "test", str(case), *flags, threads=threads)
    import pandas as pd

    n_errors = int((~pd.read_csv(case / "HUDD/testResult.csv")["correct"]).sum())
    heatmaps = _hudd(gpus, "heatmaps", str(case), *flags, threads=threads)
    cluster = _hudd(gpus, "cluster", str(case), "--method", "paper", *flags, threads=threads)
    print(f"  Step 1, resnet50 {size} px, {n_errors} error images on {gpus} device(s): heatmaps {heatmaps:.0f} s "
          f"({n_errors / heatmaps:.0f} img/s, start included), the paper's clustering of every layer {cluster:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--test", type=int, default=1200, help="TestSet images of the CPU case")
    parser.add_argument("--improve", type=int, default=600, help="ImprovementSet images of the CPU case")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gpu-errors", type=int, default=5000)
    parser.add_argument("--gpu-batch", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=None, help="where the simulated cases go (default: a temporary folder)")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU section")
    parser.add_argument("--dry-run", action="store_true", help="run the GPU section on the CPU with small sizes")
    args = parser.parse_args()
    print(_machine())
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hudd-bench-scale-"))
    try:
        if args.dry_run:
            args.gpu_errors, args.gpu_batch = 24, 8
            gpu_section(args, work, "cpu")
            return
        if not args.gpu_only:
            cpu_section(args, work)
        import torch

        if torch.cuda.is_available():
            gpu_section(args, work, "cuda")
        else:
            print("GPU: none here; the GPU section runs where CUDA is available")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
