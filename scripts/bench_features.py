"""Benchmark the pretrained backbone's feature extraction (the default method's cost in cluster and assign).

In one run, on the same random 64 x 64 grayscale batches, resized to 128 px as hudd does: hudd's
extractor (:func:`hudd.explain.features.pretrained_extractor`: channels-last, the forward pass stopped at
the feature layer) against the same network in the default layout run to its end, taking the
pooled input of the feature layer with a hook. Rounds alternate, so the machine's noise hits both;
the features are checked to agree.

Usage: .venv/bin/python scripts/bench_features.py [--images 1024] [--batch 64] [--rounds 3] [--device cpu]
"""

import argparse
import copy
import time

import torch

from hudd.explain.features import extract_features, pretrained_extractor


class _Batches(torch.utils.data.Dataset):
    """Random images as an ImageDataset yields them (image, target, index), already prepared."""

    def __init__(self, n: int):
        self.images = torch.rand(n, 1, 64, 64, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], 0, index


def _baseline(extractor, data: _Batches, batch: int, device: torch.device) -> torch.Tensor:
    """The default memory layout, the whole network run for every batch, the feature layer's input pooled."""
    module = copy.deepcopy(extractor.module).to(device=device, memory_format=torch.contiguous_format)
    captured = []
    handle = module.get_submodule(extractor.layer).register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), batch):
            images = extractor.prepare_batch(data.images[start:start + batch].to(device)).contiguous()
            module(images)
            out.append(captured.pop().mean(dim=(2, 3)).cpu())
    handle.remove()
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    extractor = pretrained_extractor()
    extractor.prepare_dataset = lambda dataset: dataset  # the random images are already in [0, 1]
    data = _Batches(args.images)
    times = {"baseline": [], "hudd": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        reference = _baseline(extractor, data, args.batch, device)
        times["baseline"].append(time.perf_counter() - start)
        start = time.perf_counter()
        features = extract_features(extractor, data, batch_size=args.batch, device=device)
        times["hudd"].append(time.perf_counter() - start)
    gap = (torch.from_numpy(features) - reference).abs().max().item()
    best = {name: min(values) for name, values in times.items()}
    print(f"{args.images} images, batch {args.batch}, {args.device}, {torch.get_num_threads()} threads; best of {args.rounds} rounds")
    print(f"  whole network, default layout   {best['baseline']:7.2f} s")
    print(f"  hudd (channels-last, stops)     {best['hudd']:7.2f} s   features agree to {gap:.1e}")
    print(f"  ratio                           {best['baseline'] / best['hudd']:7.2f}x")


if __name__ == "__main__":
    main()
