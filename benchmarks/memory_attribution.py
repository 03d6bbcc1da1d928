"""Where the memory of a train step goes: peak RSS of one train step with parts of the model swapped out.

Every variant runs in its own subprocess (one Graph-mode train step of batch 8 at 256 px by default:
forward + cross-entropy + backward + SGD-momentum update, like ``bench_models.py``) and reports

* ``build_mb``: resident memory after the model, loss and optimizer are built (weights, framework),
* ``first_call_peak_mb``: peak RSS of the process after the first call (compile + one step),
* ``step_peak_mb``: peak RSS during one further (steady) step, the kernel's high-water mark reset
  just before it (``/proc/self/clear_refs``), so compile-time memory does not hide it,
* ``before_step_mb``: resident memory just before that step (what stays between steps).

Variants (``--variants``): ``full`` (the model as shipped), ``ms_silu`` (MindSpore's own ``nn.SiLU``
instead of the plugin's lean-backward ``SiLU``), ``relu`` (SiLU trunk -> ReLU),
``attn_proj`` (each HaloAttention replaced by its 1x1 projections only, same output shape),
``noattn_relu`` (both), ``tiny`` (framework baseline: a 1-conv net), ``resnet50`` (MindCV's),
``timm`` / ``timm_attn_proj`` (the timm peer, and the same with timm's HaloAttn cut to its
projections). Differences between variants attribute the peak to parts.

    python benchmarks/memory_attribution.py --models halonet_50t halonet_26t halonet_h1 [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

from bench_models import (TIMM_NAMES, atomic_write, mindspore_train_step, reset_peak_rss, status_mb,  # this script's own folder
                          torch_train_step)

MS_VARIANTS = ("full", "ms_silu", "relu", "attn_proj", "noattn_relu", "tiny", "resnet50")
TORCH_VARIANTS = ("timm", "timm_attn_proj")


def _measure(step, build_mb):
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    first_peak = status_mb("VmHWM")
    step()  # a second steady call so that lazily grown pools are at their size
    before = status_mb("VmRSS")
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return dict(build_mb=build_mb, first_call_peak_mb=first_peak, first_call_s=first, before_step_mb=before,
                step_peak_mb=status_mb("VmHWM") if reset else None, step_s=seconds, peak_reset=reset)


# ------------------------------------------------------------------------------------------ mindspore
def _projections_only(layer):
    """A cell with HaloAttention ``layer``'s q / kv 1x1 convs only; output = q + v, strided / pooled like
    the layer (same output shape). Built from the layer's public attributes."""
    from mindspore import nn

    class ProjectionsOnly(nn.Cell):
        def __init__(self):
            super().__init__()
            self.dqk = layer.dim_out_qk
            self.stride = layer.block_stride
            bias = layer.q.has_bias
            self.q = nn.Conv2d(layer.dim, self.dqk, 1, stride=self.stride, has_bias=bias)
            self.kv = nn.Conv2d(layer.dim, self.dqk + layer.dim_out_v, 1, has_bias=bias)
            self.pool = nn.AvgPool2d(kernel_size=2, stride=2) if layer.use_avg_pool else nn.Identity()

        def construct(self, x):
            v = self.kv(x)[:, self.dqk:]
            if self.stride == 2:
                v = v[:, :, ::2, ::2]
            return self.pool(v + self.q(x))

    return ProjectionsOnly()


def _build_ours(model, variant):
    """The model for ``variant``, through the public builder: ``HaloNet(spec)`` with the spec's activation
    replaced (``relu``; ``ms_silu`` registers MindSpore's ``nn.SiLU`` in ``blocks.ACTIVATIONS`` under its
    own name), and for ``attn_proj`` every block's ``self_attn`` attribute swapped for its projections."""
    import dataclasses

    from mindspore import nn

    from mindcv_halonet.layers import HaloAttention
    from mindcv_halonet.models import blocks
    from mindcv_halonet.models.builder import HaloNet
    from mindcv_halonet.models.halonet import model_specs

    spec = model_specs[model]
    if variant in ("relu", "noattn_relu"):
        spec = dataclasses.replace(spec, act_layer="relu")
    if variant == "ms_silu":
        blocks.ACTIVATIONS.setdefault("ms_silu", nn.SiLU)
        spec = dataclasses.replace(spec, act_layer="ms_silu")
    net = HaloNet(spec, num_classes=1000)
    if variant in ("attn_proj", "noattn_relu"):
        for _, cell in list(net.cells_and_names()):
            if isinstance(getattr(cell, "self_attn", None), HaloAttention):
                cell.self_attn = _projections_only(cell.self_attn)
        for name, param in net.parameters_and_names():  # names by attribute path, as if built that way
            param.name = name
    return net


