"""Benchmark LRP: hudd.explain.lrp (relevance at every layer) vs a plain forward+backward and vs zennit (pixels only).

On the same batch and device, for each model and rule set, prints the median time of:
  - forward + backward: the user's model, forward and the gradient of the explained logit w.r.t. the
    input (the baseline: what any gradient-based attribution costs);
  - hudd.lrp, all layers: relevance at the input of every conv/linear layer, one pass;
  - zennit, pixels only: zennit with the same rules (and its canonizers where it has them: ResNetCanonizer
    for ResNets, SequentialMergeBatchNorm otherwise), relevance at the pixels only;
(after one warm-up each, the repeats go round-robin over the candidates, so the load of a shared machine
falls on all of them alike), then images per second for each and the ratios hudd/baseline and
zennit/hudd, with the targets:
default rules (``hudd``) all-layer LRP <= 1.5x forward+backward; with ``epsilon-plus-flat``, hudd's
all-layer pass faster than zennit's pixels-only pass. Targets are printed, not asserted.

Usage: .venv/bin/python scripts/bench_lrp.py [--device cpu|cuda] [--repeats 3] [--threads N]
       [--models resnet18,resnet50,mobilenet_v3_large] [--rules hudd,epsilon-plus-flat] [--batch 16] [--size 224]
(zennit comes with the test extra: scripts/setup-venv test)
"""

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torchvision.models as tvm

from hudd.explain.lrp import Explainer
from hudd.models import get_model

CASES = {
    "resnet18": lambda size: tvm.resnet18(weights=None),
    "resnet50": lambda size: tvm.resnet50(weights=None),
    "mobilenet_v3_large": lambda size: tvm.mobilenet_v3_large(weights=None),
    "alexnet": lambda size: get_model("alexnet", in_channels=3, num_classes=10),
    "alexnet-small": lambda size: get_model("alexnet-small", in_channels=3, num_classes=8, image_size=size),
}
TARGETS = {"hudd": "hudd.lrp / baseline <= 1.5x", "epsilon-plus-flat": "zennit / hudd.lrp > 1x"}


def _times(runs: dict, device: torch.device, repeats: int) -> dict:
    """Median seconds of each ``runs`` callable; after one warm-up each, the repeats go round-robin, so a shared
    machine's load falls on every candidate alike."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _zennit(model: nn.Module, name: str, rules: str, images: torch.Tensor, target: torch.Tensor):
    from zennit import rules as zr
    from zennit import types as zt
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat, LayerMapComposite, layer_map_base
    from zennit.torchvision import ResNetCanonizer

    canonizers = [ResNetCanonizer() if name.startswith("resnet") else SequentialMergeBatchNorm()]
    if rules == "hudd":
        composite = LayerMapComposite(layer_map_base(1e-9) + [(zt.Convolution, zr.Epsilon(1e-9)), (nn.Linear, zr.ZPlus(1e-6, zero_params="bias"))],
                                      canonizers=canonizers)
    else:
        composite = EpsilonPlusFlat(epsilon=1e-6, stabilizer=1e-6, canonizers=canonizers)
    attributor = Gradient(model, composite)

    def run():
        with attributor:
            _, rel = attributor(images, lambda out: torch.nn.functional.one_hot(target, out.shape[1]).to(out) * out.detach())
        return rel

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v3_large")
    parser.add_argument("--rules", default="hudd,epsilon-plus-flat")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, {args.size} px")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = CASES[name](args.size).eval().to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        images = torch.randn(args.batch, 3, args.size, args.size, device=device)
        with torch.no_grad():
            target = model(images).argmax(1)

        def forward_backward():
            x = images.clone().requires_grad_(True)
            out = model(x)
            return torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)[0]

        runs, layers = {"baseline": forward_backward}, {}
        for rules in args.rules.split(","):
            explainer = Explainer(model, composite=rules, device=device, input_shape=(3, args.size, args.size))
            runs[f"hudd {rules}"] = lambda explainer=explainer: explainer.relevance(images)
            layers[rules] = len(explainer.layers)
            try:
                runs[f"zennit {rules}"] = _zennit(model, name, rules, images, target)
            except ImportError:
                pass
        t = _times(runs, device, args.repeats)
        n = args.batch
        print(f"{name}: forward+backward (baseline) {t['baseline']:8.3f} s  {n / t['baseline']:7.1f} img/s")
        for rules in args.rules.split(","):
            t_hudd, t_zennit = t[f"hudd {rules}"], t.get(f"zennit {rules}", float("nan"))
            print(f"  {rules}: hudd.lrp, {layers[rules]} layers {t_hudd:8.3f} s  {n / t_hudd:7.1f} img/s;"
                  f"  zennit, pixels only {t_zennit:8.3f} s  {n / t_zennit:7.1f} img/s")
            print(f"  {rules}: hudd.lrp / baseline {t_hudd / t['baseline']:5.2f}x,  zennit / hudd.lrp {t_zennit / t_hudd:5.2f}x"
                  f"   (target: {TARGETS.get(rules, '-')})")


if __name__ == "__main__":
    main()
