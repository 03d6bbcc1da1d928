"""Blocked local self-attention with halos (HaloNet, Vaswani et al., CVPR 2021).

The function computed is timm's ``HaloAttn`` (see ``tests/fixtures/halo_attn/README.md`` for the
exact semantics the tests hold it to). Shapes use these letters:

    B  batch                    C  input channels (``dim``)
    h  heads                    dqk / dv  query-key / value width per head
    b  block size               p  halo size             win = b + 2p (key window)
    s  query stride (2 in strided-query mode, else 1)    bq = b / s (query block)
    H, W  input size            Hp, Wp  H, W rounded up to a multiple of b
    nh, nw = Hp / b, Wp / b     blocks per column / row; nb = nh * nw
    N  = B * h * nb             one attention problem per (sample, head, block)

Only 1x1 conv / reshape / transpose / slice / concat / gather / batched matmul / softmax are used,
so the cell runs on every MindSpore backend (no ``nn.Unfold``), in PyNative and Graph mode, with
shapes that are static for a given input size. Query blocks and the overlapping key/value windows
are each cut with one gather from a "pixels as rows" map that has one extra all-zero row; every
window position outside the map reads that row.

Sizes that are not a multiple of ``block_size``
-----------------------------------------------
timm requires H and W to be multiples of ``block_size``. This layer accepts any size: the blocks
are laid out as if the map were extended on the bottom and right to (Hp, Wp), and the result is
cropped back to the map. An extended position
is treated exactly like timm's halo border: its key and value are exactly zero (no bias), and it is
*not* masked -- it enters the softmax with logit 0 (content) + its relative-position term, as every
out-of-image halo position does in timm. Queries at extended positions are computed and dropped.
When H and W already are multiples of ``block_size`` nothing is extended, so the result is the plain
timm function. Output size: strided-query mode gives ceil(H/2) x ceil(W/2) (like a 1x1 conv with
stride 2); avg-pool mode gives floor(H/2) x floor(W/2) (2x2 average pool, no padding).

Mixed precision
---------------
The content and relative logits and the softmax always run in float32, whatever the compute dtype
(MindCV's ``amp_level`` O2/O3 run the 1x1 convs in float16); the attention weights are then cast
back and the output is returned in the compute dtype (the dtype of the projected values).
MindSpore's O2/O3 call ``to_float(float16)`` recursively, which makes every op of every sub-cell
cast its inputs to float16; the two cells that compute logits (``RelPosEmbed``, ``AttentionWeights``)
are ``Float32Cell``s (``precision.py``, the plugin's only private-API use), which turn such a request
into float32 for themselves. Releases propagate
``to_float`` in one of two ways and ``Float32Cell`` intercepts both (see its docstring);
``tests/layers/test_mixed_precision_propagation.py`` applies each and fails if MindSpore renames them.
"""
import math
from functools import lru_cache
from typing import Optional

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal, initializer
from mindspore.ops import constexpr

from .checks import check_image_input
from .precision import Float32Cell
from .precision_guard import check_precision_mode
from .row_gather import RowGather, inverse_table

__all__ = ["HaloAttention", "RelPosEmbed", "AttentionWeights", "Float32Cell", "make_divisible", "halo_dims"]


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None, round_limit: float = 0.9) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (halves up), at least ``min_value`` (default
    ``divisor``), adding one more ``divisor`` if rounding lost more than ``1 - round_limit`` of ``v``."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _check_int(name: str, value, minimum: int, accepted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"HaloAttention: {name}={value!r} is invalid; expected {accepted}")