def worker_mindspore(args):
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor, nn

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    for opt in args.ms_context:
        key, value = opt.split("=", 1)
        ms.set_context(**{key: value})
    ms.set_seed(0)
    if args.variant == "tiny":
        net = nn.SequentialCell([nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Dense(8, 1000)])
    elif args.variant == "resnet50":
        from mindcv.models import resnet

        net = resnet.resnet50(num_classes=1000)
    else:
        net = _build_ours(args.model, args.variant)
    x = Tensor(np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32))
    y = Tensor((np.arange(args.batch) % 1000).astype(np.int32))
    return _measure(mindspore_train_step(net, x, y), status_mb("VmRSS"))


# ------------------------------------------------------------------------------------------ torch
def worker_torch(args):
    import timm
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = timm.create_model(TIMM_NAMES[args.model], num_classes=1000)
    if args.variant == "timm_attn_proj":
        from timm.layers.halo_attn import HaloAttn

        class ProjectionsOnly(torch.nn.Module):
            """timm HaloAttn's q / kv 1x1 convs only; output = q + v, like ours (``_projections_only``)."""

            def __init__(self, layer):
                super().__init__()
                self.q, self.kv, self.pool = layer.q, layer.kv, layer.pool
                self.dqk, self.stride = layer.dim_out_qk, layer.block_stride

            def forward(self, x):
                v = self.kv(x)[:, self.dqk:]
                if self.stride == 2:
                    v = v[:, :, ::2, ::2]
                return self.pool(v + self.q(x))

        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, HaloAttn):
                    setattr(parent, name, ProjectionsOnly(child))
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.arange(args.batch) % 1000
    return _measure(torch_train_step(net, x, y), status_mb("VmRSS"))


def run_worker(args):
    try:
        res = worker_torch(args) if args.variant in TORCH_VARIANTS else worker_mindspore(args)
        res["ok"] = True
    except Exception as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [repr(exc)])[0][:200]}"}
    print("RESULT " + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------------ orchestrator
def spawn(args, model, variant):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", model, "--variant", variant,
           "--batch", str(args.batch), "--size", str(args.size), "--threads", str(args.threads)]
    for opt in args.ms_context:
        cmd += ["--ms-context", opt]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            break
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        res = {"ok": False, "error": f"worker exited {proc.returncode}: {tail[0][:200]}"}
    res["wall_s"] = time.perf_counter() - t0
    return res


def fmt(v):
    return "—" if v is None else f"{v:,.0f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["halonet_50t", "halonet_26t", "halonet_h1"])
    p.add_argument("--variants", nargs="+", default=["full", "relu", "attn_proj", "timm", "timm_attn_proj"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--ms-context", action="append", default=[], help="extra ms.set_context key=value (repeatable)")
    p.add_argument("--json", default="")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return run_worker(args)
    bad = [v for v in args.variants if v not in MS_VARIANTS + TORCH_VARIANTS]
    if bad:
        p.error(f"--variants {bad} invalid; expected any of {list(MS_VARIANTS + TORCH_VARIANTS)}")
    results = {}
    print("| model | variant | build MB | first call peak MB | steady step peak MB | between steps MB | step s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        for variant in args.variants:
            if variant in TORCH_VARIANTS and not TIMM_NAMES.get(model):
                continue
            r = spawn(args, model, variant)
            results[f"{model}/{variant}"] = r
            if r.get("ok"):
                print(f"| {model} | {variant} | {fmt(r['build_mb'])} | {fmt(r['first_call_peak_mb'])} | "
                      f"{fmt(r['step_peak_mb'])} | {fmt(r['before_step_mb'])} | {r['step_s']:.2f} |", flush=True)
            else:
                print(f"| {model} | {variant} | failed: {r['error']} | | | | |", flush=True)
    if args.json:
        atomic_write(args.json, json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
