"""The plugin's SiLU (lean backward) against float64 NumPy: the function, and its gradient by central
differences (independent of the derivative formula the bprop uses), in both modes."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindcv_halonet.layers import SiLU


class _Grad(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.grad = ops.GradOperation(sens_param=True)

    def construct(self, x, dout):
        return self.grad(self.net)(x, dout)


def _silu64(x):
    x = x.astype(np.float64)
    return x / (1.0 + np.exp(-x))


def _reference(x, dout, h=1e-5):
    """float64 y and dout * dy/dx, the derivative by central differences (error ~h^2)."""
    x64 = x.astype(np.float64)
    slope = (_silu64(x64 + h) - _silu64(x64 - h)) / (2 * h)
    return _silu64(x64), dout.astype(np.float64) * slope


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def test_silu_forward_and_gradient_match_float64(mode, set_mode):
    set_mode(mode)
    rng = np.random.default_rng(0)
    # large |x| too: sigmoid saturates at both ends, where a careless formula loses the gradient
    x = np.concatenate([rng.standard_normal(200) * 4, [-30.0, -10.0, 0.0, 10.0, 30.0]]).astype(np.float32).reshape(5, 41)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    net = SiLU()
    y = net(Tensor(x)).asnumpy()
    dx = _Grad(net)(Tensor(x), Tensor(dout)).asnumpy()
    ref_y, ref_dx = _reference(x, dout)
    np.testing.assert_allclose(y, ref_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-6)


def test_silu_keeps_the_input_dtype(set_mode):
    set_mode(ms.PYNATIVE_MODE)
    x = Tensor(np.linspace(-3, 3, 12).reshape(3, 4), ms.float16)
    assert SiLU()(x).dtype == ms.float16
