"""Row gather with a constant index table, whose backward is a gather too.

``RowGather()(src, index, inverse)`` is ``ops.gather(src, index, 1)``: src (G, L, C), index (M,) int32
rows of src -> (G, M, C). Autodiff would give the backward as a scatter-add of dout into a zero
(G, L, C) buffer; MindSpore's CPU kernel for that keeps workspaces several times the size of dout
alive for the whole step. Here the table is a constant (known at compile time), so its inverse is
too: ``inverse`` (K, L) lists, for every source row l, the (at most K) output rows that read it,
padded with M (an extra zero row of dout). The backward is then one gather of dout and a sum over K
(a batched matmul with ones):

    dsrc[:, l] = sum_k  [dout, 0][:, inverse[k, l]]

which is exact (the same terms are added; K is 1 for a permutation, up to 4 for overlapping windows).
"""
import numpy as np

from mindspore import Tensor, nn, ops

__all__ = ["RowGather", "inverse_table"]


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
        g, m, c = dout.shape
        k, rows = inverse.shape
        if self.permutation:
            return ops.gather(dout, inverse.reshape(-1), 1), ops.zeros_like(index), ops.zeros_like(inverse)
        padded = ops.concat((dout, ops.zeros((g, 1, c), dout.dtype)), 1)  # (G, M + 1, C)
        if k == 1:
            dsrc = ops.gather(padded, inverse.reshape(-1), 1)
        else:
            # the sum over K as a batched matmul with ones: MindSpore's CPU ReduceSum over this middle axis
            # is 4-5x slower (23 vs 5 ms at HaloAttention's kv shapes, 64 x 4 x 22,528)
            parts = ops.gather(padded, inverse.reshape(-1), 1).reshape(g, k, rows * c)
            dsrc = ops.bmm(ops.ones((g, 1, k), dout.dtype), parts).reshape(g, rows, c)
        return dsrc, ops.zeros_like(index), ops.zeros_like(inverse)
