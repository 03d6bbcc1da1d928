"""A/B of two source trees of this plugin in one run: the same whole-model measurement, interleaved.

Each tree is a directory that holds a ``mindcv_halonet`` package (e.g. ``git archive <rev> mindcv_halonet |
tar -x -C /tmp/base``); a measurement is one ``bench_models.py`` worker subprocess with that directory
first on ``PYTHONPATH``. For every model and repeat the trees run alternately (A, B, C, A, B, C, ...), so
that a neighbour's load on a shared machine hits both alike. Reports, per tree, the median over
repeats of the step time (each itself a median of ``--calls`` timed calls) and of the steady
train-step peak RSS, and the ratios against the first tree.

    python benchmarks/ab_trees.py --tree base=/tmp/base --tree new=/tmp/new --models halonet_h1 halonet_50t
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from bench_models import layer_bench  # this script's own folder

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "bench_models.py")


def measure_layer(path, args):
    """``bench_halo_attention.py --graph-only --halo-only`` under ``path``: forward, forward+backward (ms)
    and forward+backward / a dense bmm of the same MACs timed in the same process."""
    data = layer_bench(args, args.calls, ("--halo-only",), pythonpath=path)
    if not data["ok"]:
        return data
    fwd, fwd_bwd = data["ms_per_iter"]["HaloAttention, MindSpore Graph"]
    return {"ok": True, "seconds": fwd_bwd / 1e3, "forward_s": fwd / 1e3, "over_dense": data["fwd_bwd_over_dense_bmm"]}


def measure(path, model, task, args):
    cmd = [sys.executable, BENCH, "--worker", "mindspore", "--model", model, "--mode", "graph", "--task", task,
           "--batch", str(args.batch), "--size", str(args.size), "--threads", str(args.threads),
           "--repeats", str(args.calls)]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path), OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"ok": False, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", required=True, help="name=directory holding mindcv_halonet (twice)")
    p.add_argument("--models", nargs="+", default=["halonet_h1", "halonet_50t"],
                   help="bench_models.py models, and/or 'layer' (bench_halo_attention.py's default layer)")
    p.add_argument("--task", choices=("train", "infer"), default="train")
    p.add_argument("--repeats", type=int, default=2, help="subprocesses per tree and model")
    p.add_argument("--calls", type=int, default=3, help="timed calls per subprocess")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    trees = []
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not os.path.isdir(os.path.join(path, "mindcv_halonet")):
            p.error(f"--tree={spec!r} is invalid; expected name=directory with a mindcv_halonet package in it")
        trees.append((name, path))
    if len(trees) < 2:
        p.error(f"--tree given {len(trees)} times; expected at least 2 (the first is the baseline)")
    results = {}
    for model in args.models:
        runs = {name: [] for name, _ in trees}
        for _ in range(args.repeats):
            for name, path in trees:
                r = measure_layer(path, args) if model == "layer" else measure(path, model, args.task, args)
                runs[name].append(r)
                print(f"  {model} {name}: {r.get('seconds', r.get('error'))} s, step peak {r.get('step_peak_mb')} MB",
                      file=sys.stderr, flush=True)
        results[model] = runs
    base = trees[0][0]
    print(f"{args.task}, batch {args.batch}, {args.size} px, {args.threads} threads; medians over {args.repeats} "
          f"interleaved subprocesses of {args.calls} timed calls each; ratios against {base}")
    print("| model | tree | s | time / base | step peak MB | peak / base | first call s (layer: vs dense bmm) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, runs in results.items():
        def med(name, key):
            vals = [r[key] for r in runs[name] if r.get("ok") and r.get(key) is not None]
            return statistics.median(vals) if vals else float("nan")
        t0, m0 = med(base, "seconds"), med(base, "step_peak_mb")
        for name, _ in trees:
            t, m = med(name, "seconds"), med(name, "step_peak_mb")
            extra = (f"fwd+bwd / dense bmm {med(name, 'over_dense'):.2f}x, forward {med(name, 'forward_s'):.3f} s"
                     if model == "layer" else f"{med(name, 'first_call_s'):.1f}")
            print(f"| {model} | {name} | {t:.3f} | {t / t0:.2f} | {m:,.0f} | {m / m0:.2f} | {extra} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
