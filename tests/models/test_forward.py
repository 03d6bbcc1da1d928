"""Every variant runs forward (batch 1, eval) at 224x224 and 256x256 in PyNative and in Graph mode, and
the compiled Graph-mode logits equal the PyNative ones.

The networks are built with ``zero_init_last=False`` so that every residual branch (attention
included) contributes to the logits; a variant whose branches start at zero would compare only its
shortcuts. Tolerance, float32 CPU: max |graph - pynative| <= 1e-5 * max |pynative| per size (measured
on this machine, mindspore 2.8.0: see the printed values; 0 where both modes run the same kernels).
A negative control runs the same comparison on halonet_26t with its logits scaled by 1 + 1e-4 in Graph
mode only, and checks that it measures that difference.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn
from mindspore.ops import constexpr

from mindcv_halonet.models import halonet

VARIANTS = sorted(halonet.model_specs)
GRAPH_REL_TOL = 1e-5


def graph_vs_pynative(net, name, set_mode):
    """``{size: max |graph - pynative| / max |pynative|}`` of ``net``'s logits at 224 and 256 px, batch 1, after
    checking shapes, finiteness and that the logits are not constant."""
    rng = np.random.default_rng(0)
    inputs = {size: rng.standard_normal((1, 3, size, size)).astype(np.float32) for size in (224, 256)}
    out = {}
    for mode in (ms.PYNATIVE_MODE, ms.GRAPH_MODE):
        set_mode(mode)  # the previous mode is restored by the fixture
        for size, x in inputs.items():
            y = net(Tensor(x)).asnumpy()
            assert y.shape == (1, 10), (name, mode, size)
            assert np.isfinite(y).all(), (name, mode, size)
            out[mode, size] = y
    rel = {}
    for size in inputs:
        eager, graph = out[ms.PYNATIVE_MODE, size].astype(np.float64), out[ms.GRAPH_MODE, size].astype(np.float64)
        scale = np.abs(eager).max()
        assert scale > 1e-6, f"{name}: logits too small to compare ({scale:.2e})"
        assert np.ptp(eager) > 1e-3 * scale  # not a constant vector
        rel[size] = np.abs(graph - eager).max() / scale
        print(f"{name} {size}px: max |graph - pynative| / max |pynative| = {rel[size]:.2e} (max |logit| {scale:.3g})")
    return rel


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_224_and_256_graph_equals_pynative(name, set_mode):
    net = getattr(halonet, name)(num_classes=10, zero_init_last=False)
    net.set_train(False)
    for size, rel in graph_vs_pynative(net, name, set_mode).items():
        assert rel <= GRAPH_REL_TOL, f"{name} {size}px: Graph vs PyNative {rel:.2e} > {GRAPH_REL_TOL}"


@constexpr
def _graph_mode() -> bool:
    return ms.get_context("mode") == ms.GRAPH_MODE


class _GraphOnlyScale(nn.Cell):
    """Negative control: the network's logits times (1 + 1e-4) in Graph mode only."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        y = self.net(x)
        if _graph_mode():
            y = y * 1.0001
        return y


def test_the_comparison_catches_a_graph_only_difference_of_1e_4(set_mode):
    net = halonet.halonet_26t(num_classes=10, zero_init_last=False)
    net.set_train(False)
    rel = graph_vs_pynative(_GraphOnlyScale(net), "halonet_26t x (1 + 1e-4) in Graph mode", set_mode)
    for size, value in rel.items():  # 1e-4 of the largest logit, ten times the tolerance
        assert 0.5e-4 < value < 2e-4, (size, value)
        assert value > GRAPH_REL_TOL
