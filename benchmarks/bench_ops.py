"""Single ops of a HaloNet train step, timed in isolation in MindSpore (Graph) and PyTorch, side by side.

What is left of a train-step gap once the model code is the same function: the frameworks' own CPU
kernels. Each op runs forward + backward (gradient w.r.t. the input and any weight) at a shape it has
in ``halonet_50t`` at 256 px, batch 8, one subprocess per (op, framework), medians of ``--repeats``
after warm-up, ``--threads`` threads in both.

    python benchmarks/bench_ops.py [--repeats 10] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys

from bench_models import atomic_write, median_time  # this script's own folder

# name -> (kind, input shape (N, C, H, W), extra); shapes as in halonet_50t's stages at 256 px, batch 8
OPS = {
    "conv3x3 64->64 @64x64": ("conv", (8, 64, 64, 64), dict(cout=64, k=3)),
    "conv1x1 256->64 @64x64": ("conv", (8, 256, 64, 64), dict(cout=64, k=1)),
    "conv3x3 256->256 @16x16": ("conv", (8, 256, 16, 16), dict(cout=256, k=3)),
    "SiLU @256x64x64": ("silu", (8, 256, 64, 64), {}),
    "ReLU @256x64x64": ("relu", (8, 256, 64, 64), {}),
    "BatchNorm (train) @256x64x64": ("bn", (8, 256, 64, 64), {}),
}


def _median(fn, repeats):
    return median_time(fn, repeats, warmup=2)[0]


def worker_mindspore(kind, shape, extra, repeats):
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor, nn

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    c = shape[1]
    if kind == "conv":
        net = nn.Conv2d(c, extra["cout"], extra["k"], pad_mode="pad", padding=extra["k"] // 2)
    elif kind == "silu":
        from mindcv_halonet.layers import SiLU

        net = SiLU()
    elif kind == "relu":
        net = nn.ReLU()
    else:
        net = nn.BatchNorm2d(c)
    net.set_train(True)
    x = Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))

    class SumOf(nn.Cell):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def construct(self, t):
            return self.inner(t).sum()

    loss = SumOf(net)
    grad = ms.value_and_grad(loss, 0, loss.trainable_params() or None)

    @ms.jit
    def step(t):
        return grad(t)

    def fn():
        out = step(x)
        out[0].asnumpy()

    return _median(fn, repeats)


def worker_torch(kind, shape, extra, repeats, threads):
    import torch

    torch.set_num_threads(threads)
    c = shape[1]
    if kind == "conv":
        net = torch.nn.Conv2d(c, extra["cout"], extra["k"], padding=extra["k"] // 2)
    elif kind == "silu":
        net = torch.nn.SiLU()
    elif kind == "relu":
        net = torch.nn.ReLU()
    else:
        net = torch.nn.BatchNorm2d(c)
    net.train()
    x = torch.randn(*shape, requires_grad=True)

    def fn():
        x.grad = None
        net.zero_grad(set_to_none=True)
        net(x).sum().backward()

    return _median(fn, repeats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # op name, framework
    args = p.parse_args(argv)
    for name in ("repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name}={getattr(args, name)} is invalid; expected an integer >= 1")
    if args.worker:
        name, fw = args.worker
        kind, shape, extra = OPS[name]
        s = worker_mindspore(kind, shape, extra, args.repeats) if fw == "mindspore" else \
            worker_torch(kind, shape, extra, args.repeats, args.threads)
        print("RESULT " + json.dumps({"seconds": s}), flush=True)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
    results = {}
    print(f"forward + backward, medians of {args.repeats}, {args.threads} threads, ms per call")
    print("| op | MindSpore Graph ms | PyTorch ms | MindSpore / PyTorch time |")
    print("|---|---:|---:|---:|")
    for name in OPS:
        row = {}
        for fw in ("mindspore", "torch"):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--repeats", str(args.repeats),
                                   "--threads", str(args.threads), "--worker", name, fw],
                                  capture_output=True, text=True, env=env)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            row[fw] = json.loads(line[7:])["seconds"] if line else None
            if line is None:
                row[fw + "_error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        results[name] = row
        ms_t, pt_t = row["mindspore"], row["torch"]
        ratio = f"{ms_t / pt_t:.2f}" if ms_t and pt_t else "—"
        fmt = lambda v: "failed" if v is None else f"{v * 1e3:.1f}"  # noqa: E731
        print(f"| {name} | {fmt(ms_t)} | {fmt(pt_t)} | {ratio} |", flush=True)
    if args.json:
        atomic_write(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
