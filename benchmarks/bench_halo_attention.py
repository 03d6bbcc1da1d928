"""Layer benchmark: HaloAttention forward and forward+backward, side by side in one run with

* the same layer written as plain *global* attention over the whole map (a cost yardstick),
* timm's ``HaloAttn`` on PyTorch CPU, when torch and timm are importable,
* a dense batched matmul doing the layer's MACs (the machine's ceiling for that much arithmetic).

Default shape (issue #2): N=8, C=256, H=W=32, block 8, halo 3, 8 heads, stride 1, 2 threads.
Prints a table of medians (ms/iter) and, with ``--json``, writes them atomically.

    python benchmarks/bench_halo_attention.py [--repeats 10] [--json out.json]
"""
import argparse
import json
import os
import tempfile

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from bench_models import median_time  # this script's own folder
from mindcv_halonet.layers import HaloAttention


class GlobalAttention(nn.Cell):
    """The same projections and head split as HaloAttention, attending over all H*W positions."""

    def __init__(self, dim, num_heads=8):
        super().__init__()
        self.h, self.d = num_heads, dim // num_heads
        self.q = nn.Conv2d(dim, dim, 1)
        self.kv = nn.Conv2d(dim, 2 * dim, 1)
        self.softmax = _Float32Softmax(self.d**-0.5)

    def construct(self, x):
        B, _, H, W = x.shape
        h, d = self.h, self.d
        q = self.q(x).reshape(B * h, d, H * W).transpose(0, 2, 1)
        kv = self.kv(x).reshape(B, h, 2 * d, H * W)
        k = kv[:, :, :d].reshape(B * h, d, H * W)
        v = kv[:, :, d:].reshape(B * h, d, H * W).transpose(0, 2, 1)
        attn = self.softmax(q, k).astype(v.dtype)
        return ops.bmm(attn, v).transpose(0, 2, 1).reshape(B, h * d, H, W)


class _Float32Softmax(nn.Cell):  # the benchmark runs in float32 throughout
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def construct(self, q, k):
        return ops.softmax(ops.bmm(q, k) * self.scale, -1)


