"""The float32 logits/softmax of HaloAttention hold whichever way a MindSpore release propagates
``to_float(float16)`` to sub-cells:

* ``to_float``: the installed release's own ``Cell.to_float`` (2.7-2.10: through ``add_flags``);
* ``add_flags``: ``add_flags_recursive(fp16=True)``, what ``to_float`` does in 2.7-2.10;
* ``recursive_setter``: what ``to_float`` does in older releases (2.0 and around): the C++ precision
  mark set cell by cell through ``_set_mixed_precision_type_recursive`` (the real method where the
  release has it, an emulation of it on plain cells where it does not), never calling ``add_flags``.

Observable check: inputs of magnitude ~1000 make the scaled content logits ~1e6, beyond float16's
range (65504). After
each propagation style the layer's output is float16 (so the 1x1 convs did run in float16: the style
took effect), finite and within 5e-3 (relative to max |ref|; measured 3.7e-4 on 2.8.0) of the float64 NumPy reference; the same
layer with an unprotected copy of ``AttentionCore`` (a plain cell) gives inf/NaN under the same
style, so the test can fail. PyNative and Graph mode. ~25 s.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore._c_expression import Cell_, MixedPrecisionType

from mindcv_halonet.layers import halo_attention as ha
from tests.layers.halo_sizes import reference_sizes
from tests.layers.numpy_halo_reference import halo_attention_reference
from tests.layers.test_halo_attention import _full_cfg, build_layer

MODES = {"pynative": ms.PYNATIVE_MODE, "graph": ms.GRAPH_MODE}
CFG = _full_cfg(dict(dim=32, num_heads=2, block_size=4, halo_size=1))
DERIVED = reference_sizes(CFG)
OLD_SETTER = "_set_mixed_precision_type_recursive"


# ------------------------------------------------------------------ what the guarantee relies on
def test_mindspore_still_has_the_names_the_guarantee_relies_on():
    """If this fails, MindSpore renamed or removed a hook of Float32Cell: update Float32Cell."""
    for name in ("add_flags", "add_flags_recursive", "to_float", "cells"):
        assert callable(getattr(nn.Cell, name, None)), f"nn.Cell.{name} is gone"
    assert callable(getattr(Cell_, "set_mixed_precision_type", None)), "Cell_.set_mixed_precision_type is gone"
    for name in ("FP16", "FP32", "NOTSET"):
        assert hasattr(MixedPrecisionType, name), f"MixedPrecisionType.{name} is gone"
    # one of the two known propagation paths must exist on nn.Cell
    assert hasattr(nn.Cell, "_add_mixed_precision_flag") or hasattr(nn.Cell, OLD_SETTER), (
        "nn.Cell has neither _add_mixed_precision_flag (2.7+) nor _set_mixed_precision_type_recursive (older)")


class _Spy(nn.Cell):
    """Records which hook ``to_float`` on an enclosing cell reaches it through."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def add_flags(self, **flags):
        if flags.get("fp16"):
            self.seen.append("add_flags")
        return super().add_flags(**flags)

    def _set_mixed_precision_type_recursive(self, mixed_type):
        self.seen.append(OLD_SETTER)
        parent = getattr(super(), OLD_SETTER, None)
        if parent is not None:
            parent(mixed_type)

    def construct(self, x):
        return x


def test_to_float_reaches_sub_cells_through_a_hook_float32cell_intercepts():
    """If this fails, this release's ``to_float`` reaches sub-cells some third way that Float32Cell does
    not intercept: the float32 softmax would silently not hold under AMP O2/O3."""
    spy = _Spy()
    nn.SequentialCell([spy]).to_float(ms.float16)
    assert set(spy.seen) & {"add_flags", OLD_SETTER}, spy.seen


@pytest.mark.parametrize("flag", ["fp16", "bf16"])
def test_float32cell_turns_low_precision_flags_into_float32(flag):
    cell = ha.AttentionCore(1.0, False)
    cell.add_flags_recursive(**{flag: True})
    assert getattr(cell, "mixed_precision_type", MixedPrecisionType.FP32) == MixedPrecisionType.FP32
    assert not getattr(cell, flag) and cell.fp32


