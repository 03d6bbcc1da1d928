"""RowGather: forward is ops.gather; its gather-based backward equals the scatter-add autodiff gives."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindcv_halonet.layers.halo_attention import _window_index_array
from mindcv_halonet.layers.row_gather import RowGather, inverse_table


def _unblock_index_array(height, width, nw, bq):
    """An index that is a permutation with a crop: for each pixel (y, x) of a height x width map, row-major,
    its row in the (nh*nw*bq*bq) blocked order of bq x bq blocks (the test's input, not a reference)."""
    ys = np.arange(height)[:, None]
    xs = np.arange(width)[None, :]
    return ((((ys // bq) * nw + xs // bq) * bq + ys % bq) * bq + xs % bq).reshape(-1).astype(np.int32)


def _scatter_add_reference(index, dout, rows):
    """float64 dsrc of src[:, index] for the given dout (G, M, C): np.add.at, the textbook scatter-add."""
    g, _, c = dout.shape
    ref = np.zeros((g, rows, c))
    for gi in range(g):
        np.add.at(ref[gi], index, dout[gi].astype(np.float64))
    return ref


@pytest.mark.parametrize("seed", range(5))
def test_inverse_table_reproduces_the_scatter_add(seed):
    rng = np.random.default_rng(seed)
    rows, m = int(rng.integers(1, 40)), int(rng.integers(1, 120))
    index = rng.integers(0, rows, m).astype(np.int32)
    inverse = inverse_table(index, rows).asnumpy()
    assert inverse.shape == (max(1, np.bincount(index, minlength=rows).max()), rows)
    dout = rng.standard_normal((2, m, 3))
    padded = np.concatenate([dout, np.zeros((2, 1, 3))], 1)
    np.testing.assert_allclose(padded[:, inverse].sum(1), _scatter_add_reference(index, dout, rows), atol=1e-12)


def test_constant_row_gets_no_gradient_and_does_not_set_k():
    # HaloAttention's windows on a 10x6 map: many positions read the zero row (index 60)
    index = _window_index_array(10, 6, 2, 1, 8, 14, 3)
    inverse = inverse_table(index, 61, constant_row=60).asnumpy()
    assert inverse.shape[0] <= 4  # each real pixel is in at most 2x2 overlapping windows
    assert (inverse[:, 60] == index.size).all()  # the constant row only ever reads dout's zero row
    dout = np.random.default_rng(0).standard_normal((1, index.size, 2))
    padded = np.concatenate([dout, np.zeros((1, 1, 2))], 1)
    ref = _scatter_add_reference(index, dout, 61)
    np.testing.assert_allclose(padded[:, inverse].sum(1)[:, :60], ref[:, :60], atol=1e-12)


def test_inverse_table_rejects_an_index_out_of_range():
    with pytest.raises(ValueError, match=r"index entries must lie in \[0, 5\); got \[0, 5\]"):
        inverse_table(np.array([0, 5], np.int32), 5)


class _GradOf(nn.Cell):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.grad = ops.GradOperation(sens_param=True)

    def construct(self, src, dout):
        return self.grad(self.fn)(src, dout)


class _WithRowGather(nn.Cell):
    def __init__(self, index, rows):
        super().__init__()
        self.gather = RowGather()
        self.index, self.inverse = Tensor(index), inverse_table(index, rows)

    def construct(self, src):
        return self.gather(src, self.index, self.inverse)


class _WithOpsGather(nn.Cell):
    def __init__(self, index):
        super().__init__()
        self.index = Tensor(index)

    def construct(self, src):
        return ops.gather(src, self.index, 1)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
@pytest.mark.parametrize("table", ["windows", "unblock"])
def test_row_gather_matches_ops_gather_forward_and_backward(mode, table, set_mode):
    set_mode(mode)
    if table == "windows":  # overlapping halo windows on a 20x12 map (K > 1), src with the zero row
        index, rows = _window_index_array(20, 12, 3, 2, 8, 14, 3), 20 * 12 + 1
    else:  # blocks back to pixels, a 20x12 map in 3x2 blocks of 8x8 (a permutation with a crop)
        index, rows = _unblock_index_array(20, 12, 2, 8), 3 * 2 * 64
    rng = np.random.default_rng(1)
    src = rng.standard_normal((3, rows, 5)).astype(np.float32)
    dout = rng.standard_normal((3, index.size, 5)).astype(np.float32)
    ours, theirs = _WithRowGather(index, rows), _WithOpsGather(index)
    np.testing.assert_array_equal(ours(Tensor(src)).asnumpy(), theirs(Tensor(src)).asnumpy())
    d_ours = _GradOf(ours)(Tensor(src), Tensor(dout)).asnumpy()
    d_ref = _scatter_add_reference(index, dout, rows)
    np.testing.assert_allclose(d_ours, d_ref, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(d_ours, _GradOf(theirs)(Tensor(src), Tensor(dout)).asnumpy(), rtol=1e-6, atol=1e-5)


class _WithPermutation(nn.Cell):
    def __init__(self, index):
        super().__init__()
        self.gather = RowGather(permutation=True)
        self.index, self.inverse = Tensor(index), inverse_table(index, index.size)

    def construct(self, src):
        return self.gather(src, self.index, self.inverse)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
@pytest.mark.parametrize("table", ["unblock", "query"])
def test_permutation_row_gather_backward_reads_dout_unpadded(mode, table, set_mode):
    """``RowGather(permutation=True)`` (HaloAttention's blocks back to the map, and its query blocks when
    they tile the map): the same forward, and the backward is the scatter-add reference."""
    from mindcv_halonet.layers.halo_attention import _unblock_chunk_array, _window_element_array

    set_mode(mode)
    if table == "unblock":  # 5 channels of a 3x2-block map, bq 4: rows of 4 pixels
        index = _unblock_chunk_array(3, 2, 4, 5)
    else:  # 5 channels of a 12x8 q map in 3x2 blocks of 4x4, element level
        index = _window_element_array(12, 8, 3, 2, 4, 4, 0, 5, 0, 5)
    assert np.array_equal(np.sort(index), np.arange(index.size))  # a permutation
    rng = np.random.default_rng(3)
    src = rng.standard_normal((2, index.size, 3)).astype(np.float32)
    dout = rng.standard_normal((2, index.size, 3)).astype(np.float32)
    ours = _WithPermutation(index)
    np.testing.assert_array_equal(ours(Tensor(src)).asnumpy(), src[:, index])
    np.testing.assert_allclose(_GradOf(ours)(Tensor(src), Tensor(dout)).asnumpy(),
                               _scatter_add_reference(index, dout, index.size), rtol=1e-6, atol=1e-6)


def test_query_table_without_zero_element_refuses_windows_outside_the_map():
    from mindcv_halonet.layers.halo_attention import _window_element_tables

    _window_element_tables(12, 8, 3, 2, 4, 4, 0, 5, 0, 5, False)  # the blocks tile the map
    with pytest.raises(ValueError, match="outside the map"):
        _window_element_tables(11, 8, 3, 2, 4, 4, 0, 5, 0, 5, False)  # the last block row reaches row 11


@pytest.mark.parametrize("height, width, step, size, offset", [(20, 12, 8, 14, 3), (7, 13, 4, 8, 2), (9, 9, 4, 4, 0)])
def test_window_elements_cut_the_windows_of_a_channels_first_map(height, width, step, size, offset):
    """The element table reads, from a flat (C*H*W + 1) map with a last zero element, exactly the
    windows of the zero-padded map, as rows (window, position, channel), for a channel range."""
    from mindcv_halonet.layers.halo_attention import _window_element_array

    total, first, channels = 5, 2, 3
    nh, nw = -(-height // step), -(-width // step)
    x = np.random.default_rng(2).standard_normal((total, height, width))
    flat = np.concatenate([x.reshape(-1), [0.0]])
    got = flat[_window_element_array(height, width, nh, nw, step, size, offset, channels, first, total)]
    pad = np.zeros((total, nh * step + 2 * size, nw * step + 2 * size))
    pad[:, offset:offset + height, offset:offset + width] = x
    want = np.stack([pad[first:first + channels, r * step:r * step + size, c * step:c * step + size]
                     for r in range(nh) for c in range(nw)])  # (nb, channels, size, size)
    np.testing.assert_array_equal(got.reshape(nh * nw, size * size, channels), want.reshape(nh * nw, channels, -1)
                                  .transpose(0, 2, 1))


@pytest.mark.parametrize("height, width, step, size, offset", [(20, 12, 8, 14, 3), (7, 13, 4, 8, 2), (16, 16, 8, 12, 2)])
def test_window_chunks_cut_channels_first_windows_of_the_column_padded_map(height, width, step, size, offset):
    """The chunk table reads, from the map with ``offset`` zero columns on the left (and a right pad), flat
    in chunks of gcd(step, size) pixels plus a last zero chunk, the windows of the zero-padded map,
    channels first (window, channel, y, x), for a channel range."""
    import math

    from mindcv_halonet.layers.halo_attention import _padded_width, _window_chunk_array

    total, first, channels = 5, 1, 3
    chunk = math.gcd(step, size)
    nh, nw = -(-height // step), -(-width // step)
    wp = _padded_width(width, nw, step, size, offset, chunk)
    assert wp % chunk == 0 and wp >= offset + width
    x = np.random.default_rng(2).standard_normal((total, height, width))
    padded_cols = np.zeros((total, height, wp))
    padded_cols[:, :, offset:offset + width] = x
    src = np.concatenate([padded_cols.reshape(-1, chunk), np.zeros((1, chunk))])
    got = src[_window_chunk_array(height, width, nh, nw, step, size, offset, channels, first, total, chunk)]
    pad = np.zeros((total, nh * step + 2 * size, nw * step + 2 * size))
    pad[:, offset:offset + height, offset:offset + width] = x
    want = np.stack([pad[first:first + channels, r * step:r * step + size, c * step:c * step + size]
                     for r in range(nh) for c in range(nw)])  # (nb, channels, size, size)
    np.testing.assert_array_equal(got.reshape(want.shape), want)


def test_unblock_chunks_put_channels_first_blocks_back():
    from mindcv_halonet.layers.halo_attention import _unblock_chunk_array

    nh, nw, bq, channels = 3, 2, 4, 3
    y = np.random.default_rng(3).standard_normal((channels, nh * bq, nw * bq))
    blocks = y.reshape(channels, nh, bq, nw, bq).transpose(1, 3, 0, 2, 4)  # (nh, nw, channel, y, x)
    got = blocks.reshape(-1, bq)[_unblock_chunk_array(nh, nw, bq, channels)]
    np.testing.assert_array_equal(got.reshape(y.shape), y)


@pytest.mark.parametrize("height, width, step, size, offset", [(20, 12, 8, 14, 3), (16, 16, 8, 12, 2)])
def test_kv_window_tables_cut_keys_and_values_and_invert_both(height, width, step, size, offset):
    """``AttentionCore``'s tables: k_index and v_index read the key and the value windows (channels
    [0, dqk) and [dqk, dqk + dv)) of the column-padded kv map, and ``inverse`` sends every source chunk's
    gradient to exactly the (key, value) outputs that read it: the gradient of concat(keys, values) taken
    through it equals a NumPy scatter-add, the zero chunk getting none."""
    import math

    from mindcv_halonet.layers.halo_attention import _kv_window_tables, _padded_width

    dqk, dv = 2, 3
    total, chunk = dqk + dv, math.gcd(step, size)
    nh, nw = -(-height // step), -(-width // step)
    wp = _padded_width(width, nw, step, size, offset, chunk)
    x = np.random.default_rng(4).standard_normal((total, height, width))
    padded_cols = np.zeros((total, height, wp))
    padded_cols[:, :, offset:offset + width] = x
    src = np.concatenate([padded_cols.reshape(-1, chunk), np.zeros((1, chunk))])
    k_index, v_index, inverse = (t.asnumpy() for t in _kv_window_tables(height, width, nh, nw, step, size, offset,
                                                                          dqk, dv, chunk))
    pad = np.zeros((total, nh * step + 2 * size, nw * step + 2 * size))
    pad[:, offset:offset + height, offset:offset + width] = x
    want = np.stack([pad[:, r * step:r * step + size, c * step:c * step + size]
                     for r in range(nh) for c in range(nw)])  # (nb, total, size, size)
    np.testing.assert_array_equal(src[k_index].reshape(nh * nw, dqk, size, size), want[:, :dqk])
    np.testing.assert_array_equal(src[v_index].reshape(nh * nw, dv, size, size), want[:, dqk:])

    # the inverse of the two tables one after the other: all key windows, then all value windows
    both = np.concatenate([k_index, v_index])
    dout = np.random.default_rng(5).standard_normal((both.size, chunk))
    want_grad = np.zeros_like(src)
    np.add.at(want_grad, both, dout)
    want_grad[-1] = 0.0  # the zero chunk is a constant
    assert inverse.shape[1] == src.shape[0]
    got_grad = np.concatenate([dout, np.zeros((1, chunk))])[inverse].sum(0)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-12, atol=1e-12)
