"""The stem's portable training max-pool (lowest-value padding + VALID ops.MaxPool, used on every backend
but CPU) against the CPU-tuned padded nn.MaxPool2d it replaces there (issue 14)."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mindcv_halonet.models.blocks import StemMaxPool
from tests.conftest import parse_result, run_python

pytestmark = pytest.mark.usefixtures("pynative")  # tests/models/conftest.py

SHAPES = [(2, 3, 9, 9), (2, 4, 10, 7), (1, 2, 8, 8), (2, 3, 1, 5), (1, 1, 2, 2)]


def _input(kind, shape, dtype, rng):
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "ties":  # many equal maxima in a window: which element gets the gradient matters
        x = rng.integers(0, 3, shape).astype(np.float64)
    else:  # "relu": what the stem pool really sees, zeros tie
        x = np.maximum(rng.standard_normal(shape), 0)
    return x.astype(dtype)


def _out_shape(shape):
    return shape[0], shape[1], (shape[2] - 1) // 2 + 1, (shape[3] - 1) // 2 + 1


def _forward_backward(pool, x, dy):
    pool.set_train(True)
    y = pool(Tensor(x)).asnumpy()
    dx = ms.grad(lambda t: (pool(t) * Tensor(dy)).sum())(Tensor(x)).asnumpy()
    return y, dx


def test_default_path_follows_the_device():
    assert ms.get_context("device_target") == "CPU"
    assert StemMaxPool().portable is False
    assert StemMaxPool(portable=True).portable is True
    assert "MaxPool2d" in type(StemMaxPool(portable=False).pool).__name__
    assert type(StemMaxPool(portable=True).pool).__name__ == "MaxPool"


@pytest.mark.parametrize("kind", ["normal", "ties", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_portable_path_equals_cpu_path_exactly_float32(shape, kind):
    rng = np.random.default_rng(sum(shape))
    x = _input(kind, shape, np.float32, rng)
    dy = rng.standard_normal(_out_shape(shape)).astype(np.float32)
    y_cpu, dx_cpu = _forward_backward(StemMaxPool(portable=False), x, dy)
    y_new, dx_new = _forward_backward(StemMaxPool(portable=True), x, dy)
    np.testing.assert_array_equal(y_new, y_cpu)
    np.testing.assert_array_equal(dx_new, dx_cpu)


def _reference_gradient(x, dy):
    """float64 gradient of the -inf-padded 3x3/2 max-pool: each window's dy goes to its first maximum
    (row-major), summed exactly."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    grad = np.zeros_like(xp)
    for n, c, i, j in np.ndindex(*dy.shape):
        r, q = divmod(int(np.argmax(xp[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3])), 3)
        grad[n, c, 2 * i + r, 2 * j + q] += float(dy[n, c, i, j])
    return grad[:, :, 1:-1, 1:-1]


@pytest.mark.parametrize("kind", ["normal", "ties", "relu"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_portable_path_float16(shape, kind):
    """float16 (amp O3): forward exactly equal to the CPU path; the gradient goes to the same elements and
    is the exact sum rounded once to float16. (The CPU path's float16 gradient is not always: where up to
    four overlapping windows add into one element it rounds intermediate sums -- measured 1-2 float16 ulps
    off the exact sum at (2, 3, 9, 9) -- so there the portable path is the more accurate of the two.)"""
    rng = np.random.default_rng(sum(shape) + 1)
    x = _input(kind, shape, np.float16, rng)
    dy = rng.standard_normal(_out_shape(shape)).astype(np.float16)
    y_cpu, dx_cpu = _forward_backward(StemMaxPool(portable=False), x, dy)
    y_new, dx_new = _forward_backward(StemMaxPool(portable=True), x, dy)
    np.testing.assert_array_equal(y_new, y_cpu)
    np.testing.assert_array_equal(dx_new, _reference_gradient(x, dy).astype(np.float16))
    np.testing.assert_array_equal(dx_new != 0, dx_cpu != 0)


@pytest.mark.parametrize("shape", SHAPES[:3], ids=str)
def test_float32_paths_route_ties_to_the_first_maximum(shape):
    """Both float32 paths against the float64 reference (which is what makes the tie rule explicit)."""
    rng = np.random.default_rng(7)
    x = _input("ties", shape, np.float32, rng)
    dy = rng.standard_normal(_out_shape(shape)).astype(np.float32)
    ref = _reference_gradient(x, dy)
    for portable in (True, False):
        _, dx = _forward_backward(StemMaxPool(portable=portable), x, dy)
        np.testing.assert_allclose(dx, ref, rtol=1e-6, atol=1e-6)


def test_portable_path_graph_train_loop_matches_cpu_path(tmp_path):
    """halonet_26t, Graph mode (jit_level O2, as MindCV's train.py), 12 train steps in a child process with
    a timeout (ops.pad's backward hangs after 5-6 such steps; this path must not), the portable stem pool
    against the CPU one from the same weights: the same losses (the pool is exact in float32)."""
    code = """
        import json
        import numpy as np
        import mindspore as ms
        from mindspore import Tensor, nn
        from mindcv_halonet.models import halonet
        from mindcv_halonet.models.blocks import StemMaxPool
        ms.set_context(mode=ms.GRAPH_MODE, jit_config={"jit_level": "O2"})

        def losses(portable):
            ms.set_seed(0)
            net = halonet.halonet_26t(num_classes=4)
            net.stem.pool = StemMaxPool(portable=portable)
            loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
            step = nn.TrainOneStepCell(loss, nn.Momentum(net.trainable_params(), 0.01, 0.9))
            rng = np.random.default_rng(1)
            out = []
            for _ in range(12):
                x = Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
                y = Tensor(rng.integers(0, 4, 2).astype(np.int32))
                out.append(float(step(x, y).asnumpy()))
            return out

        print("@@RESULT@@" + json.dumps({"portable": losses(True), "cpu": losses(False)}))
    """
    proc = run_python(code, cwd=tmp_path, timeout=420)
    res = parse_result(proc.stdout)
    assert len(res["portable"]) == 12 and np.all(np.isfinite(res["portable"]))
    np.testing.assert_allclose(res["portable"], res["cpu"], rtol=1e-5, atol=0)
    assert res["portable"][-1] != res["portable"][0]  # it trained