# ------------------------------------------------------------------ the three propagation styles
def _old_style_recursive_setter(cell, mixed_type):
    """Older MindSpore's ``to_float``: ``_set_mixed_precision_type_recursive`` down the tree. Where a
    cell has the method (every cell on such a release; our Float32Cells here) it is called; on a plain
    cell of a release without it, its effect is reproduced: the C++ mark (Graph mode) and the Python
    attribute the 2.x PyNative executor reads."""
    setter = getattr(cell, OLD_SETTER, None)
    if callable(setter):
        setter(mixed_type)
        return
    Cell_.set_mixed_precision_type(cell, mixed_type)
    if "mixed_precision_type" in cell.__dict__:
        cell.mixed_precision_type = mixed_type
    for child in cell.cells():
        _old_style_recursive_setter(child, mixed_type)


STYLES = {
    "to_float": lambda layer: layer.to_float(ms.float16),
    "add_flags": lambda layer: layer.add_flags_recursive(fp16=True),
    "recursive_setter": lambda layer: _old_style_recursive_setter(layer, MixedPrecisionType.FP16),
}


class _NoHooksAttentionCore(ha.AttentionCore):
    """AttentionCore (explicit float32 casts kept) without Float32Cell's interceptions."""

    add_flags = nn.Cell.add_flags
    to_float = nn.Cell.to_float
    _set_mixed_precision_type_recursive = getattr(nn.Cell, OLD_SETTER, None)


class _PlainAttentionCore(_NoHooksAttentionCore):
    """... and without the explicit casts: the naive computation."""

    def construct(self, q, src, rel, k_index, v_index, inverse):
        k_ext, v = self._windows(q, src, rel, k_index, v_index)
        return self.bmm_nt(v, ops.softmax(self.logits(q, k_ext, rel), -1))


@pytest.fixture(params=list(MODES), ids=list(MODES))
def mode(request, set_mode):
    set_mode(MODES[request.param])  # restored by the fixture
    yield request.param


def _large_input():
    return (np.random.default_rng(5).standard_normal((1, 32, 8, 8)) * 1000).astype(np.float32)


@pytest.mark.parametrize("style", list(STYLES))
def test_attention_weights_stay_float32_under_each_propagation_style(style, mode):
    layer, params = build_layer(CFG, seed=7)
    STYLES[style](layer)
    x = _large_input()
    y = layer(Tensor(x))
    assert y.dtype == ms.float16, f"{style}: the 1x1 convs did not run in float16, the style had no effect"
    y = y.asnumpy().astype(np.float64)
    assert np.all(np.isfinite(y)), f"{style}: non-finite output, the softmax ran in float16"
    ref = halo_attention_reference(x, params, CFG, DERIVED)
    assert np.abs(y - ref).max() <= 5e-3 * np.abs(ref).max()  # q, k, v are float16 (measured 3.7e-4)


@pytest.mark.parametrize("style", list(STYLES))
def test_plain_copy_overflows_under_the_same_style(style, mode):
    """Negative control: the style really imposes float16 on a plain cell (so the test above can fail)."""
    layer, _ = build_layer(CFG, seed=7)
    layer.attend = _PlainAttentionCore(layer.scale, layer.scale_pos_embed)
    STYLES[style](layer)
    y = layer(Tensor(_large_input())).asnumpy()
    assert not np.all(np.isfinite(y)), f"{style}: an unprotected softmax stayed finite; the check proves nothing"


@pytest.mark.parametrize("style", list(STYLES))
def test_pynative_explicit_casts_alone_do_not_hold(style, set_mode):
    """Why the hooks matter: in PyNative a cell marked float16 casts the inputs of *every* op to float16,
    so ``q.astype(float32)`` inside the cell does not help; without Float32Cell's interception of the
    style the softmax overflows. (In Graph mode the explicit casts survive; there both protections hold.)"""
    set_mode(ms.PYNATIVE_MODE)
    layer, _ = build_layer(CFG, seed=7)
    layer.attend = _NoHooksAttentionCore(layer.scale, layer.scale_pos_embed)
    STYLES[style](layer)
    y = layer(Tensor(_large_input())).asnumpy()
    assert not np.all(np.isfinite(y)), f"{style}: float16 was not imposed on the un-hooked cell"
