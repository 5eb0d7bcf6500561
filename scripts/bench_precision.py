"""Benchmark ``--precision``: LRP heatmaps of every layer, img/s, in float32, bfloat16 and float16, and the ratios to float32.

For each model (torchvision, untrained, ``--size`` px, batches of ``--batch``) and precision, the median time of
:meth:`hudd.explain.lrp.Explainer.relevance` plus the channel sums (the heatmaps as the step writes them) over
``--repeats`` rounds; after one warm-up each, the rounds go round-robin over the precisions, so the load of a shared
machine falls on all of them alike. float16 runs on CUDA only (hudd refuses it on the CPU); bfloat16 on a CUDA device
without it is left out.

Usage: .venv/bin/python scripts/bench_precision.py [--device cpu|cuda] [--models alexnet,resnet50] [--size 224] [--batch 32]
       [--repeats 3] [--threads N]
"""

import argparse
import statistics
import time

import torch
import torchvision

from hudd.core.errors import HuddError
from hudd.core.precision import PRECISIONS, resolve_precision
from hudd.explain.lrp import Explainer


def _heatmaps(explainer: Explainer, images: torch.Tensor) -> None:
    _, relevance = explainer.relevance(images)
    for name, rel in relevance.items():
        explainer.heatmap(name, rel).float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="alexnet,resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}), torch {torch.__version__}, batch {args.batch}, {args.size} px")
    precisions = {}
    for key, dtype in PRECISIONS.items():
        try:
            precisions[key] = resolve_precision(key, device)
        except HuddError as exc:
            print(f"  {key}: left out ({exc})")
    for arch in args.models.split(","):
        torch.manual_seed(0)
        model = torchvision.models.get_model(arch, weights=None, num_classes=8).eval()
        images = torch.randn(args.batch, 3, args.size, args.size, device=device)
        explainers = {key: Explainer(model, device=device, input_shape=(3, args.size, args.size), precision=dtype)
                      for key, dtype in precisions.items()}
        times = {key: [] for key in explainers}
        for explainer in explainers.values():
            _heatmaps(explainer, images)
        for _ in range(args.repeats):
            for key, explainer in explainers.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                _heatmaps(explainer, images)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[key].append(time.perf_counter() - start)
        rates = {key: args.batch / statistics.median(values) for key, values in times.items()}
        line = ",  ".join(f"{key} {rate:7.1f} img/s ({rate / rates['float32']:.2f}x)" for key, rate in rates.items())
        print(f"  {arch}, LRP heatmaps of {len(explainers['float32'].layers)} layers: {line}")


if __name__ == "__main__":
    main()
