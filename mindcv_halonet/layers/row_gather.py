"""Row gather with a constant index table, whose backward is a gather too.

``RowGather()(src, index, inverse)`` is ``ops.gather(src, index, 1)``: src (G, L, C), index (M,) int32
rows of src -> (G, M, C). Autodiff would give the backward as a scatter-add of dout into a zero
(G, L, C) buffer; MindSpore's CPU kernel for that keeps workspaces several times the size of dout
alive for the whole step. Here the table is a constant (known at compile time), so its inverse is
too: ``inverse`` (K, L) lists, for every source row l, the (at most K) output rows that read it,
padded with M (an extra zero row of dout). The backward (``gather_backward``) is then one gather of
dout and a sum over K (a batched matmul with ones, ``sum_axis1``):

    dsrc[:, l] = sum_k  [dout, 0][:, inverse[k, l]]

which is exact (the same terms are added; K is 1 for a permutation, up to 4 for overlapping windows).
"""
import numpy as np

from mindspore import Tensor, nn, ops

__all__ = ["RowGather", "inverse_table", "gather_backward", "sum_axis1"]


def inverse_table(index: np.ndarray, rows: int, constant_row: int = -1) -> Tensor:
    """(K, rows) int32: for each source row, the output rows of ``index`` that read it, padded with
    ``len(index)`` (the zero row appended to dout). ``rows``: number of source rows; every entry of
    ``index`` must be < rows. ``constant_row``: a source row that is a constant (HaloAttention's zero
    row for positions outside the map), read by any number of outputs; it gets no gradient, so it is
    left out of the table and does not set K."""
    index = np.ascontiguousarray(index, np.int32).reshape(-1)
    if index.size and (index.min() < 0 or index.max() >= rows):
        raise ValueError(f"index entries must lie in [0, {rows}); got [{index.min()}, {index.max()}]")
    m = index.size
    outputs = np.arange(m)
    if constant_row >= 0:
        keep = index != constant_row
        index, outputs = index[keep], outputs[keep]
    counts = np.bincount(index, minlength=rows)
    k = max(1, int(counts.max()) if index.size else 1)
    inverse = np.full((k, rows), m, np.int32)
    order = np.argsort(index, kind="stable")  # outputs grouped by the source row they read
    sorted_rows = index[order]
    starts = np.searchsorted(sorted_rows, np.arange(rows))
    slot = np.arange(index.size) - starts[sorted_rows]  # 0 .. count-1 within each source row
    inverse[slot, sorted_rows] = outputs[order]
    return Tensor(inverse)


class RowGather(nn.Cell):
    """(G, L, C) source, (M,) index, (K, L) inverse -> (G, M, C); backward = gather of dout (see module).

    ``permutation=True`` promises that ``index`` is a permutation of the L source rows (then M = L, K = 1 and
    the inverse holds no padding entry): the backward gathers dout directly, without first copying it to
    append the zero row."""

    def __init__(self, permutation: bool = False):
        super().__init__()
        self.permutation = bool(permutation)

    def construct(self, src: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
        return ops.gather(src, index, 1)

    def bprop(self, src: Tensor, index: Tensor, inverse: Tensor, out: Tensor, dout: Tensor):
        return gather_backward(dout, inverse, self.permutation), ops.zeros_like(index), ops.zeros_like(inverse)


def sum_axis1(x: Tensor) -> Tensor:
    """(G, K, L) -> (G, 1, L), the sum over K, as a batched matmul with a row of ones: MindSpore's CPU
    ReduceSum over this middle axis is 4-5x slower (23 vs 5 ms at HaloAttention's kv shapes, 64 x 4 x 22,528)."""
    g, k, _ = x.shape
    return ops.bmm(ops.ones((g, 1, k), x.dtype), x)


def gather_backward(dout: Tensor, inverse: Tensor, permutation: bool = False, padded: bool = False) -> Tensor:
    """The gradient of ``ops.gather(src, index, 1)`` for the source, from dout (G, M, C) and the (K, L) inverse
    table of ``index`` (``inverse_table``): (G, L, C). ``permutation``: ``index`` is a permutation (K = 1, no
    padding entry), so dout is gathered as it is, without appending its zero row. ``padded``: dout already
    ends with that zero row, (G, M + 1, C) (a caller that builds dout with a concat appends it there)."""
    g, _, c = dout.shape
    k, rows = inverse.shape
    if permutation:
        return ops.gather(dout, inverse.reshape(-1), 1)
    with_zero = dout if padded else ops.concat((dout, ops.zeros((g, 1, c), dout.dtype)), 1)  # (G, M + 1, C)
    if k == 1:
        return ops.gather(with_zero, inverse.reshape(-1), 1)
    parts = ops.gather(with_zero, inverse.reshape(-1), 1).reshape(g, k, rows * c)
    return sum_axis1(parts).reshape(g, rows, c)
