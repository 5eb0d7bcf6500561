"""Benchmark LRP: hudd.explain.lrp (relevance at every layer) vs a plain forward+backward and vs zennit (input only).

On the same batch and device, for each model, prints the median time of:
  - forward + backward: the model's forward and the gradient of the explained logit w.r.t. the
    input (the baseline: what any gradient-based attribution costs);
  - hudd.lrp, all layers: relevance at the input of every conv/linear layer, one pass;
  - zennit, input only: zennit 0.5 with the same rules, relevance at the pixels only;
then images per second for each and the ratios hudd/baseline and zennit/hudd.

Usage: .venv/bin/python scripts/bench_lrp.py [--device cpu|cuda] [--repeats 3] [--models alexnet,alexnet-small]
(zennit comes with the test extra: scripts/setup-venv test)
"""

import argparse
import statistics
import time

import torch

from hudd.explain.lrp import Explainer
from hudd.models import get_model

CASES = {
    "alexnet": (lambda: get_model("alexnet", in_channels=3, num_classes=10), (32, 3, 224, 224)),
    "alexnet-small": (lambda: get_model("alexnet-small", in_channels=1, num_classes=8, image_size=64), (256, 1, 64, 64)),
}


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _zennit(model, images, target):
    import torch.nn as nn
    from zennit import rules as zr
    from zennit import types as zt
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite

    composite = LayerMapComposite([(zt.Convolution, zr.Epsilon(1e-9)), (zt.AvgPool, zr.Norm(1e-9)), (nn.Linear, zr.ZPlus(1e-6, zero_params="bias"))])
    attributor = Gradient(model, composite)

    def run():
        with attributor:
            out, rel = attributor(images, lambda out: torch.nn.functional.one_hot(target, out.shape[1]).to(out) * out.detach())
        return rel

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="alexnet,alexnet-small")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.models.split(","):
        build, shape = CASES[name]
        torch.manual_seed(0)
        model = build().eval().to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        images = torch.randn(shape, device=device)
        with torch.no_grad():
            target = model(images).argmax(1)

        def forward_backward():
            x = images.clone().requires_grad_(True)
            out = model(x)
            return torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)[0]

        explainer = Explainer(model, composite="hudd", device=device)
        t_base = _time(forward_backward, device, args.repeats)
        t_hudd = _time(lambda: explainer.relevance(images), device, args.repeats)
        try:
            t_zennit = _time(_zennit(model, images, target), device, args.repeats)
        except ImportError:
            t_zennit = float("nan")
        n = shape[0]
        print(f"{name} {'x'.join(map(str, shape[1:]))}, batch {n}, {len(explainer.layers)} layers:")
        print(f"  forward+backward (baseline)  {t_base:8.3f} s  {n / t_base:9.1f} img/s")
        print(f"  hudd.lrp, all layers         {t_hudd:8.3f} s  {n / t_hudd:9.1f} img/s")
        print(f"  zennit, input only           {t_zennit:8.3f} s  {n / t_zennit:9.1f} img/s")
        print(f"  ratio hudd.lrp / baseline    {t_hudd / t_base:8.2f}x   (target <= 1.5x)")
        print(f"  ratio zennit / hudd.lrp      {t_zennit / t_hudd:8.2f}x   (target > 1x)")


if __name__ == "__main__":
    main()