def halo_dims(
    dim: int,
    dim_out: Optional[int] = None,
    stride: int = 1,
    num_heads: int = 8,
    dim_head: Optional[int] = None,
    block_size: int = 8,
    halo_size: int = 3,
    qk_ratio: float = 1.0,
    avg_down: bool = False,
) -> dict:
    """Validate the constructor arguments and derive the layer's sizes (no tensors are created).

    Returns a dict with ``dim_out, dim_head_qk, dim_head_v, win_size, block_stride, block_size_ds,
    use_avg_pool, scale``. Raises ``ValueError`` naming the offending argument.
    """
    _check_int("dim", dim, 1, "an integer >= 1")
    dim_out = dim if dim_out is None else dim_out
    _check_int("dim_out", dim_out, 1, "an integer >= 1 (or None for dim)")
    _check_int("num_heads", num_heads, 1, "an integer >= 1")
    if dim_out % num_heads:
        raise ValueError(
            f"HaloAttention: dim_out={dim_out} is not divisible by num_heads={num_heads}; "
            f"expected dim_out to be a multiple of num_heads"
        )
    if stride not in (1, 2) or isinstance(stride, bool):
        raise ValueError(f"HaloAttention: stride={stride!r} is invalid; expected 1 or 2")
    _check_int("block_size", block_size, 1, "an integer >= 1")
    _check_int("halo_size", halo_size, 0, "an integer >= 0")
    if isinstance(qk_ratio, bool) or not isinstance(qk_ratio, (int, float)) or not qk_ratio > 0 or math.isinf(qk_ratio):
        raise ValueError(f"HaloAttention: qk_ratio={qk_ratio!r} is invalid; expected a finite number > 0")
    if dim_head is not None:
        _check_int("dim_head", dim_head, 1, "an integer >= 1 or None")
        dim_head_qk = dim_head
    else:
        dim_head_qk = make_divisible(dim_out * qk_ratio, divisor=8) // num_heads
        if dim_head_qk < 1:
            raise ValueError(
                f"HaloAttention: qk_ratio={qk_ratio!r} with dim_out={dim_out} and num_heads={num_heads} gives a "
                f"query/key head width of 0; expected a larger qk_ratio or an explicit dim_head >= 1"
            )
    use_avg_pool = stride > 1 and (bool(avg_down) or block_size % stride != 0)
    block_stride = 1 if use_avg_pool else stride
    return dict(
        dim_out=dim_out,
        dim_head_qk=dim_head_qk,
        dim_head_v=dim_out // num_heads,
        win_size=block_size + 2 * halo_size,
        block_stride=block_stride,
        block_size_ds=block_size // block_stride,
        use_avg_pool=use_avg_pool,
        scale=dim_head_qk**-0.5,
    )


class Float32RowGather(Float32Cell, RowGather):
    """``RowGather`` that stays in float32 inside a ``Float32Cell`` under AMP (its own flags are intercepted)."""


class RelPosEmbed(Float32Cell):
    """Relative-position logits of one query block against its key window, in float32.

    Parameters (timm names): ``height_rel`` and ``width_rel``, each (2*win-1, dqk). For a query at
    (qy, qx) of the bq x bq query grid and a key at (ky, kx) of the win x win window the logit is

        q . height_rel[ky - qy + win - 1] + q . width_rel[kx - qx + win - 1]

    (the index mixes query-grid and window coordinates exactly as timm does, also in strided-query
    mode). Rows 0 .. win-bq-1 of both tables are never read.

    Input:  q (N, bq*bq, dqk), queries of a block in row-major order.
    Output: (N, bq*bq, win*win) float32, window positions row-major, like the content logits.
    """

    def __init__(self, block_size: int, win_size: int, dim_head: int):
        super().__init__()
        self.block_size = block_size
        self.win_size = win_size
        std = dim_head**-0.5
        self.height_rel = Parameter(initializer(Normal(std), (2 * win_size - 1, dim_head), ms.float32), name="height_rel")
        self.width_rel = Parameter(initializer(Normal(std), (2 * win_size - 1, dim_head), ms.float32), name="width_rel")
        # q . table^T gives (bq*bq, 2*win-1) per query; these flat indices pick, for query (qy, qx) and
        # window coordinate kk, the entry [(qy, qx), kk - qy + win - 1] (height) / [.., kk - qx + win - 1] (width)
        rows = 2 * win_size - 1
        qy = np.arange(block_size)[:, None, None]
        qx = np.arange(block_size)[None, :, None]
        kk = np.arange(win_size)[None, None, :]
        base = (qy * block_size + qx) * rows + win_size - 1
        height_index = (base + kk - qy).reshape(-1).astype(np.int32)  # (bq*bq*win,), all distinct
        width_index = (base + kk - qx).reshape(-1).astype(np.int32)
        self.height_index, self.width_index = Tensor(height_index), Tensor(width_index)
        self.height_inverse = inverse_table(height_index, block_size * block_size * rows)
        self.width_inverse = inverse_table(width_index, block_size * block_size * rows)
        self.gather = Float32RowGather()
        # spread (2*win,) [height term per ky | width term per kx] onto the win*win window positions:
        # rel[ky*win + kx] = rel_h[ky] + rel_w[kx]. A matmul, so that its backward is a matmul too
        # (a broadcast add's backward is a reduction over a short axis, slow on CPU).
        spread = np.zeros((2 * win_size, win_size, win_size), np.float32)
        for i in range(win_size):
            spread[i, i, :] = 1.0
            spread[win_size + i, :, i] = 1.0
        self.spread = Tensor(spread.reshape(2 * win_size, win_size * win_size))

    def _axis_logits(self, q2d: Tensor, table: Tensor, index: Tensor, inverse: Tensor, n: int) -> Tensor:
        # (N*bq*bq, dqk) @ (dqk, 2*win-1) -> (N, bq*bq*(2*win-1), 1) -> pick -> (N*bq*bq, win)
        full = ops.matmul(q2d, table.astype(ms.float32).T).reshape(n, -1, 1)
        return self.gather(full, index, inverse).reshape(-1, self.win_size)

    def construct(self, q: Tensor) -> Tensor:
        n, bq2, d = q.shape
        q2d = q.astype(ms.float32).reshape(n * bq2, d)
        rel_h = self._axis_logits(q2d, self.height_rel, self.height_index, self.height_inverse, n)  # (N*bq*bq, ky)
        rel_w = self._axis_logits(q2d, self.width_rel, self.width_index, self.width_inverse, n)  # (N*bq*bq, kx)
        rel = ops.matmul(ops.concat((rel_h, rel_w), 1), self.spread)  # (N*bq*bq, win*win)
        return rel.reshape(n, bq2, -1)


