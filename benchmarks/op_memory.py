"""What one op keeps for a train step in MindSpore Graph mode on CPU: peak RSS of a chain of 10 of it.

Each variant runs in its own subprocess: ``h = op(h * w)`` ten times over a (64, 4096, 64) float32
tensor (64 MB), loss = sum, gradient w.r.t. the scalar weight w; one steady step's peak RSS (the
high-water mark reset just before it). ``none`` (the multiplies alone) is the baseline; (variant -
none) / 10 / 64 MB is what one op costs, in units of its own output size.

Variants: ``transpose`` (a transpose pair, (0, 2, 1) twice), ``ops_gather`` (``ops.gather`` of a
row permutation, whose autodiff backward is a scatter-add), ``row_gather`` (the same through
``RowGather``, whose backward is a gather).

    python benchmarks/op_memory.py
"""
import json
import os
import subprocess
import sys

from bench_models import reset_peak_rss, status_mb  # this script's own folder

VARIANTS = ("none", "transpose", "ops_gather", "row_gather")
SHAPE, LAYERS = (64, 4096, 64), 10


def worker(variant):
    import numpy as np

    import mindspore as ms
    from mindspore import Parameter, Tensor, nn, ops

    from mindcv_halonet.layers.row_gather import RowGather, inverse_table

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    perm = np.random.default_rng(0).permutation(SHAPE[1]).astype(np.int32)

    class Chain(nn.Cell):
        def __init__(self):
            super().__init__()
            self.gather = RowGather()
            self.index, self.inverse = Tensor(perm), inverse_table(perm, SHAPE[1])
            self.w = Parameter(Tensor(np.ones((1,), np.float32)), name="w")

        def construct(self, x):
            h = x
            for _ in range(LAYERS):
                h = h * self.w
                if variant == "transpose":
                    h = h.transpose(0, 2, 1).transpose(0, 2, 1)
                elif variant == "ops_gather":
                    h = ops.gather(h, self.index, 1)
                elif variant == "row_gather":
                    h = self.gather(h, self.index, self.inverse)
            return h.sum()

    net = Chain()
    grad = ms.value_and_grad(net, None, net.trainable_params())

    @ms.jit
    def step(x):
        return grad(x)

    x = Tensor(np.random.default_rng(1).random(SHAPE).astype(np.float32))
    step(x)
    step(x)
    reset_peak_rss()
    step(x)
    return status_mb("VmHWM")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps({"peak_mb": worker(sys.argv[2])}), flush=True)
        return
    if len(sys.argv) > 1:
        sys.exit(f"usage: python {sys.argv[0]} (no arguments); got {sys.argv[1:]}")
    mb = SHAPE[0] * SHAPE[1] * SHAPE[2] * 4 / 2**20
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOG_v="3")
    peaks = {}
    for v in VARIANTS:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", v], capture_output=True, text=True,
                              env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        peaks[v] = json.loads(line[7:])["peak_mb"] if line else None
    print(f"chain of {LAYERS} ops on a {mb:.0f} MB float32 tensor, one steady Graph train step")
    print("| op | step peak MB | kept per op, x its output size |")
    print("|---|---:|---:|")
    for v in VARIANTS:
        p = peaks[v]
        per_op = "" if v == "none" or p is None or peaks["none"] is None else f"{(p - peaks['none']) / LAYERS / mb:.2f}"
        print(f"| {v} | {'failed' if p is None else f'{p:,.0f}'} | {per_op} |")


if __name__ == "__main__":
    main()
