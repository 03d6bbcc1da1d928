"""What one HaloAttention layer keeps for a train step: the slope of the step's peak RSS over stacked layers.

A stack of ``L`` layers, by default at the shape of halonet_h1's first stage (batch 8, 64 channels, 64x64, 8 heads,
block 8, halo 3: N = 4,096 problems of 64 queries x 196 keys) runs one steady train step (loss = sum,
gradients of every parameter and the input) for L = 1 and L = 4, one subprocess each, ours (MindSpore
Graph) and timm's ``HaloAttn`` (PyTorch). (peak(4) - peak(1)) / 3 is what one layer keeps until the
backward; peak(1) minus the framework's own footprint is mostly one layer's transient.

For comparison it prints what the layer's backward needs at least: its input, the q/kv projections and
the output (the windows, relative logits and weights can all be recomputed from them).

    python benchmarks/layer_memory.py [--batch 8] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys

from bench_models import reset_peak_rss, status_mb  # this script's own folder

SHAPE = dict(channels=64, size=64, heads=8, block=8, halo=3)


def ours(layers, batch):
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor, nn

    from mindcv_halonet.layers import HaloAttention

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    c = SHAPE["channels"]

    class Stack(nn.Cell):
        def __init__(self):
            super().__init__()
            self.layers = nn.CellList([HaloAttention(c, c, num_heads=SHAPE["heads"], block_size=SHAPE["block"],
                                                     halo_size=SHAPE["halo"]) for _ in range(layers)])

        def construct(self, x):
            for layer in self.layers:
                x = layer(x)
            return x.sum()

    net = Stack()
    grad = ms.value_and_grad(net, 0, net.trainable_params())

    @ms.jit
    def step(x):
        return grad(x)

    x = Tensor(np.random.default_rng(0).standard_normal((batch, c, SHAPE["size"], SHAPE["size"])).astype(np.float32))
    step(x)
    step(x)
    reset_peak_rss()
    step(x)
    return status_mb("VmHWM")


def timm(layers, batch):
    import torch
    from timm.layers.halo_attn import HaloAttn

    c = SHAPE["channels"]
    net = torch.nn.Sequential(*[HaloAttn(c, c, num_heads=SHAPE["heads"], block_size=SHAPE["block"],
                                         halo_size=SHAPE["halo"]) for _ in range(layers)])
    x = torch.randn(batch, c, SHAPE["size"], SHAPE["size"], requires_grad=True)

    def step():
        net.zero_grad(set_to_none=True)
        x.grad = None
        net(x).sum().backward()

    step()
    step()
    reset_peak_rss()
    step()
    return status_mb("VmHWM")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, default=SHAPE["channels"], help="64 (h1 stage 1); h1 stage 3: 256 at --size 16")
    p.add_argument("--size", type=int, default=SHAPE["size"], help="input height and width (a multiple of 8)")
    p.add_argument("--worker", choices=("ours", "timm"), help=argparse.SUPPRESS)
    p.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    for name in ("batch", "threads", "channels", "size"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)} is invalid; expected an integer >= 1")
    if args.channels % SHAPE["heads"] or args.size % SHAPE["block"]:
        p.error(f"--channels={args.channels} / --size={args.size} is invalid; expected channels a multiple of "
                f"{SHAPE['heads']} and size a multiple of {SHAPE['block']}")
    SHAPE.update(channels=args.channels, size=args.size)
    if args.worker:
        if args.worker == "timm":
            import torch
            torch.set_num_threads(args.threads)
        peak = (ours if args.worker == "ours" else timm)(args.layers, args.batch)
        print("RESULT " + json.dumps({"peak_mb": peak}), flush=True)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
    peaks = {}
    for worker in ("ours", "timm"):
        for layers in (1, 4):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--layers", str(layers),
                   "--batch", str(args.batch), "--threads", str(args.threads), "--channels", str(args.channels),
                   "--size", str(args.size)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            peaks[(worker, layers)] = json.loads(line[-1][7:])["peak_mb"] if line else None
            if not line:
                print(f"{worker} x{layers} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    b, c, s, h = args.batch, SHAPE["channels"], SHAPE["size"], SHAPE["heads"]
    win, bq = SHAPE["block"] + 2 * SHAPE["halo"], SHAPE["block"]
    n = b * h * (s // bq) ** 2
    full = n * bq * bq * win * win * 4 / 2**20
    needed = b * c * s * s * 4 * (1 + 1 + 2 + 1) / 2**20  # input, q, kv (2x), output
    print(f"stack of HaloAttention layers, batch {b}, {c} channels, {s}x{s}, {h} heads, block {bq}, halo "
          f"{SHAPE['halo']}; one steady train step; peak RSS MB\n")
    print("| implementation | 1 layer | 4 layers | kept per layer |")
    print("|---|---:|---:|---:|")
    for worker, label in (("ours", "HaloAttention, MindSpore Graph (ours)"), ("timm", "timm HaloAttn, PyTorch")):
        one, four = peaks[(worker, 1)], peaks[(worker, 4)]
        per = (four - one) / 3 if one and four else None
        print(f"| {label} | {one or float('nan'):,.0f} | {four or float('nan'):,.0f} | "
              f"{per if per is not None else float('nan'):,.0f} |")
    print(f"\nOne (N, bq*bq, win*win) float32 tensor (logits or weights) here: {full:,.0f} MB; the input, q, kv and "
          f"output maps together: {needed:,.0f} MB.")


if __name__ == "__main__":
    main()
