"""Bad inputs to HaloAttention get a clear error naming the layer, the input and what it accepts, in
PyNative (at call time) and in Graph mode (at compile time, before anything runs). ~10 s."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mindcv_halonet.layers import HaloAttention
from mindcv_halonet.layers import checks
from tests.layers.halo_sizes import reference_sizes
from tests.layers.numpy_halo_reference import halo_attention_reference

MODES = {"pynative": ms.PYNATIVE_MODE, "graph": ms.GRAPH_MODE}
LAYER_NAME = "HaloAttention(dim=16, dim_out=32, stride=2, num_heads=2, block_size=4, halo_size=1)"


@pytest.fixture(params=list(MODES), ids=list(MODES))
def mode(request, set_mode):
    set_mode(MODES[request.param])  # restored by the fixture
    yield request.param


LAYER_ARGS = dict(dim=16, dim_out=32, stride=2, num_heads=2, block_size=4, halo_size=1)
AVG_POOL_ARGS = dict(dim=16, stride=2, num_heads=2, block_size=3, halo_size=1)  # odd block: avg-pool mode


def make_layer():
    return HaloAttention(**LAYER_ARGS)


def test_layer_repr_names_its_configuration():
    layer = make_layer()
    assert layer.description == LAYER_NAME
    assert "dim=16, dim_out=32, stride=2, num_heads=2, block_size=4, halo_size=1" in repr(layer)


@pytest.mark.parametrize(
    "shape, dtype, error, needles",
    [
        ((16, 8, 8), np.float32, ValueError, ["shape (16, 8, 8)", "rank 3", "4-D (B, C, H, W)", "dim=16"]),
        ((1, 1, 16, 8, 8), np.float32, ValueError, ["rank 5", "4-D (B, C, H, W)"]),
        ((2, 8, 8, 8), np.float32, ValueError, ["input has 8 channels", "expected dim=16", "(B, 16, H, W)"]),
        ((2, 8, 8, 16), np.float32, ValueError, ["input has 8 channels", "expected dim=16"]),  # NHWC by mistake
        ((2, 16, 8, 8), np.int32, TypeError, ["dtype Int32", "float32, float16 or bfloat16"]),
        ((2, 16, 8, 8), np.float64, TypeError, ["dtype Float64", "float32, float16 or bfloat16"]),
        ((2, 16, 8, 8), np.bool_, TypeError, ["dtype Bool"]),
    ],
    ids=["rank3", "rank5", "channels", "nhwc", "int32", "float64", "bool"],
)
def test_bad_input_raises_naming_layer_and_expectation(mode, shape, dtype, error, needles):
    layer = make_layer()
    with pytest.raises(error) as info:
        layer(Tensor(np.zeros(shape, dtype)))
    msg = str(info.value)
    assert LAYER_NAME in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("shape", [(1, 16, 1, 5), (1, 16, 6, 1)])
def test_too_small_for_the_average_pool(mode, shape):
    layer = HaloAttention(**AVG_POOL_ARGS)
    with pytest.raises(ValueError) as info:
        layer(Tensor(np.zeros(shape, np.float32)))
    msg = str(info.value)
    assert f"input is {shape[2]}x{shape[3]}" in msg and "expected H and W >= 2" in msg and "average pool" in msg
    x = np.random.default_rng(1).standard_normal((1, 16, 2, 2)).astype(np.float32)  # the smallest valid size
    assert layer(Tensor(x)).shape == (1, 16, 1, 1)
    _assert_matches_reference(layer, AVG_POOL_ARGS, x)


def _assert_matches_reference(layer, args, x):
    """The layer's output on x equals the float64 NumPy reference (sizes derived test-side)."""
    cfg = dict(dim_out=None, dim_head=None, qk_ratio=1.0, avg_down=False, scale_pos_embed=False, qkv_bias=False)
    cfg.update(args)
    params = {p.name: p.asnumpy() for p in layer.get_parameters()}
    ref = halo_attention_reference(x, params, cfg, reference_sizes(cfg))
    y = layer(Tensor(x)).asnumpy()
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_good_input_still_runs(mode):
    x = np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32)
    layer = make_layer()
    assert layer(Tensor(x)).shape == (2, 32, 4, 4)
    _assert_matches_reference(layer, LAYER_ARGS, x)


def test_graph_mode_checks_once_at_compile_time(monkeypatch, set_mode):
    """In Graph mode the check runs while compiling only: calling the compiled layer again does not run
    it (the compiled graph carries no trace of it). In PyNative it runs on every call."""
    calls = []
    original = checks.image_input_error

    def counting(*args):
        calls.append(args[0])
        return original(*args)

    monkeypatch.setattr(checks, "image_input_error", counting)
    x = Tensor(np.ones((1, 16, 8, 8), np.float32))
    set_mode(ms.GRAPH_MODE)
    layer = make_layer()
    for _ in range(3):
        layer(x)
    graph_calls = len(calls)
    set_mode(ms.PYNATIVE_MODE)
    calls.clear()
    layer = make_layer()
    for _ in range(3):
        layer(x)
    assert graph_calls == 1
    assert len(calls) == 3


def test_error_helper_accepts_dynamic_axes():
    # -1 marks an axis only known at run time (dynamic shape): not an error at compile time
    assert checks.image_input_error((-1, 16, -1, -1), ms.float32, "x", 16, "dim") is None
    assert checks.image_input_error((2, 16, 8, 8), ms.float16, "x", 16, "dim") is None
    assert checks.image_input_error((2, 16, 8, 8), ms.bfloat16, "x", 16, "dim") is None
    assert "empty axis" in str(checks.image_input_error((0, 16, 8, 8), ms.float32, "x", 16, "dim"))
