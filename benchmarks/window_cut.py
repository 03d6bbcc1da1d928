"""Two ways to cut HaloAttention's overlapping key/value windows, timed side by side (MindSpore Graph, CPU).

The windows are what ``AttentionCore`` cuts twice per train step (forward and backward) from the
channels-first kv map; on h1's first stage this gather is the largest kernel of the step. Both ways
give (N, C, win*win) windows from a (G, C, H, W) map and the gradient back to the map:

- ``chunks`` (what the layer does): one gather of ``gcd(b, win)``-pixel runs from the map padded with
  zero columns (2-pixel runs for b = 8, win = 14); backward: ``gather_backward`` of the same table;
- ``bands`` (the two-stage cut): first the column band of every block column, (G, C, H, nw, win), from
  ceil(win / b) strided slices and a concat; then one gather of whole ``win``-pixel band rows; backward:
  ``gather_backward`` to the bands, then the slices' gradient summed back into the map.

Both are checked against each other (windows equal, gradients within 1e-5) before timing. The parts are
timed too: each way's gather alone, and the band construction alone. All seven are timed in turn, one call of
each per round, and the medians over the rounds are printed. Default shape: halonet_h1's first
stage at batch 8 (64 problems per map, 8 key and 8 value channels, 64x64, block 8, halo 3).

    OMP_NUM_THREADS=2 python benchmarks/window_cut.py [--batch-heads 64 --size 64 --repeats 10]
"""
import argparse
import math
import statistics
import time

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindcv_halonet.layers.row_gather import gather_backward, inverse_table