class AttentionWeights(Float32Cell):
    """Softmax attention weights of each query over its key window, in float32.

    Inputs: q (N, bq*bq, dqk), k (N, win*win, dqk), any float dtype; rel (N, bq*bq, win*win), the
    unscaled relative logits from ``RelPosEmbed``.
    Output: (N, bq*bq, win*win) float32, rows summing to 1.
    """

    def __init__(self, scale: float, scale_pos_embed: bool):
        super().__init__()
        self.scale = scale
        self.scale_pos_embed = scale_pos_embed
        self.bmm_nt = ops.BatchMatMul(transpose_b=True)
        self.bmm_tn = ops.BatchMatMul(transpose_a=True)

    def construct(self, q: Tensor, k: Tensor, rel: Tensor) -> Tensor:
        q = q.astype(ms.float32)
        k = k.astype(ms.float32)
        if self.scale_pos_embed:
            logits = (self.bmm_nt(q, k) + rel) * self.scale
        else:
            logits = self.bmm_nt(q * self.scale, k) + rel  # scaling q is cheaper than scaling the logits
        return ops.softmax(logits, -1)

    def bprop(self, q: Tensor, k: Tensor, rel: Tensor, out: Tensor, dout: Tensor):
        """The gradient autodiff would give, from the weights alone (``out``; not the logits or ``rel``,
        which are then not kept for the backward pass), and with no broadcasting binary op: MindSpore's
        CPU kernels keep, for the whole step, a broadcast op's index workspace of 4x its output size."""
        dout = dout.astype(ms.float32)
        row = (dout * out).sum(-1, keepdims=True)  # (N, bq*bq, 1)
        dlogits = out * (dout - ops.broadcast_to(row, out.shape))  # softmax backward
        qf, kf = q.astype(ms.float32), k.astype(ms.float32)
        dq = ops.bmm(dlogits, kf)
        dk = self.bmm_tn(dlogits, qf)
        if self.scale_pos_embed:
            drel = dlogits * self.scale
        else:
            drel = dlogits
        return (dq * self.scale).astype(q.dtype), (dk * self.scale).astype(k.dtype), drel.astype(rel.dtype)


def _rows_with_zero(x: Tensor) -> Tensor:
    """(G, C, L) -> (G, L + 1, C): positions as rows, plus a last all-zero row that stands for every
    position outside the map."""
    g, c, _ = x.shape
    return ops.concat((x.transpose(0, 2, 1), ops.zeros((g, 1, c), x.dtype)), 1)


@lru_cache(maxsize=256)
def _window_index_array(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int) -> np.ndarray:
    ys = np.arange(nh)[:, None, None, None] * step - offset + np.arange(size)[None, None, :, None]
    xs = np.arange(nw)[None, :, None, None] * step - offset + np.arange(size)[None, None, None, :]
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    flat = np.where(inside, ys * width + xs, height * width)
    return flat.reshape(-1).astype(np.int32)


@lru_cache(maxsize=256)
def _window_index_table(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int) -> Tensor:
    return Tensor(_window_index_array(height, width, nh, nw, step, size, offset))


@lru_cache(maxsize=256)
def _window_inverse_table(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int) -> Tensor:
    zero_row = height * width
    return inverse_table(_window_index_array(height, width, nh, nw, step, size, offset), zero_row + 1, zero_row)


