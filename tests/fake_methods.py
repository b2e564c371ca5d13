"""Tiny methods registered by tests to exercise the fuse/eval machinery without real networks."""
from __future__ import annotations

import torch

from fusionbench.registry import MethodInfo, Paper, WeightFile


class MeanFuser:
    tile_halo = 0

    def __init__(self, info, device, fail_on_value=None, scale=1.0):
        self.info, self.device, self.fail_on_value, self.scale = info, device, fail_on_value, scale

    def fuse(self, a, b):
        if self.fail_on_value is not None and bool((a.flatten(1) == self.fail_on_value).all(1).any()):
            raise RuntimeError("synthetic failure")
        a = a.float().mean(1, keepdim=True)
        b = b.float().mean(1, keepdim=True)
        return ((a + b) / 2 * self.scale).round().clamp(0, 255).to(torch.uint8)


class WeightedFuser(MeanFuser):
    def __init__(self, info, device, path):
        from fusionbench.weights import load_into, load_state_dict

        lin = torch.nn.Conv2d(2, 1, 1, bias=False)
        load_into(lin, load_state_dict(path), path)
        super().__init__(info, device, scale=float(lin.weight.sum()))


def build_mean(weights, device, task, **opts):
    return MeanFuser(MEAN, device, **opts)


def build_weighted(weights, device, task, **opts):
    return WeightedFuser(WEIGHTED, device, next(iter(weights.values())))


MEAN = MethodInfo("fake-mean", "FakeMean", Paper("t", "v", 2000), "classical", ("ivif",), "a, b", "grey",
                  factory="fake_methods:build_mean")
WEIGHTED = MethodInfo("fake-weighted", "FakeWeighted", Paper("t", "v", 2000), "cnn", ("ivif",), "a, b", "grey",
                      weights=(WeightFile("fake.pt", "0" * 64, url=""),), factory="fake_methods:build_weighted")
