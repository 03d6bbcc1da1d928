"""Per-op profile of a steady train step, MindSpore (this plugin / MindCV) and timm side by side.

What is left of a train-step gap, by kind of kernel. For each model, one subprocess per framework runs
``--steps`` train steps (forward + cross-entropy + backward + SGD-momentum update, batch 8, 256 px,
2 threads, MindSpore in Graph mode) under its framework's profiler after two warm-up steps, and sums
the kernels' own time per step into these categories:

* ``convolution``: Conv2D and its two backward kernels (MindSpore), ``*convolution*`` (PyTorch), the
  HaloAttention layers' 1x1 projections included;
* ``batchnorm``: the BatchNorm kernels and their backward;
* ``activation``: ReLU / SiLU and their backward (MindSpore: the ops inside an activation cell, and
  ReLU / ReluGrad / Sigmoid / SigmoidGrad elsewhere; PyTorch: ``silu`` / ``relu`` / ``threshold_backward``
  / ``sigmoid``);
* ``optimizer``: the momentum update;
* ``attention``: MindSpore only, every other kernel inside a HaloAttention cell (by the op's scope).
  timm's kernels carry no module scope, so its attention kernels stay in ``other``;
* ``other``: the rest (pooling, residual adds, the classifier, the loss, casts, ...).

Also printed: the wall time of a steady step without the profiler (median of ``--steps``). The kernels'
sum is below it (framework overhead, idle waits). Writes ``--json`` and ``--md`` atomically if given.

    python benchmarks/profile_step.py --models halonet_50t resnet50 --steps 3 \
        --json benchmarks/results/profile_step.json --md benchmarks/results/profile_step.md
"""
import argparse
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench_models import TIMM_NAMES, atomic_write, median_time, mindspore_train_step, torch_train_step  # own folder

CATEGORIES = ("convolution", "batchnorm", "activation", "attention", "optimizer", "other")


def mindspore_category(op_type, full_name):
    if op_type.startswith("Conv2D"):
        return "convolution"
    if "BatchNorm" in op_type:
        return "batchnorm"
    if "Momentum" in op_type:
        return "optimizer"
    if "-HaloAttention/" in full_name:
        return "attention"
    if "/act-" in full_name or op_type in ("ReLU", "ReluGrad", "Sigmoid", "SigmoidGrad"):
        return "activation"
    return "other"


def torch_category(name):
    if "convolution" in name:
        return "convolution"
    if "batch_norm" in name:
        return "batchnorm"
    if any(k in name for k in ("silu", "relu", "threshold_backward", "sigmoid")):
        return "activation"
    if "_foreach" in name or "SGD" in name or "Optimizer" in name:
        return "optimizer"
    return "other"


def _inputs(np, batch, size):
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    return x, (np.arange(batch) % 1000).astype(np.int32)


def worker_mindspore(model, args):
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.set_seed(0)
    if model == "resnet50":
        from mindcv.models import resnet

        net = resnet.resnet50(num_classes=1000)
    else:
        import mindcv_halonet.models.halonet as ours

        net = getattr(ours, model)(num_classes=1000)
    x, y = (Tensor(a) for a in _inputs(np, args.batch, args.size))
    step = mindspore_train_step(net, x, y)
    wall = _wall(step, args.steps)
    out = tempfile.mkdtemp(prefix="profile_step_")
    try:
        prof = ms.Profiler(output_path=out)
        for _ in range(args.steps):
            step()
        prof.analyse()
        tables = glob.glob(os.path.join(out, "*", "FRAMEWORK", "cpu_op_detail_info_0.csv"))
        if not tables:
            raise RuntimeError(f"MindSpore's profiler wrote no cpu_op_detail_info_0.csv under {out}")
        totals, by_op = dict.fromkeys(CATEGORIES, 0.0), {}
        with open(tables[0]) as f:
            for row in csv.DictReader(f):
                ms_per_step = float(row["op_total_time(ms)"]) / args.steps
                cat = mindspore_category(row["op_type"], row["full_op_name"])
                totals[cat] += ms_per_step
                key = f"{cat}: {row['op_type']}"
                by_op[key] = by_op.get(key, 0.0) + ms_per_step
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return dict(wall_s=wall, categories_ms=totals, top_ops_ms=_top(by_op), version=f"mindspore {ms.__version__}")