def chunk_tables(a):
    """(k_index, v_index, inverse, chunk, padded width) of the one-stage cut: rows of ``chunk`` pixels of the
    (C, H, Wp) map padded with ``halo`` zero columns on the left, then one zero row."""
    b, p, win, nh, nw, c = a.block, a.halo, a.win, a.nh, a.nw, a.dqk + a.dv
    chunk = math.gcd(b, win)
    wp = -(-max(p + a.size, (nw - 1) * b + win) // chunk) * chunk
    zero = c * a.size * wp // chunk
    r, cc = np.arange(nh)[:, None, None, None, None], np.arange(nw)[None, :, None, None, None]
    ky, j = np.arange(win)[None, None, None, :, None], np.arange(win // chunk)[None, None, None, None, :]

    def table(first, channels):
        ch = (first + np.arange(channels))[None, None, :, None, None]
        y = r * b - p + ky
        idx = np.where((y >= 0) & (y < a.size), ((ch * a.size + y) * wp + cc * b + j * chunk) // chunk, zero)
        return np.broadcast_to(idx, (nh, nw, channels, win, win // chunk)).reshape(-1).astype(np.int32)

    keys, values = table(0, a.dqk), table(a.dqk, a.dv)
    return Tensor(keys), Tensor(values), inverse_table(np.concatenate((keys, values)), zero + 1, zero), chunk, wp


def band_tables(a):
    """(k_index, v_index, inverse) of the two-stage cut: rows of the (C, H, nw, win) bands, then a zero row."""
    b, p, win, nh, nw, c = a.block, a.halo, a.win, a.nh, a.nw, a.dqk + a.dv
    zero = c * a.size * nw
    r, cc = np.arange(nh)[:, None, None, None], np.arange(nw)[None, :, None, None]
    ky = np.arange(win)[None, None, None, :]

    def table(first, channels):
        ch = (first + np.arange(channels))[None, None, :, None]
        y = r * b - p + ky
        idx = np.where((y >= 0) & (y < a.size), (ch * a.size + y) * nw + cc, zero)
        return np.broadcast_to(idx, (nh, nw, channels, win)).reshape(-1).astype(np.int32)

    keys, values = table(0, a.dqk), table(a.dqk, a.dv)
    return Tensor(keys), Tensor(values), inverse_table(np.concatenate((keys, values)), zero + 1, zero)


def pad_columns(kv, left, width):
    """(G, C, H, W) -> (G, C, H, width): ``left`` zero columns, the map, zero columns up to ``width``."""
    g, c, h, w = kv.shape
    return ops.concat((ops.zeros((g, c, h, left), kv.dtype), kv, ops.zeros((g, c, h, width - left - w), kv.dtype)), 3)


def windows_from_rows(rows, k_index, v_index, n, win):
    """Rows (G, L, run) plus a zero row, gathered by the key and the value table: (N, dqk, win*win), (N, dv, win*win)."""
    g, _, run = rows.shape
    src = ops.concat((rows, ops.zeros((g, 1, run), rows.dtype)), 1)
    return (ops.gather(src, k_index, 1).reshape(n, -1, win * win),
            ops.gather(src, v_index, 1).reshape(n, -1, win * win))


class ChunkCut(nn.Cell):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.k_index, self.v_index, _, self.chunk, self.wp = chunk_tables(a)

    def construct(self, kv):
        a, g = self.a, kv.shape[0]
        rows = pad_columns(kv, a.halo, self.wp).reshape(g, -1, self.chunk)
        return windows_from_rows(rows, self.k_index, self.v_index, g * a.nh * a.nw, a.win)


class ChunkCutBackward(nn.Cell):
    def __init__(self, a):
        super().__init__()
        self.a = a
        _, _, self.inverse, self.chunk, self.wp = chunk_tables(a)

    def construct(self, dk, dv):
        a, chunk = self.a, self.chunk
        g = dk.shape[0] // (a.nh * a.nw)
        dkv = ops.concat((dk.reshape(g, -1, chunk), dv.reshape(g, -1, chunk), ops.zeros((g, 1, chunk), dk.dtype)), 1)
        d = gather_backward(dkv, self.inverse, padded=True)[:, :-1]
        return d.reshape(g, a.dqk + a.dv, a.size, self.wp)[:, :, :, a.halo:a.halo + a.size]


class Bands(nn.Cell):
    """(G, C, H, W) -> the column bands (G, C*H*nw, win): strided slices of the padded map and one concat."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        self.pieces = -(-a.win // a.block)
        self.wp = (a.nw + self.pieces - 1) * a.block

    def construct(self, kv):
        a, g = self.a, kv.shape[0]
        c, s, b = a.dqk + a.dv, a.size, a.block
        kv = pad_columns(kv, a.halo, self.wp)
        pieces = ()
        for j in range(self.pieces):
            piece = kv[:, :, :, j * b:(j + a.nw) * b].reshape(g, c, s, a.nw, b)
            if (j + 1) * b > a.win:
                piece = piece[:, :, :, :, :a.win - j * b]
            pieces = pieces + (piece,)
        return ops.concat(pieces, 4).reshape(g, c * s * a.nw, a.win)


class BandCut(nn.Cell):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.bands = Bands(a)
        self.k_index, self.v_index, _ = band_tables(a)

    def construct(self, kv):
        a = self.a
        return windows_from_rows(self.bands(kv), self.k_index, self.v_index, kv.shape[0] * a.nh * a.nw, a.win)


class BandCutBackward(nn.Cell):
    def __init__(self, a):
        super().__init__()
        self.a = a
        _, _, self.inverse = band_tables(a)
        self.pieces = -(-a.win // a.block)

    def construct(self, dk, dv):
        a, b, win, nw = self.a, self.a.block, self.a.win, self.a.nw
        c, s = a.dqk + a.dv, a.size
        g = dk.shape[0] // (a.nh * nw)
        dkv = ops.concat((dk.reshape(g, -1, win), dv.reshape(g, -1, win), ops.zeros((g, 1, win), dk.dtype)), 1)
        d = gather_backward(dkv, self.inverse, padded=True)[:, :-1].reshape(g, c, s, nw, win)
        total = None
        for j in range(self.pieces):  # band column j*b + t of block column m came from map column (m + j)*b + t
            width = min(b, win - j * b)
            piece = d[:, :, :, :, j * b:j * b + width]
            if width < b:
                piece = ops.concat((piece, ops.zeros((g, c, s, nw, b - width), d.dtype)), 4)
            parts = (piece.reshape(g, c, s, nw * b),)
            if j:
                parts = (ops.zeros((g, c, s, j * b), d.dtype),) + parts
            if j < self.pieces - 1:
                parts = parts + (ops.zeros((g, c, s, (self.pieces - 1 - j) * b), d.dtype),)
            piece = ops.concat(parts, 3) if len(parts) > 1 else parts[0]
            total = piece if total is None else total + piece
        return total[:, :, :, a.halo:a.halo + s]


class Gather(nn.Cell):
    def __init__(self, k_index, v_index):
        super().__init__()
        self.k_index, self.v_index = k_index, v_index

    def construct(self, src):
        return ops.gather(src, self.k_index, 1), ops.gather(src, self.v_index, 1)


def _run(fn, args):
    out = fn(*args)
    (out[0] if isinstance(out, tuple) else out).asnumpy()


def interleaved_ms(calls, repeats):
    """Median ms of each (fn, args) in ``calls``, timed in turn (one call of each per round, ``repeats`` rounds
    after one warm-up round), so that load on a shared machine hits all of them alike."""
    for fn, args in calls:
        _run(fn, args)
    times = [[] for _ in calls]
    for _ in range(repeats):
        for i, (fn, args) in enumerate(calls):
            start = time.perf_counter()
            _run(fn, args)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) * 1e3 for t in times]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-heads", type=int, default=64, help="G = batch * heads (default 64: batch 8, 8 heads)")
    p.add_argument("--dqk", type=int, default=8)
    p.add_argument("--dv", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="square map side, a multiple of --block")
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--halo", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    for name in ("batch_heads", "dqk", "dv", "size", "block", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(a, name)} is invalid; expected an integer >= 1")
    if a.halo < 0 or a.size % a.block or 2 * a.halo > a.block:
        p.error(f"--size={a.size} --block={a.block} --halo={a.halo}: expected size a multiple of block and "
                f"0 <= 2*halo <= block (the bands' slices assume it)")
    a.win, a.nh = a.block + 2 * a.halo, a.size // a.block
    a.nw = a.nh
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")

    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((a.batch_heads, a.dqk + a.dv, a.size, a.size)).astype(np.float32))
    chunk_cut, band_cut = ChunkCut(a), BandCut(a)
    kc, vc = chunk_cut(x)
    kb, vb = band_cut(x)
    if not (np.array_equal(kc.asnumpy(), kb.asnumpy()) and np.array_equal(vc.asnumpy(), vb.asnumpy())):
        raise SystemExit("window_cut: the two cuts give different windows")
    dk = Tensor(rng.standard_normal(kc.shape).astype(np.float32))
    dv = Tensor(rng.standard_normal(vc.shape).astype(np.float32))
    chunk_back, band_back = ChunkCutBackward(a), BandCutBackward(a)
    gap = float(np.abs(chunk_back(dk, dv).asnumpy() - band_back(dk, dv).asnumpy()).max())
    if gap > 1e-5:
        raise SystemExit(f"window_cut: the two backwards differ by {gap:.2e} (max abs)")

    kci, vci, _, chunk, wp = chunk_tables(a)
    kbi, vbi, _ = band_tables(a)
    chunk_src = Tensor(rng.standard_normal((a.batch_heads, (a.dqk + a.dv) * a.size * wp // chunk + 1, chunk))
                       .astype(np.float32))
    band_src = Tensor(rng.standard_normal((a.batch_heads, (a.dqk + a.dv) * a.size * a.nw + 1, a.win))
                      .astype(np.float32))
    fwd_c, fwd_b, bwd_c, bwd_b, gat_c, gat_b, band = interleaved_ms(
        [(chunk_cut, (x,)), (band_cut, (x,)), (chunk_back, (dk, dv)), (band_back, (dk, dv)),
         (Gather(kci, vci), (chunk_src,)), (Gather(kbi, vbi), (band_src,)), (Bands(a), (x,))], a.repeats)
    rows = [("forward (pad, gathers)", fwd_c, fwd_b), ("backward", bwd_c, bwd_b),
            ("the two gathers alone", gat_c, gat_b), ("band construction alone", 0.0, band)]
    mb = kc.nbytes * (1 + a.dv / a.dqk) / 2**20
    print(f"window cut, G={a.batch_heads}, {a.dqk}+{a.dv} channels, {a.size}x{a.size}, block {a.block}, halo "
          f"{a.halo}: windows {mb:.0f} MB; chunks of {chunk} px vs bands of {a.win} px; medians of {a.repeats} "
          f"interleaved rounds, MindSpore {ms.__version__} Graph, CPU")
    print("| part | chunks ms | bands ms | bands / chunks |\n|---|---:|---:|---:|")
    for name, c, b in rows:
        print(f"| {name} | {c:.1f} | {b:.1f} | {b / c:.2f} |" if c else f"| {name} | - | {b:.1f} | - |")
    total_c, total_b = rows[0][1] + rows[1][1], rows[0][2] + rows[1][2]
    print(f"| forward + backward | {total_c:.1f} | {total_b:.1f} | {total_b / total_c:.2f} |")


if __name__ == "__main__":
    main()
