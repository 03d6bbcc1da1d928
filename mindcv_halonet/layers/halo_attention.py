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

Only 1x1 conv / reshape / slice / concat / gather / batched matmul / softmax are used, so the cell
runs on every MindSpore backend (no ``nn.Unfold``), in PyNative and Graph mode, with shapes that are
static for a given input size. No activation is transposed (a MindSpore CPU transpose keeps about 4x its
output for the whole train step): the query blocks are cut with one element-level gather from the flat
channels-first q map, the overlapping key and value windows with one gather each of ``gcd(b, win)``-pixel
runs from the channels-first kv map padded with zero columns (inside ``AttentionCore``, so that the step
keeps the map and not its 3x larger windows), and one gather of ``bq``-pixel runs puts the blocks back;
every window position outside the map reads a zero element or run. Each gather's backward is a gather
too (``row_gather.py``); for the two permutations (query blocks that tile the map, and the way back) it
reads the gradient as it is, without a padded copy.

Memory: ``AttentionCore`` keeps no (N, bq*bq, win*win) tensor for the backward (it recomputes the
weights there) and no key/value window (it cuts them again from the kv map), makes its (N, 2*win,
win*win) spread block at run time (Graph mode would otherwise hold it as a constant), and runs its N
problems in spans of at most ``_SPAN_ELEMENTS`` logits, so that a layer's transient memory stops
growing with the batch beyond one span.

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
The content and relative logits, the softmax and the weighted sum of the values always run in float32,
whatever the compute dtype (MindCV's ``amp_level`` O2/O3 run the 1x1 convs in float16); the output
is returned in the compute dtype (the dtype of the projected values).
MindSpore's O2/O3 call ``to_float(float16)`` recursively, which makes every op of every sub-cell
cast its inputs to float16; the two cells that compute logits (``RelPosEmbed``, ``AttentionCore``)
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
from .row_gather import RowGather, gather_backward, inverse_table, sum_axis1

__all__ = ["HaloAttention", "RelPosEmbed", "AttentionCore", "Float32Cell", "make_divisible", "halo_dims"]


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

    Input:  q (N, bq*bq, dqk), queries of a block in row-major order; ``spread`` (a constant bool).
    Output: with ``spread`` True (default), (N, bq*bq, win*win) float32, window positions row-major,
    like the content logits. With ``spread`` False, the two terms unspread: (N, bq*bq, 2*win) float32,
    [height term per ky | width term per kx]; the logit of (ky, kx) is the sum of entries ky and
    win + kx (``HaloAttention`` adds them inside the content matmul, see ``AttentionCore``).
    """

    def __init__(self, block_size: int, win_size: int, dim_head: int):
        super().__init__()
        self.block_size = block_size
        self.win_size = win_size
        std = dim_head**-0.5
        self.height_rel = Parameter(initializer(Normal(std), (2 * win_size - 1, dim_head), ms.float32), name="height_rel")
        self.width_rel = Parameter(initializer(Normal(std), (2 * win_size - 1, dim_head), ms.float32), name="width_rel")
        # q . [height_rel ; width_rel]^T gives (bq*bq, 2*(2*win-1)) per query; these flat indices pick, for
        # query (qy, qx), first [.., ky - qy + win - 1] of the height part for each window row ky, then
        # [.., rows + kx - qx + win - 1] of the width part for each window column kx: (bq*bq, 2*win) per query
        rows = 2 * win_size - 1
        qy = np.arange(block_size)[:, None, None]
        qx = np.arange(block_size)[None, :, None]
        kk = np.arange(win_size)[None, None, :]
        base = (qy * block_size + qx) * 2 * rows + win_size - 1
        index = np.concatenate(np.broadcast_arrays(base + kk - qy, base + rows + kk - qx), -1)
        index = index.reshape(-1).astype(np.int32)  # (bq*bq*2*win,), all distinct
        self.index, self.inverse = Tensor(index), inverse_table(index, block_size * block_size * 2 * rows)
        self.gather = Float32RowGather()
        self.spread = Tensor(_spread_matrix(win_size))  # (2*win, win*win)

    def construct(self, q: Tensor, spread: bool = True) -> Tensor:
        n, bq2, d = q.shape
        # one matmul for both axes, one gather for both terms: (N*bq*bq, dqk) @ (dqk, 2*(2*win-1)),
        # -> (N, bq*bq*2*(2*win-1), 1) -> pick -> (N*bq*bq, 2*win) = [height term per ky | width term per kx]
        table = ops.concat((self.height_rel.astype(ms.float32), self.width_rel.astype(ms.float32)), 0)
        full = ops.matmul(q.astype(ms.float32).reshape(n * bq2, d), table.T).reshape(n, -1, 1)
        rel = self.gather(full, self.index, self.inverse).reshape(n * bq2, 2 * self.win_size)
        if spread:
            # a matmul, so that its backward is a matmul too (a broadcast add's backward is a reduction
            # over a short axis, slow on CPU)
            rel = ops.matmul(rel, self.spread)  # (N*bq*bq, win*win)
        return rel.reshape(n, bq2, -1)


@lru_cache(maxsize=64)
def _spread_matrix(win_size: int) -> np.ndarray:
    """(2*win, win*win) float32 0/1: column ky*win + kx has ones in rows ky and win + kx, so that
    [rel_h | rel_w] @ spread puts rel_h[ky] + rel_w[kx] on window position (ky, kx)."""
    spread = np.zeros((2 * win_size, win_size, win_size), np.float32)
    for i in range(win_size):
        spread[i, i, :] = 1.0
        spread[win_size + i, :, i] = 1.0
    return spread.reshape(2 * win_size, win_size * win_size)


@constexpr
def _zero_index(n: int) -> Tensor:
    """(n,) int32 zeros: the index that gathers n copies of row 0."""
    return Tensor(np.zeros(n, np.int32))


@constexpr
def _spread_tensor(win_size: int) -> Tensor:
    """``_spread_matrix`` (2*win, win*win) as a compile-time constant."""
    return Tensor(_spread_matrix(win_size))


class AttentionCore(Float32Cell):
    """Softmax attention of each query over its key window, applied to the values, in float32; its
    backward recomputes the weights instead of keeping them.

    Inputs: q (N, bq*bq, dqk), any float dtype; rel (N, bq*bq, 2*win), the unscaled relative logits from
    ``RelPosEmbed(spread=False)``; src (G, L, chunk), ``HaloAttention``'s padded channels-first kv map as rows
    of ``chunk`` pixels followed by a zero row; and the constant tables of ``_kv_windows``: ``k_index`` and
    ``v_index``, whose gathers from src give the keys (N, dqk, win*win) and the values (N, dv, win*win),
    channels first, and ``inverse``, the inverse table of both, for the backward. The keys are extended here
    to [keys ; spread] (N, dqk + 2*win, win*win).
    Output: (N, dv, bq*bq) float32, channels first: ``v @ softmax(logits)^T``.

    The relative logits are added inside the content matmul (:meth:`logits`): the queries are extended by
    the 2*win relative terms, the keys by the 0/1 ``_spread_matrix``, so that one batched
    matmul writes the full logits, and the scale is applied to the (small) queries, not to the logits.

    Memory: the (N, bq*bq, win*win) logits and weights, and the key/value windows, live only inside the
    forward and the backward of this cell; the step keeps the small inputs (the kv map, not its windows,
    which are about (win/b)^2 = 3x larger) and the output (see :meth:`bprop`).
    """

    def __init__(self, scale: float, scale_pos_embed: bool):
        super().__init__()
        self.scale = scale
        self.scale_pos_embed = scale_pos_embed
        self.bmm_nt = ops.BatchMatMul(transpose_b=True)
        self.bmm_tn = ops.BatchMatMul(transpose_a=True)
        self.softmax = ops.Softmax(-1)  # a primitive: the functional softmax, used in construct and bprop,
        # left an empty function graph under amp in Graph mode (MindSpore 2.8.0)

    def logits(self, q: Tensor, k_ext: Tensor, rel: Tensor) -> Tensor:
        """(q . k + rel) * scale (``scale_pos_embed``) or (q * scale) . k + rel, in the dtype of the inputs:
        [q*s | rel*s'] @ [k ; spread], one batched matmul over dqk + 2*win."""
        if self.scale_pos_embed:
            q_ext = ops.concat((q, rel), -1) * self.scale
        else:
            q_ext = ops.concat((q * self.scale, rel), -1)
        return ops.bmm(q_ext, k_ext)

    def weights(self, q: Tensor, k_ext: Tensor, rel: Tensor) -> Tensor:
        """(N, bq*bq, win*win) float32 softmax weights, rows summing to 1."""
        return self.softmax(self.logits(q.astype(ms.float32), k_ext.astype(ms.float32), rel.astype(ms.float32)))

    def _forward(self, q: Tensor, k_ext: Tensor, rel: Tensor, v: Tensor) -> Tensor:
        return self.bmm_nt(v.astype(ms.float32), self.weights(q, k_ext, rel))  # (n, dv, bq*bq)

    def _backward(self, q: Tensor, k_ext: Tensor, rel: Tensor, v: Tensor, out: Tensor, dout: Tensor):
        dout = dout.astype(ms.float32)  # (n, dv, bq*bq)
        # recompute only once dout exists: without the dependency Graph mode may schedule the recomputation
        # right after the forward, and then every layer's weights are alive at once
        qf, kf = ops.depend(q.astype(ms.float32), dout), ops.depend(k_ext.astype(ms.float32), dout)
        rf, vf = ops.depend(rel.astype(ms.float32), dout), v.astype(ms.float32)
        attn = self.weights(qf, kf, rf)  # (n, bq*bq, win*win), recomputed
        n, _, win2 = attn.shape
        dqk = q.shape[-1]
        row = sum_axis1(dout * out.astype(ms.float32))  # (n, 1, bq*bq), the sum over dv
        dv = ops.bmm(dout, attn)  # (n, dv, win*win)
        dattn = self.bmm_tn(ops.concat((dout, -row), 1),
                            ops.concat((vf, ops.ones((n, 1, win2), ms.float32)), 1))  # dw - row, (n, bq*bq, win*win)
        dlogits = attn * dattn  # softmax backward
        dq_ext = self.bmm_nt(dlogits, kf)  # (n, bq*bq, dqk + 2*win) = [dq / s | drel / s'], one matmul for both
        dk = self.bmm_tn(qf, dlogits) * self.scale  # (n, dqk, win*win)
        if self.scale_pos_embed:
            dq_ext = dq_ext * self.scale
            return dq_ext[:, :, :dqk], dk, dq_ext[:, :, dqk:], dv
        return dq_ext[:, :, :dqk] * self.scale, dk, dq_ext[:, :, dqk:], dv

    def _attend(self, q: Tensor, k_ext: Tensor, rel: Tensor, v: Tensor) -> Tensor:
        spans = _problem_spans(q.shape[0], q.shape[1] * k_ext.shape[2])
        if len(spans) == 1:
            return self._forward(q, k_ext, rel, v)
        outs = ()
        for start, stop in spans:  # one span after the other: each one's logits are freed before the next
            qi = q[start:stop]
            if start > 0:
                qi = ops.depend(qi, outs[-1])
            outs = outs + (self._forward(qi, k_ext[start:stop], rel[start:stop], v[start:stop]),)
        return ops.concat(outs, 0)

    def _attend_backward(self, q: Tensor, k_ext: Tensor, rel: Tensor, v: Tensor, out: Tensor, dout: Tensor):
        spans = _problem_spans(q.shape[0], q.shape[1] * k_ext.shape[2])
        if len(spans) == 1:
            return self._backward(q, k_ext, rel, v, out, dout)
        dqs, dks, drels, dvs = (), (), (), ()
        for start, stop in spans:
            douti = dout[start:stop]
            if start > 0:
                douti = ops.depend(ops.depend(ops.depend(ops.depend(douti, dqs[-1]), dks[-1]), drels[-1]), dvs[-1])
            dqi, dki, dreli, dvi = self._backward(q[start:stop], k_ext[start:stop], rel[start:stop], v[start:stop],
                                                  out[start:stop], douti)
            dqs, dks, drels, dvs = dqs + (dqi,), dks + (dki,), drels + (dreli,), dvs + (dvi,)
        return ops.concat(dqs, 0), ops.concat(dks, 0), ops.concat(drels, 0), ops.concat(dvs, 0)

    @staticmethod
    def _windows(q: Tensor, src: Tensor, rel: Tensor, k_index: Tensor, v_index: Tensor):
        """Extended keys [k ; spread] (N, dqk + 2*win, win*win) and values (N, dv, win*win), channels first:
        keys and values each one gather from src (G, L, chunk); N is q's first axis, win half of rel's last."""
        n, win = q.shape[0], rel.shape[-1] // 2
        k = ops.gather(src, k_index, 1).reshape(n, -1, win * win)
        # N copies of the spread block, made at run time: as a gather of whole rows (BroadcastTo on the CPU
        # backend took about 130 ms more per fwd+bwd at h1's first-stage shape) of a table that depends on k
        # (a broadcast of the constant alone is folded by Graph mode into an (N, 2*win, win*win) constant of every
        # layer and span, held for the whole process: h1, batch 8, about 320 MB)
        table = ops.depend(_spread_tensor(win).astype(k.dtype).reshape(1, -1), k)
        spread = ops.gather(table, _zero_index(n), 0).reshape(n, 2 * win, win * win)
        return ops.concat((k, spread), 1), ops.gather(src, v_index, 1).reshape(n, -1, win * win)

    def construct(self, q: Tensor, src: Tensor, rel: Tensor, k_index: Tensor, v_index: Tensor,
                  inverse: Tensor) -> Tensor:
        k_ext, v = self._windows(q, src, rel, k_index, v_index)
        return self._attend(q, k_ext, rel, v)

    def bprop(self, q: Tensor, src: Tensor, rel: Tensor, k_index: Tensor, v_index: Tensor, inverse: Tensor,
              out: Tensor, dout: Tensor):
        """The gradient autodiff would give, with the weights recomputed from q, k, rel (so the forward
        keeps no (N, bq*bq, win*win) tensor for the backward) and three full-size passes fewer:

        - the softmax backward's row term sum_j w_ij dw_ij equals sum_c dout_ci out_ci (small tensors);
        - it is subtracted inside the matmul that writes dw: [dout ; -row]^T @ [v ; 1];
        - one matmul with the extended keys gives the gradients of q and of the relative terms;
        - no broadcasting binary op (MindSpore's CPU kernels keep, for the whole step, a broadcast op's
          index workspace of 4x its output size), and the scale goes on the small gradients.

        The windows are cut again here from src (the step keeps the map, not the windows), and the
        gradient of keys and values goes back to the map through the gather's own backward
        (``gather_backward``); the zero row gets none. Like the forward, it runs over
        spans of at most ``_SPAN_ELEMENTS`` logits, one after the other.
        """
        k_ext, v = self._windows(q, ops.depend(src, dout), rel, k_index, v_index)  # cut again once dout exists
        dq, dk, drel, dv = self._attend_backward(q, k_ext, rel, v, out, dout)
        g, _, chunk = src.shape
        # [all key windows ; all value windows ; a zero row] per g, the layout ``inverse`` is built for: one concat
        dkv = ops.concat((dk.reshape(g, -1, chunk), dv.reshape(g, -1, chunk), ops.zeros((g, 1, chunk), dk.dtype)), 1)
        dsrc = gather_backward(dkv, inverse, padded=True)
        return (dq.astype(q.dtype), dsrc.astype(src.dtype), drel.astype(rel.dtype),
                ops.zeros_like(k_index), ops.zeros_like(v_index), ops.zeros_like(inverse))


# The attention core runs its N problems in spans of at most this many float32 logits (128 MiB):
# each span's (n, bq*bq, win*win) tensors are freed before the next span starts, so a layer's
# transient memory does not grow with the batch beyond one span. Each span also costs graph and kernel
# memory (CPU: about 7 MB). h1's train-step peak at batch 8 (round 3, spread made at run time, windows still kept)
# with 2^23 / 2^24 / 2^25 / no spans: 3,045 / 3,007 / 2,982 / 2,952 MB. Spans matter at the recipes' 64 per card.
_SPAN_ELEMENTS = 1 << 25


@constexpr
def _problem_spans(n: int, per_problem: int):
    """((start, stop), ...): N problems in equal consecutive spans of at most ``_SPAN_ELEMENTS`` logits."""
    per_span = max(1, _SPAN_ELEMENTS // per_problem)
    count = -(-n // per_span)
    size = -(-n // count)
    return tuple((i, min(n, i + size)) for i in range(0, n, size))


@lru_cache(maxsize=256)
def _window_index_array(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int) -> np.ndarray:
    """Flat pixel indices (y*width + x) of every window position, blocks row-major, (nh*nw*size*size,)
    ordered (r, c, y, x); a position outside the map gets height*width (one past the last pixel).

    Window (r, c) covers rows r*step - offset .. r*step - offset + size - 1 (same for columns)."""
    ys = np.arange(nh)[:, None, None, None] * step - offset + np.arange(size)[None, None, :, None]
    xs = np.arange(nw)[None, :, None, None] * step - offset + np.arange(size)[None, None, None, :]
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    flat = np.where(inside, ys * width + xs, height * width)
    return flat.reshape(-1).astype(np.int32)


# ---- element tables: every index below points at one element (not one row) of a flat map, so that the
# windows are cut straight from the channels-first (G, C*H*W) maps and the blocks go straight back to
# them: no transpose (a MindSpore CPU transpose keeps ~4x its output for the whole step).
@lru_cache(maxsize=256)
def _window_element_array(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int,
                          channels: int, first: int, total: int) -> np.ndarray:
    """Elements of a flat channels-first (total*height*width + 1) map (a last zero element) for the
    windows of channels ``first .. first+channels-1``: (nh*nw*size*size*channels,), ordered (window,
    position, channel), i.e. the rows of (N, size*size, channels) windows. Outside the map: the zero
    element, total*height*width."""
    pixels = _window_index_array(height, width, nh, nw, step, size, offset)[:, None]
    area = height * width
    elements = np.where(pixels == area, total * area, (first + np.arange(channels))[None, :] * area + pixels)
    return elements.reshape(-1).astype(np.int32)


@lru_cache(maxsize=256)
def _window_element_tables(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int,
                           channels: int, first: int, total: int, zero_element: bool):
    index = _window_element_array(height, width, nh, nw, step, size, offset, channels, first, total)
    zero = total * height * width
    if not zero_element:  # no window position outside the map: the source has no zero element
        if index.max() >= zero:
            raise ValueError("windows reach outside the map; the source needs its zero element")
        return Tensor(index), inverse_table(index, zero)
    return Tensor(index), inverse_table(index, zero + 1, zero)


@constexpr
def _window_elements(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int,
                     channels: int, first: int, total: int, zero_element: bool):
    """(index, inverse) of ``_window_element_array`` for ``RowGather`` on a (G, total*height*width + 1, 1)
    source, or, with ``zero_element`` False (no window position outside the map), on a
    (G, total*height*width, 1) source. A compile-time constant in Graph mode, cached per size in PyNative."""
    return _window_element_tables(height, width, nh, nw, step, size, offset, channels, first, total, zero_element)


def _padded_width(width: int, nw: int, step: int, size: int, offset: int, chunk: int) -> int:
    """Width of the map with ``offset`` zero columns on the left and enough on the right for the last
    window, rounded up to a multiple of ``chunk``."""
    need = max(offset + width, (nw - 1) * step + size)
    return -(-need // chunk) * chunk


@lru_cache(maxsize=256)
def _window_chunk_array(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int,
                        channels: int, first: int, total: int, chunk: int) -> np.ndarray:
    """Chunks of ``chunk`` pixels of a channels-first (total, height, padded width) map, flat as
    (total*height*padded_width/chunk + 1, chunk) with a last zero chunk, for the windows of channels
    ``first .. first+channels-1``: (nh*nw*channels*size*size/chunk,), ordered (window, channel, y, x-chunk),
    i.e. (N, channels, size*size) windows, channels first. The map is padded with ``offset`` zero
    columns on the left, so window c starts at column c*step; ``chunk`` divides step and size. A window
    row outside the map reads the zero chunk."""
    wp = _padded_width(width, nw, step, size, offset, chunk)
    per_row = wp // chunk
    ys = np.arange(nh)[:, None, None, None, None] * step - offset + np.arange(size)[None, None, None, :, None]
    xs = np.arange(nw)[None, :, None, None, None] * (step // chunk) + np.arange(size // chunk)[None, None, None, None, :]
    ch = (first + np.arange(channels))[None, None, :, None, None]
    inside = (ys >= 0) & (ys < height)
    index = np.where(inside, (ch * height + ys) * per_row + xs, total * height * per_row)
    return np.broadcast_to(index, (nh, nw, channels, size, size // chunk)).reshape(-1).astype(np.int32)


@lru_cache(maxsize=256)
def _kv_window_tables(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int,
                      dqk: int, dv: int, chunk: int):
    """(k_index, v_index, inverse) for gathers along axis 1 of a (G, rows + 1, chunk) source: the column-padded
    channels-first kv map (dqk key then dv value channels) as ``rows`` chunks, then its zero chunk.

    - k_index: per window (blocks row-major), its key chunks: the gather reshaped is (N, dqk, size*size);
    - v_index: per window, its value chunks: (N, dv, size*size);
    - inverse: of the two tables one after the other, [k_index, v_index], for the gradient of all key windows
      followed by all value windows of a g (the zero chunk gets none)."""
    total = dqk + dv
    keys = _window_chunk_array(height, width, nh, nw, step, size, offset, dqk, 0, total, chunk)
    values = _window_chunk_array(height, width, nh, nw, step, size, offset, dv, dqk, total, chunk)
    zero = total * height * _padded_width(width, nw, step, size, offset, chunk) // chunk
    return Tensor(keys), Tensor(values), inverse_table(np.concatenate((keys, values)), zero + 1, zero)


@constexpr
def _kv_windows(height: int, width: int, nh: int, nw: int, step: int, size: int, offset: int,
                dqk: int, dv: int, chunk: int):
    """``_kv_window_tables`` as compile-time constants (cached per size in PyNative)."""
    return _kv_window_tables(height, width, nh, nw, step, size, offset, dqk, dv, chunk)


@constexpr
def _kv_layout(height: int, width: int, nw: int, step: int, size: int, offset: int):
    """(chunk, left, right): the chunk width of the kv window gather and the zero columns to add."""
    chunk = math.gcd(step, size)
    return chunk, offset, _padded_width(width, nw, step, size, offset, chunk) - offset - width


@lru_cache(maxsize=256)
def _unblock_chunk_array(nh: int, nw: int, bq: int, channels: int) -> np.ndarray:
    """For each row-chunk (c, Y, X // bq) of a channels-first (channels, nh*bq, nw*bq) map, its chunk in the
    (nh*nw, channels, bq, bq) channels-first blocks, flat as chunks of bq: (channels*nh*bq*nw,)."""
    c = np.arange(channels)[:, None, None]
    y = np.arange(nh * bq)[None, :, None]
    xb = np.arange(nw)[None, None, :]
    return ((((y // bq) * nw + xb) * channels + c) * bq + y % bq).reshape(-1).astype(np.int32)


@lru_cache(maxsize=256)
def _unblock_chunk_tables(nh: int, nw: int, bq: int, channels: int):
    index = _unblock_chunk_array(nh, nw, bq, channels)
    return Tensor(index), inverse_table(index, index.size)


@constexpr
def _unblock_chunks(nh: int, nw: int, bq: int, channels: int):
    """(index, inverse) of ``_unblock_chunk_array`` (a permutation)."""
    return _unblock_chunk_tables(nh, nw, bq, channels)


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
        self.attend = AttentionCore(self.scale, self.scale_pos_embed)
        self.gather = RowGather()  # ops.gather along rows, with a gather (not a scatter) as its backward
        self.permute = RowGather(permutation=True)  # the same, for an index that is a permutation
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

        # heads into the batch. Queries: blocks as rows (N, bq*bq, dqk), one element gather from the flat
        # channels-first q map; a last zero element is appended only when blocks reach past the map.
        g = B * h
        if nh * bq == hq and nw * bq == wq:  # the blocks tile the map exactly: a permutation of q's elements
            q_index, q_inverse = _window_elements(hq, wq, nh, nw, bq, bq, 0, dqk, 0, dqk, False)
            q = self.permute(q.reshape(g, dqk * hq * wq, 1), q_index, q_inverse).reshape(n, bq * bq, dqk)
        else:
            q = ops.concat((q.reshape(g, dqk * hq * wq, 1), ops.zeros((g, 1, 1), q.dtype)), 1)
            q_index, q_inverse = _window_elements(hq, wq, nh, nw, bq, bq, 0, dqk, 0, dqk, True)
            q = self.gather(q, q_index, q_inverse).reshape(n, bq * bq, dqk)
        # keys and values: overlapping windows channels first, (N, dqk, win*win) and (N, dv, win*win), from
        # one gather of `chunk`-pixel runs (chunk = gcd(b, win)) from the kv map with zero columns added
        # left and right (window c then starts at column c*b) and a last zero chunk (rows outside the map)
        chunk, left, right = _kv_layout(H, W, nw, b, win, p)
        kv = kv.reshape(g, dqk + dv, H, W)
        if left + right > 0:
            kv = ops.concat((ops.zeros((g, dqk + dv, H, left), kv.dtype), kv,
                             ops.zeros((g, dqk + dv, H, right), kv.dtype)), 3)
        rows = (dqk + dv) * H * (W + left + right) // chunk
        # the source of AttentionCore's gathers: the map's chunks and a zero chunk (window rows outside the map)
        src = ops.concat((kv.reshape(g, rows, chunk), ops.zeros((g, 1, chunk), kv.dtype)), 1)
        k_index, v_index, kv_inverse = _kv_windows(H, W, nh, nw, b, win, p, dqk, dv, chunk)

        # the windows are cut inside AttentionCore, so that the step keeps this map for the backward and not
        # the 3x larger windows. Logits, softmax and the weighted values run in float32, the result back in the
        # compute dtype. Cast here, not only inside the Float32Cells: under amp O2/O3 in Graph mode a
        # Float32Cell's input arrives cast to float32, and AttentionCore's custom bprop then returns float32
        # gradients that autodiff cannot add to RelPosEmbed's float16 ones (AddN type error at compile time).
        out_dtype = kv.dtype
        q, src = q.astype(ms.float32), src.astype(ms.float32)
        out = self.attend(q, src, self.pos_embed(q, False), k_index, v_index, kv_inverse).astype(out_dtype)

        # blocks back to a channels-first map, rows of bq pixels at a time; queries outside the map dropped
        out_index, out_inverse = _unblock_chunks(nh, nw, bq, dv)
        out = self.permute(out.reshape(g, nh * nw * dv * bq, bq), out_index, out_inverse)
        out = out.reshape(B, h * dv, nh * bq, nw * bq)
        if nh * bq != hq or nw * bq != wq:
            out = out[:, :, :hq, :wq]
        return self.pool(out)