@constexpr
def _window_index(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int) -> Tensor:
    """Flat indices into a (height*width + 1)-row map for every window, blocks row-major.

    Window (r, c) covers rows r*step - offset .. r*step - offset + size - 1 (same for columns); a
    position outside the map points at row height*width (the zero row). Returns (nh*nw*size*size,)
    int32, ordered (r, c, y, x). A compile-time constant in Graph mode, cached per size in PyNative."""
    return _window_index_table(height, width, nh, nw, step, size, offset)


@constexpr
def _window_inverse(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int) -> Tensor:
    """The inverse of ``_window_index`` for ``RowGather``'s backward: (K, height*width + 1)."""
    return _window_inverse_table(height, width, nh, nw, step, size, offset)


@lru_cache(maxsize=256)
def _unblock_index_array(height: int, width: int, nw: int, bq: int) -> np.ndarray:
    ys = np.arange(height)[:, None]
    xs = np.arange(width)[None, :]
    flat = (((ys // bq) * nw + xs // bq) * bq + ys % bq) * bq + xs % bq
    return flat.reshape(-1).astype(np.int32)


@lru_cache(maxsize=256)
def _unblock_index_table(height: int, width: int, nw: int, bq: int) -> Tensor:
    return Tensor(_unblock_index_array(height, width, nw, bq))


@lru_cache(maxsize=256)
def _unblock_inverse_table(height: int, width: int, nh: int, nw: int, bq: int) -> Tensor:
    return inverse_table(_unblock_index_array(height, width, nw, bq), nh * nw * bq * bq)


@constexpr
def _unblock_index(height: int, width: int, nw: int, bq: int) -> Tensor:
    """For each output pixel (y, x), row-major, its row in the (nh*nw*bq*bq) blocked query order."""
    return _unblock_index_table(height, width, nw, bq)


@constexpr
def _unblock_inverse(height: int, width: int, nh: int, nw: int, bq: int) -> Tensor:
    """The inverse of ``_unblock_index`` (a query row outside the map gets no gradient): (1, nh*nw*bq*bq)."""
    return _unblock_inverse_table(height, width, nh, nw, bq)


class HaloAttention(nn.Cell):
    """Halo attention (timm ``HaloAttn`` semantics), any input size.

    Args:
        dim: input channels C.
        dim_out: output channels (default ``dim``); must be divisible by ``num_heads``.
        feat_size: accepted for timm compatibility, unused.
        stride: 1 or 2. With 2 and an even ``block_size`` (and ``avg_down`` False) the queries are the
            even pixels (strided-query mode); otherwise attention runs at full resolution followed by a
            2x2 average pool.
        num_heads: attention heads h.
        dim_head: query/key width per head; default ``make_divisible(dim_out * qk_ratio, 8) // h``.
        block_size: query block b.  halo_size: halo p around each block.
        qk_ratio: query/key width relative to ``dim_out`` (when ``dim_head`` is None).
        qkv_bias: biases on the q and kv projections.
        avg_down: use the average-pool mode for stride 2 even when b is even.
        scale_pos_embed: scale (content + relative) logits together instead of only the content.

    Parameters (timm state-dict names): ``q.weight`` (h*dqk, C, 1, 1), ``kv.weight``
    (h*(dqk+dv), C, 1, 1) grouped per head as [k_i, v_i], optional ``q.bias``/``kv.bias``,
    ``pos_embed.height_rel``/``pos_embed.width_rel`` (2*win-1, dqk).

    Input (B, C, H, W); output (B, dim_out, H', W') with H' = H at stride 1.
    """

    def __init__(
        self,
        dim: int,
        dim_out: Optional[int] = None,
        feat_size=None,
        stride: int = 1,
        num_heads: int = 8,
        dim_head: Optional[int] = None,
        block_size: int = 8,
        halo_size: int = 3,
        qk_ratio: float = 1.0,
        qkv_bias: bool = False,
        avg_down: bool = False,
        scale_pos_embed: bool = False,
    ):
        super().__init__()
        d = halo_dims(dim, dim_out, stride, num_heads, dim_head, block_size, halo_size, qk_ratio, avg_down)
        check_precision_mode()  # on Ascend, once per process: does precision_mode keep the float32 logits?
        self.dim = dim
        self.stride = stride
        self.dim_out = d["dim_out"]
        self.num_heads = num_heads
        self.dim_head_qk = d["dim_head_qk"]
        self.dim_head_v = d["dim_head_v"]
        self.dim_out_qk = num_heads * self.dim_head_qk
        self.dim_out_v = num_heads * self.dim_head_v
        self.scale = d["scale"]
        self.scale_pos_embed = bool(scale_pos_embed)
        self.block_size = block_size
        self.block_size_ds = d["block_size_ds"]
        self.block_stride = d["block_stride"]
        self.halo_size = halo_size
        self.win_size = d["win_size"]
        self.use_avg_pool = d["use_avg_pool"]

        std = dim**-0.5
        self.q = nn.Conv2d(
            dim, self.dim_out_qk, 1, stride=self.block_stride, has_bias=bool(qkv_bias),
            weight_init=Normal(std), bias_init="zeros",
        )
        self.kv = nn.Conv2d(
            dim, self.dim_out_qk + self.dim_out_v, 1, has_bias=bool(qkv_bias),
            weight_init=Normal(std), bias_init="zeros",
        )
        self.pos_embed = RelPosEmbed(self.block_size_ds, self.win_size, self.dim_head_qk)
        self.attn_weights = AttentionWeights(self.scale, self.scale_pos_embed)
        self.gather = RowGather()  # ops.gather along rows, with a gather (not a scatter) as its backward
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2) if self.use_avg_pool else nn.Identity()
        self.description = f"HaloAttention({self.extend_repr()})"  # names the layer in input errors

    def extend_repr(self) -> str:
        return (f"dim={self.dim}, dim_out={self.dim_out}, stride={self.stride}, "
                f"num_heads={self.num_heads}, block_size={self.block_size}, halo_size={self.halo_size}")

    def construct(self, x: Tensor) -> Tensor:
        check_image_input(x.shape, x.dtype, self.description, self.dim, "dim",  # compile time in Graph mode
                          2 if self.use_avg_pool else 1, "stride 2 here ends in a 2x2 average pool")
        B, _, H, W = x.shape
        b, p, win, bq = self.block_size, self.halo_size, self.win_size, self.block_size_ds
        h, dqk, dv = self.num_heads, self.dim_head_qk, self.dim_head_v
        nh, nw = -(-H // b), -(-W // b)  # blocks; the last ones may extend past the map
        n = B * h * nh * nw

        q = self.q(x)  # (B, h*dqk, Hq, Wq), Hq = ceil(H / stride) in strided-query mode
        hq, wq = q.shape[2], q.shape[3]
        kv = self.kv(x)  # (B, h*(dqk+dv), H, W), channels per head [k_i, v_i]; bias applied here only

        # heads into the batch; k and v split per head before the windows are cut (a cheap slice)
        q = q.reshape(B * h, dqk, hq * wq)
        kv = kv.reshape(B * h, dqk + dv, H * W)
        k, v = kv[:, :dqk], kv[:, dqk:]
        # pixels as rows plus a zero row; blocks of queries and overlapping windows of keys/values
        # are each one gather: (N, bq*bq, dqk), (N, win*win, dqk), (N, win*win, dv)
        q_index, q_inverse = _window_index(hq, wq, nh, nw, bq, bq, 0), _window_inverse(hq, wq, nh, nw, bq, bq, 0)
        kv_index, kv_inverse = _window_index(H, W, nh, nw, b, win, p), _window_inverse(H, W, nh, nw, b, win, p)
        q = self.gather(_rows_with_zero(q), q_index, q_inverse).reshape(n, bq * bq, dqk)
        k = self.gather(_rows_with_zero(k), kv_index, kv_inverse).reshape(n, win * win, dqk)
        v = self.gather(_rows_with_zero(v), kv_index, kv_inverse).reshape(n, win * win, dv)

        # logits and softmax in float32, weights back in the compute dtype: (N, bq*bq, win*win)
        # Cast here, not only inside the Float32Cells: under amp O2/O3 in Graph mode a Float32Cell's input
        # arrives cast to float32, and AttentionWeights' custom bprop then returns float32 gradients that
        # autodiff cannot add to RelPosEmbed's float16 ones (AddN type error at compile time).
        q, k = q.astype(ms.float32), k.astype(ms.float32)
        attn = self.attn_weights(q, k, self.pos_embed(q)).astype(v.dtype)
        out = ops.bmm(attn, v)  # (N, bq*bq, dv)

        # blocks back to pixels (dropping queries outside the map): (B*h, Hq*Wq, dv) -> (B, h*dv, Hq, Wq)
        out = self.gather(out.reshape(B * h, nh * nw * bq * bq, dv), _unblock_index(hq, wq, nw, bq),
                          _unblock_inverse(hq, wq, nh, nw, bq))
        out = out.transpose(0, 2, 1).reshape(B, h * dv, hq, wq)
        return self.pool(out)