def worker_torch(model, args):
    import numpy as np
    import timm
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = timm.create_model(TIMM_NAMES[model], num_classes=1000)
    x, y = _inputs(np, args.batch, args.size)
    step = torch_train_step(net, torch.from_numpy(x), torch.from_numpy(y).long())

    wall = _wall(step, args.steps)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    totals, by_op = dict.fromkeys(CATEGORIES, 0.0), {}
    for ev in prof.key_averages():
        ms_per_step = ev.self_cpu_time_total / 1000.0 / args.steps  # self time: wrappers are not counted twice
        cat = torch_category(ev.key)
        totals[cat] += ms_per_step
        by_op[f"{cat}: {ev.key}"] = by_op.get(f"{cat}: {ev.key}", 0.0) + ms_per_step
    return dict(wall_s=wall, categories_ms=totals, top_ops_ms=_top(by_op),
                version=f"torch {torch.__version__}, timm {timm.__version__}")


def _wall(fn, steps):
    return median_time(fn, steps, warmup=2)[0]


def _top(by_op, count=12):
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1])[:count])


def run_worker(framework, model, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--models", model,
           "--steps", str(args.steps), "--batch", str(args.batch), "--size", str(args.size),
           "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"ok": False, "error": (proc.stderr or proc.stdout).strip().splitlines()[-3:]}
    return dict(json.loads(lines[-1]), ok=True)


def table(results):
    head = ["model", "framework", "step s (no profiler)", "kernels ms"] + [f"{c} ms" for c in CATEGORIES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for model, per in results.items():
        for framework, r in per.items():
            if not r.get("ok"):
                lines.append(f"| {model} | {framework} | failed: {r.get('error')} |" + " |" * (len(head) - 3))
                continue
            cats = r["categories_ms"]
            cells = [model, framework, f"{r['wall_s']:.2f}", f"{sum(cats.values()):.0f}"]
            cells += [f"{cats[c]:.0f}" if framework == "mindspore" or c != "attention" else "(in other)"
                      for c in CATEGORIES]
            lines.append("| " + " | ".join(cells) + " |")
    ratio = ["", "MindSpore / PyTorch kernel time per category, same run:", ""]
    base = results.get("resnet50", {})
    for model, per in results.items():
        ms_r, pt_r = per.get("mindspore", {}), per.get("torch", {})
        if not (ms_r.get("ok") and pt_r.get("ok")):
            continue
        m, t = ms_r["categories_ms"], pt_r["categories_ms"]
        parts = [f"{c} {m[c] / t[c]:.2f}x" for c in ("convolution", "batchnorm", "activation") if t[c] > 0]
        line = f"- {model}: " + ", ".join(parts)
        if model != "resnet50" and base.get("mindspore", {}).get("ok") and base.get("torch", {}).get("ok"):
            # timm's attention kernels have no scope: estimate them as its `other` beyond resnet50's
            extra = t["other"] - base["torch"]["categories_ms"]["other"]
            line += (f"; attention: ours {m['attention']:.0f} ms, timm about {extra:.0f} ms (its `other` beyond "
                     f"resnet50's)")
        ratio.append(line)
    return "\n".join(lines + ratio) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["halonet_50t", "resnet50"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json")
    p.add_argument("--md")
    p.add_argument("--worker", choices=["mindspore", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    for name, value in (("--steps", args.steps), ("--batch", args.batch), ("--size", args.size),
                        ("--threads", args.threads)):
        if value < 1:
            p.error(f"{name}={value}: expected a positive integer")
    unknown = [m for m in args.models if m not in TIMM_NAMES or TIMM_NAMES[m] is None]
    if unknown:
        p.error(f"--models {unknown}: expected models timm also has, one of {sorted(m for m, t in TIMM_NAMES.items() if t)}")
    if args.worker:
        work = worker_mindspore if args.worker == "mindspore" else worker_torch
        print(json.dumps(work(args.models[0], args)))
        return
    results = {}
    for model in args.models:
        results[model] = {fw: run_worker(fw, model, args) for fw in ("mindspore", "torch")}
        print(f"{model}: " + ", ".join(f"{fw} {r.get('wall_s', float('nan')):.2f} s" for fw, r in results[model].items()),
              flush=True)
    md = (f"Train step, batch {args.batch}, {args.size} px, {args.threads} threads, kernel time per step from each "
          f"framework's profiler over {args.steps} steps after 2 warm-up steps.\n\n" + table(results))
    print(md)
    if args.json:
        atomic_write(args.json, json.dumps(results, indent=1))
    if args.md:
        atomic_write(args.md, md)


if __name__ == "__main__":
    main()