class ForwardBackward(nn.Cell):
    """sum(net(x) * g) backward w.r.t. the input and every parameter."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.weights = ms.ParameterTuple(net.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)

    def construct(self, x, g):
        return self.grad(self.net, self.weights)(x, g)


class Matmul(nn.Cell):
    def construct(self, a, b):
        return ops.bmm(a, b)


def halo_macs(B, C, H, W, heads=8, block=8, halo=3):
    """Forward multiply-accumulates of HaloAttention at stride 1 (dqk = dv = C / heads)."""
    d, win = C // heads, block + 2 * halo
    n = B * heads * (H // block) * (W // block)
    proj = B * H * W * C * 3 * C  # q (C) + kv (2C) 1x1 convs
    attn = n * block**2 * win**2 * 2 * d  # q.k and attn.v
    rel = n * block**2 * win * 2 * d  # q . height_rel, q . width_rel
    return proj + attn + rel


def time_ms(fn, repeats, warmup=2):
    """Median milliseconds per call of ``fn`` after ``warmup`` calls (bench_models' timer)."""
    return median_time(fn, repeats, warmup)[0] * 1e3


def sync(out):
    if isinstance(out, (tuple, list)):
        for o in out:
            sync(o)
    else:
        out.asnumpy()


def bench_mindspore(kind, mode, args):
    ms.set_context(mode=mode)
    ms.set_seed(0)
    B, C, S = args.batch, args.channels, args.size
    net = HaloAttention(C, num_heads=8, block_size=8, halo_size=3) if kind == "halo" else GlobalAttention(C, 8)
    x = Tensor(np.random.default_rng(0).standard_normal((B, C, S, S)).astype(np.float32))
    g = ops.ones_like(net(x))
    fb = ForwardBackward(net)
    fwd = time_ms(lambda: sync(net(x)), args.repeats)
    fwdbwd = time_ms(lambda: sync(fb(x, g)), args.repeats)
    return fwd, fwdbwd


def bench_matmul(macs, mode, args):
    """A dense fp32 bmm of (b, 512, 512) x (b, 512, 512) with b chosen to match ``macs``."""
    ms.set_context(mode=mode)
    b = max(1, round(macs / 512**3))
    a = Tensor(np.random.default_rng(0).standard_normal((b, 512, 512)).astype(np.float32))
    mm = Matmul()
    return time_ms(lambda: sync(mm(a, a)), args.repeats) * macs / (b * 512**3)


def bench_timm(args):
    try:
        import torch
        from timm.layers.halo_attn import HaloAttn
    except Exception as exc:  # torch/timm are optional for this benchmark
        return None, f"not installed ({type(exc).__name__})"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, C, S = args.batch, args.channels, args.size
    layer = HaloAttn(C, num_heads=8, block_size=8, halo_size=3)
    x = torch.randn(B, C, S, S, requires_grad=True)

    def fwd():
        with torch.no_grad():
            layer(x)

    def fwdbwd():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return (time_ms(fwd, args.repeats), time_ms(fwdbwd, args.repeats)), "torch " + torch.__version__


def atomic_write_json(path, data):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="")
    p.add_argument("--graph-only", action="store_true", help="skip the PyNative rows")
    p.add_argument("--halo-only", action="store_true", help="skip global attention and timm (HaloAttention + dense bmm)")
    p.add_argument("--skip-global", action="store_true",
                   help="skip global attention only (its logits grow with the square of the pixels: 4.3 GB at 64x64)")
    args = p.parse_args(argv)
    for name in ("batch", "channels", "size", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)} must be >= 1")
    if args.size % 8 or args.channels % 8:
        p.error(f"--size={args.size} and --channels={args.channels} must be multiples of 8 (block 8, 8 heads)")

    ms.set_context(device_target="CPU")
    macs = halo_macs(args.batch, args.channels, args.size, args.size)
    rows = {}
    modes = (("Graph", ms.GRAPH_MODE),) if args.graph_only else (("PyNative", ms.PYNATIVE_MODE), ("Graph", ms.GRAPH_MODE))
    for mode_name, mode in modes:
        rows[f"HaloAttention, MindSpore {mode_name}"] = bench_mindspore("halo", mode, args)
        if not (args.halo_only or args.skip_global):
            rows[f"global attention, MindSpore {mode_name}"] = bench_mindspore("global", mode, args)
    mm_fwd = bench_matmul(macs, ms.GRAPH_MODE, args)
    rows["dense bmm, same MACs (fwd) / 3x MACs (fwd+bwd)"] = (mm_fwd, 3 * mm_fwd)
    timm, timm_note = (None, "skipped (--halo-only)") if args.halo_only else bench_timm(args)
    rows[f"timm HaloAttn, PyTorch CPU ({timm_note})"] = timm

    print(f"\nHaloAttention N={args.batch} C={args.channels} {args.size}x{args.size} block 8 halo 3 heads 8 stride 1; "
          f"forward {macs / 1e9:.3f} GMAC; medians of {args.repeats}, ms/iter")
    print(f"| {'implementation':62s} | {'forward':>9s} | {'fwd+bwd':>9s} |")
    print(f"|{'-' * 64}|{'-' * 11}|{'-' * 11}|")
    for name, val in rows.items():
        f, fb = ("not installed", "not installed") if val is None else (f"{val[0]:.2f}", f"{val[1]:.2f}")
        print(f"| {name:62s} | {f:>9s} | {fb:>9s} |")
    graph = rows["HaloAttention, MindSpore Graph"]
    print(f"\nGraph fwd+bwd / dense bmm of 3x forward MACs: {graph[1] / (3 * mm_fwd):.2f}x")
    if not (args.halo_only or args.skip_global):
        print(f"global / halo (Graph, fwd+bwd): {rows['global attention, MindSpore Graph'][1] / graph[1]:.2f}x")
    if timm is not None:
        print(f"ours (Graph) / timm: forward {graph[0] / timm[0]:.2f}x time, fwd+bwd {graph[1] / timm[1]:.2f}x time")
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "forward_gmac": macs / 1e9,
                                      "ms_per_iter": {k: v for k, v in rows.items()},
                                      "fwd_bwd_over_dense_bmm": graph[1] / (3 * mm_fwd)})


if __name__ == "__main__":
    main()
