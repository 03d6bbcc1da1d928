"""Whole-model benchmark: this plugin's HaloNets against timm on PyTorch CPU, side by side in one run.

For each model (default ``halonet_50t``, ``halonet_26t``, ``resnet50`` as the frameworks' own
baseline, and the all-attention ``halonet_h1``, plus ``halonet_h0`` / ``halonet_h2``, which timm does
not have) at 256x256, batch 8, it measures in a fresh subprocess per configuration:

* inference img/s (eval mode, forward only),
* train-step img/s (forward + cross-entropy + backward + SGD-momentum update),
* peak resident memory of that subprocess (``ru_maxrss``; includes the framework itself), and the
  peak of one steady train step alone (the kernel's high-water mark reset just before it),
* the first train call (for MindSpore Graph: compile + one step) and the compile time (first call
  minus a steady call).

The layer alone follows (``bench_halo_attention.py --graph-only`` in a subprocess: HaloAttention
against global attention, timm's HaloAttn and a dense bmm of the same MACs). A scaling table follows: the Graph train step of ``--scaling-model`` (halonet_50t) and of timm at
``--scaling-sizes`` (224, 256, 320, 384 px), time and peak RSS, and how each grows with pixel count.

Peers: MindSpore PyNative, MindSpore Graph, timm on PyTorch CPU (``halonet50ts`` / ``halonet26t`` /
``resnet50``), and MindCV's built-in ``halonet_50t`` (reported as unsupported where it fails), and a
dense fp32 batched matmul doing the model's forward MACs (x3 for a train step) as the machine's
ceiling. Medians of ``--repeats`` timed calls after warm-up. Writes ``<out>/models.json``,
``<out>/models.md`` and ``<out>/models.png`` (atomically).

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_models.py [--repeats 5] [--out benchmarks/results]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: our model -> timm's (None: timm has no such model; ours is measured alone)
TIMM_NAMES = {"halonet_50t": "halonet50ts", "halonet_26t": "halonet26t", "halonet_h1": "halonet_h1", "resnet50": "resnet50",
              "halonet_h0": None, "halonet_h2": None, "halonet_h3": None, "halonet_h4": None}
#: the H family at the paper's resolutions (``--h-family`` table)
H_SIZES = {"halonet_h0": 256, "halonet_h1": 256, "halonet_h2": 256, "halonet_h3": 320, "halonet_h4": 384}
NO_TIMM = "timm has no such model"


# ------------------------------------------------------------------------------------------ workers
def median_time(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def status_mb(field):
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak since start or reset), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def steady_step_peak_mb(fn):
    """Peak RSS of one call of ``fn`` alone (after warm-up calls), or None where it cannot be reset."""
    if not reset_peak_rss():
        return None
    fn()
    return status_mb("VmHWM")


def mindspore_train_step(net, x, y):
    """The benchmarks' MindSpore train step on (x, y): mean sparse cross-entropy, backward, SGD-momentum update
    (lr 0.01, momentum 0.9), as a closure that returns the loss as NumPy."""
    from mindspore import nn

    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    step.set_train(True)
    return lambda: step(x, y).asnumpy()


def torch_train_step(net, x, y):
    """The same step for a PyTorch model: cross-entropy, backward, SGD with momentum 0.9, lr 0.01."""
    import torch

    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        crit(net(x), y).backward()
        opt.step()

    return step


def worker_mindspore(model_name, mode_name, task, args):
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor

    ms.set_context(mode=ms.GRAPH_MODE if mode_name == "graph" else ms.PYNATIVE_MODE, device_target="CPU")
    ms.set_seed(0)
    if model_name == "mindcv_builtin_halonet_50t":
        from mindcv.models import halonet as builtin

        net = builtin.halonet_50t(num_classes=1000)
    elif model_name == "resnet50":
        from mindcv.models import resnet

        net = resnet.resnet50(num_classes=1000)
    else:
        import mindcv_halonet.models.halonet as ours

        net = getattr(ours, model_name)(num_classes=1000)
    x = Tensor(np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32))
    y = Tensor((np.arange(args.batch) % 1000).astype(np.int32))
    result = {}
    if task == "infer":
        net.set_train(False)
        fn = lambda: net(x).asnumpy()  # noqa: E731
    else:
        fn = mindspore_train_step(net, x, y)
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    med, samples = median_time(fn, args.repeats, warmup=1)
    result.update(seconds=med, samples=samples, first_call_s=first)
    if mode_name == "graph":
        result["compile_s"] = max(0.0, first - med)
    if task == "train":
        result["peak_rss_before_step_mb"] = _peak_rss_mb()
        result["step_peak_mb"] = steady_step_peak_mb(fn)
    return result


def worker_torch(model_name, task, args):
    import timm
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = timm.create_model(TIMM_NAMES[model_name], num_classes=1000)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.arange(args.batch) % 1000
    if task == "infer":
        net.eval()

        def fn():
            with torch.no_grad():
                net(x)
    else:
        fn = torch_train_step(net, x, y)

    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    med, samples = median_time(fn, args.repeats, warmup=1)
    result = dict(seconds=med, samples=samples, first_call_s=first, version=f"torch {torch.__version__}, timm {timm.__version__}")
    if task == "train":
        result["step_peak_mb"] = steady_step_peak_mb(fn)
    return result


def worker_matmul(framework, macs, args):
    """A dense fp32 (b, 512, 512) @ (b, 512, 512) with b*512^3 ~= macs; returns seconds per ``macs``."""
    import numpy as np

    b = max(1, round(macs / 512**3))
    a = np.random.default_rng(0).standard_normal((b, 512, 512)).astype(np.float32)
    if framework == "torch":
        import torch

        torch.set_num_threads(args.threads)
        ta = torch.from_numpy(a)
        fn = lambda: torch.bmm(ta, ta)  # noqa: E731
    else:
        import mindspore as ms
        from mindspore import Tensor, nn, ops

        ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")

        class Bmm(nn.Cell):
            def construct(self, p, q):
                return ops.bmm(p, q)

        mm, ta = Bmm(), Tensor(a)
        fn = lambda: mm(ta, ta).asnumpy()  # noqa: E731
    med, _ = median_time(fn, args.repeats, warmup=2)
    return dict(seconds=med * macs / (b * 512**3))


def worker_macs(model_name, args):
    from mindcv_halonet.models.complexity import count_macs

    if model_name == "resnet50":
        from mindcv.models import resnet

        net = resnet.resnet50(num_classes=1000)
    else:
        import mindcv_halonet.models.halonet as ours

        net = getattr(ours, model_name)(num_classes=1000)
    return dict(macs_per_image=count_macs(net, (3, args.size, args.size)))


def run_worker(args):
    kind = args.worker
    try:
        if kind == "mindspore":
            res = worker_mindspore(args.model, args.mode, args.task, args)
        elif kind == "torch":
            res = worker_torch(args.model, args.task, args)
        elif kind == "matmul":
            res = worker_matmul(args.mode, args.macs, args)
        elif kind == "macs":
            res = worker_macs(args.model, args)
        else:
            raise ValueError(f"--worker={kind!r}; expected mindspore, torch, matmul or macs")
        res["ok"] = True
    except Exception as exc:  # reported in the table, e.g. MindCV's built-in model on CPU
        res = {"ok": False, "error": describe_error(exc)}
    res["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(res), flush=True)


def describe_error(exc):
    """One line: the exception type and message, or (a bare ``assert``) the failing source line."""
    import traceback

    lines = str(exc).strip().splitlines()
    if lines:
        return f"{type(exc).__name__}: {lines[0][:200]}"
    frames = traceback.extract_tb(exc.__traceback__)
    # torch._assert re-raises from torch/__init__.py: name the caller's line instead
    frames = [f for f in frames if f"{os.sep}torch{os.sep}" not in f.filename] or frames
    where = f"{os.path.basename(frames[-1].filename)}: {frames[-1].line}" if frames else "no message"
    return f"{type(exc).__name__} in {where}"[:240]


# ------------------------------------------------------------------------------------- orchestrator
def spawn(args, **kw):
    kw.setdefault("repeats", args.repeats)
    size = kw.pop("size", args.size)
    batch = kw.pop("batch", args.batch)
    cmd = [sys.executable, os.path.abspath(__file__), "--batch", str(batch), "--size", str(size),
           "--threads", str(args.threads)]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
    label = " ".join(f"{k}={v}" for k, v in kw.items() if k != "repeats") + f" size={size} batch={batch}"
    print(f"  running {label} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {args.timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"ok": False, "error": f"worker exited {proc.returncode}: {tail[0][:200]}"}


def atomic_write(path, text, binary=False):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "wb" if binary else "w") as f:
        f.write(text)
    os.replace(tmp, path)


def img_s(batch, res):
    return batch / res["seconds"] if res.get("ok") else None


def fmt(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def make_markdown(results, args):
    lines = [
        f"Batch {args.batch}, {args.size}x{args.size}, {args.threads} threads, medians of {args.repeats} timed calls "
        f"({args.pynative_repeats} for MindSpore PyNative) after warm-up, one subprocess per cell; {results['env']}.",
        "",
        "| model | implementation | inference img/s | train-step img/s | train peak RSS MB | steady step peak MB | "
        "first train call s | Graph compile s | infer ours/timm | train ours/timm | train RSS ours/timm | "
        "MB/img | MB/img ours/timm |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    slopes = results.get("slope", {}).get("models", {})
    for model, rows in results["models"].items():
        timm_row = rows.get("timm (PyTorch CPU)", {})
        t_inf = img_s(args.batch, timm_row.get("infer", {}))
        t_tr = img_s(args.batch, timm_row.get("train", {}))
        t_mem = timm_row.get("train", {}).get("peak_rss_mb") if timm_row.get("train", {}).get("ok") else None
        for impl, r in rows.items():
            inf, tr = img_s(args.batch, r.get("infer", {})), img_s(args.batch, r.get("train", {}))
            err = r.get("infer", {}).get("error") or r.get("train", {}).get("error")
            if inf is None and tr is None and err:
                what = err if err == NO_TIMM else f"unsupported on CPU: `{err[:90]}`"
                lines.append(f"| {model} | {impl} | {what} | | | | | | | | | | |")
                continue
            peer = not impl.startswith("timm")
            train = r.get("train", {})
            mem = train.get("peak_rss_mb") if "seconds" in train else None
            ratio_i = fmt(inf / t_inf) if inf and t_inf and peer else ""
            ratio_t = fmt(tr / t_tr) if tr and t_tr and peer else ""
            ratio_m = fmt(mem / t_mem) if mem and t_mem and peer else ""
            step_mem, first, comp = train.get("step_peak_mb"), train.get("first_call_s"), train.get("compile_s")
            sl = slopes.get(model, {})
            per_img = (sl.get("timm_mb_per_image") if impl.startswith("timm")
                       else sl.get("ours_mb_per_image") if impl.startswith("MindSpore Graph") else None)
            ratio_s = (fmt(sl["ours_mb_per_image"] / sl["timm_mb_per_image"]) if impl.startswith("MindSpore Graph")
                       and sl.get("ours_mb_per_image") and sl.get("timm_mb_per_image") else "")
            lines.append(f"| {model} | {impl} | {fmt(inf)} | {fmt(tr)} | {fmt(mem, 0) if mem else '—'} | "
                         f"{fmt(step_mem, 0) if step_mem else '—'} | {fmt(first, 1) if first is not None else ''} | "
                         f"{fmt(comp, 1) if comp is not None else ''} | {ratio_i} | {ratio_t} | {ratio_m} | "
                         f"{fmt(per_img, 0) if per_img else ''} | {ratio_s} |")
    return "\n".join(lines) + "\n"


def make_slope_markdown(slope, args):
    """Train-step peak RSS per batch size, ours (Graph) and timm, and the least-squares MB per image."""
    batches = slope["batches"]
    lines = [f"**Activation memory per image**: peak RSS of a train-step subprocess (Graph for ours) at batch "
             f"{' / '.join(map(str, batches))}, {args.size} px; MB/img = least-squares slope of the peak against "
             "the batch size. Same run as the table above.", "",
             "| model | implementation | " + " | ".join(f"peak MB, batch {b}" for b in batches)
             + " | s/step at each batch | MB/img | MB/img ours/timm |",
             "|---|---|" + "---:|" * (len(batches) + 3)]
    for model, per in slope["models"].items():
        for who, label in (("ours", "MindSpore Graph (ours)"), ("timm", "timm (PyTorch CPU)")):
            pts = per[who]
            if not pts:
                continue
            peaks = [fmt(pts[str(b)].get("peak_rss_mb"), 0) if pts.get(str(b), {}).get("ok") else "failed"
                     for b in batches]
            steps = " / ".join(fmt(pts[str(b)].get("seconds"), 2) if pts.get(str(b), {}).get("ok") else "—"
                               for b in batches)
            mine, theirs = per.get(f"{who}_mb_per_image"), per.get("timm_mb_per_image")
            ratio = fmt(mine / theirs) if who == "ours" and mine and theirs else ""
            lines.append(f"| {model} | {label} | " + " | ".join(peaks) + f" | {steps} | {fmt(mine, 0)} | {ratio} |")
    return "\n".join(lines) + "\n"


def make_h_family_markdown(table, args):
    """Ours only: the H family at the paper's resolutions."""
    lines = ["**The H family at its own sizes** (ours, MindSpore Graph, train step; timm has only h1). "
             f"Batch {args.batch} unless the peak would pass {next(iter(table.values()))['limit_mb']:,} MB; "
             "MB/img = slope of the train-step peak RSS over the batches listed.", "",
             "| model | px | batch | train-step img/s | s/step | train peak RSS MB | steady step peak MB | "
             "MB/img | batches in slope | first train call s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for model, row in table.items():
        r = row["result"]
        if not r.get("ok"):
            lines.append(f"| {model} | {row['size']} | {row['batch']} | failed: `{r.get('error', '')[:80]}` | | | | | | |")
            continue
        lines.append(f"| {model} | {row['size']} | {row['batch']} | {fmt(row['batch'] / r['seconds'])} | "
                     f"{fmt(r['seconds'], 2)} | {fmt(r['peak_rss_mb'], 0)} | {fmt(r.get('step_peak_mb'), 0)} | "
                     f"{fmt(row['mb_per_image'], 0)} | {', '.join(sorted(row['points'], key=int))} | "
                     f"{fmt(r.get('first_call_s'), 1)} |")
    return "\n".join(lines) + "\n"


def make_scaling_markdown(scaling, args):
    """Train step time and peak RSS per input size, ours (Graph) and timm, and the growth of each from
    the smallest size that ran, next to the growth in pixels."""
    sizes = sorted(scaling["sizes"], key=int)
    lines = [f"**Scaling**: {scaling['model']} Graph train step, batch {args.batch}, {args.threads} threads, "
             f"medians of {scaling.get('repeats', args.repeats)} timed calls, one subprocess per cell, same run. Growth = value / value at the smallest size that ran; compare with the pixel growth.", "",
             "| px | pixels growth | ours s/step | ours peak RSS MB | ours steady step MB | timm s/step | timm peak RSS MB | "
             "timm steady step MB | time ours/timm | RSS ours/timm | ours time growth | ours RSS growth | "
             "timm time growth | timm RSS growth |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {}
    for who in ("ours", "timm"):
        ran = [s for s in sizes if scaling["sizes"][s][who].get("ok")]
        base[who] = scaling["sizes"][ran[0]][who] if ran else None
        base[who + "_px"] = int(ran[0]) ** 2 if ran else None
    px0 = int(sizes[0]) ** 2
    for size in sizes:
        row = scaling["sizes"][size]
        cells = [size, fmt(int(size) ** 2 / px0)]
        for who in ("ours", "timm"):
            r = row[who]
            if r.get("ok"):
                cells += [fmt(r["seconds"], 3), fmt(r["peak_rss_mb"], 0), fmt(r.get("step_peak_mb"), 0)]
            else:
                cells += [f"cannot run: `{r.get('error', '')[:80]}`", "", ""]
        o, t = row["ours"], row["timm"]
        both = o.get("ok") and t.get("ok")
        cells += [fmt(o["seconds"] / t["seconds"]) if both else "", fmt(o["peak_rss_mb"] / t["peak_rss_mb"]) if both else ""]
        for who in ("ours", "timm"):
            r, b = row[who], base[who]
            cells += ([fmt(r["seconds"] / b["seconds"]), fmt(r["peak_rss_mb"] / b["peak_rss_mb"])]
                      if r.get("ok") and b else ["", ""])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def make_plot(results, args, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:
        print(f"no plot: matplotlib not importable ({exc})", file=sys.stderr)
        return False
    models = list(results["models"])
    impls = ["MindSpore Graph", "MindSpore PyNative", "timm (PyTorch CPU)", "dense bmm ceiling (MindSpore)"]

    def row(model, prefix):  # "MindSpore Graph (ours)" / "MindSpore Graph (MindCV resnet50)"
        return next((v for k, v in results["models"][model].items() if k.startswith(prefix)), {})

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, task, title in ((axes[0], "infer", "inference"), (axes[1], "train", "train step")):
        width = 0.8 / len(impls)
        for i, impl in enumerate(impls):
            vals = [img_s(args.batch, row(m, impl).get(task, {})) or 0 for m in models]
            ax.bar([j + i * width for j in range(len(models))], vals, width, label=impl)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))])
        ax.set_xticklabels(models)
        ax.set_ylabel("img/s (higher is better)")
        ax.set_yscale("log")
        ax.set_title(f"{title}, batch {args.batch}, {args.size}px, {args.threads} CPU threads")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return True


def merge_rounds(runs):
    """One result from the interleaved rounds of the same measurement: the median of every number
    (times and peaks) over the rounds that ran; the first error when none did."""
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return runs[0]
    merged = dict(ok[0], rounds=len(ok))
    for key, value in ok[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [r[key] for r in ok if r.get(key) is not None]
            merged[key] = statistics.median(vals) if vals else None
    merged["samples"] = [r.get("seconds") for r in ok]
    return merged


class Runner:
    """Spawns measurements and remembers them by (worker, model, mode, task, size, batch), so that a
    measurement asked for by two tables runs once."""

    def __init__(self, args):
        self.args, self.cache = args, {}

    def train_or_infer(self, worker, model, task, mode=None, size=None, batch=None, repeats=None):
        size, batch = size or self.args.size, batch or self.args.batch
        key = (worker, model, mode, task, size, batch)
        if key not in self.cache:
            kw = dict(worker=worker, model=model, task=task, size=size, batch=batch)
            if mode:
                kw["mode"] = mode
            if repeats:
                kw["repeats"] = repeats
            self.cache[key] = spawn(self.args, **kw)
        return self.cache[key]


def orchestrate(args):
    os.makedirs(args.out, exist_ok=True)
    env_line = []
    try:
        import mindspore

        env_line.append(f"mindspore {mindspore.__version__}")
    except Exception:
        pass
    results = {"args": {k: v for k, v in vars(args).items() if k not in ("worker",)}, "models": {}}
    runner = Runner(args)
    for model in args.models:
        print(f"[{model}]", file=sys.stderr, flush=True)
        # (label, worker, mode, repeats); ours and timm alternate within each round
        peers = []
        for mode, label in (("graph", "MindSpore Graph (ours)"), ("pynative", "MindSpore PyNative (ours)")):
            if model == "resnet50":
                label = label.replace("(ours)", "(MindCV resnet50)")
            if mode == "pynative" and (args.skip_pynative or model not in args.pynative_models):
                continue
            peers.append((label, "mindspore", mode, args.pynative_repeats if mode == "pynative" else args.repeats))
        if TIMM_NAMES[model] is not None:
            peers.append(("timm (PyTorch CPU)", "torch", None, args.repeats))
        runs = {(label, t): [] for label, *_ in peers for t in ("infer", "train")}
        for _ in range(args.rounds):
            for t in ("infer", "train"):
                for label, worker, mode, reps in peers:
                    kw = dict(worker=worker, model=model, task=t, repeats=reps)
                    if mode:
                        kw["mode"] = mode
                    runs[(label, t)].append(spawn(args, **kw))
        rows = {}
        for (label, t), rr in runs.items():
            rows.setdefault(label, {})[t] = merge_rounds(rr)
        if TIMM_NAMES[model] is None:
            rows["timm (PyTorch CPU)"] = {t: {"ok": False, "error": NO_TIMM} for t in ("infer", "train")}
        for label, worker, mode, _ in peers:  # the batch-8 train runs count for the slope table too
            if mode in (None, "graph"):
                runner.cache[(worker, model, mode, "train", args.size, args.batch)] = rows[label]["train"]
        if model == "halonet_50t" and not args.skip_builtin:
            rows["MindCV built-in halonet_50t (Graph)"] = {
                t: spawn(args, worker="mindspore", model="mindcv_builtin_halonet_50t", mode="graph", task=t)
                for t in ("infer", "train")
            }
        macs = spawn(args, worker="macs", model=model)
        if macs.get("ok"):
            total = macs["macs_per_image"] * args.batch
            for fw, label in (("mindspore", "dense bmm ceiling (MindSpore)"), ("torch", "dense bmm ceiling (PyTorch)")):
                one = spawn(args, worker="matmul", mode=fw, macs=total)
                if one.get("ok"):
                    rows[label] = {"infer": {"ok": True, "seconds": one["seconds"]},
                                   "train": {"ok": True, "seconds": 3 * one["seconds"]}}
            rows["_macs_per_image"] = macs["macs_per_image"]
        results["models"][model] = rows
    timm_ver = next((r["timm (PyTorch CPU)"]["infer"].get("version") for r in results["models"].values()
                     if r.get("timm (PyTorch CPU)", {}).get("infer", {}).get("ok")), "timm not available")
    results["env"] = ", ".join(env_line + [timm_ver])
    results["macs_per_image"] = {m: results["models"][m].pop("_macs_per_image", None) for m in results["models"]}
    if args.slope_models:
        results["slope"] = run_slope(args, runner)
    if args.h_family:
        results["h_family"] = run_h_family(args, runner)
    if args.scaling_sizes:
        results["scaling"] = run_scaling(args)
    if args.layer_repeats:
        results["layer"] = run_layer(args)
    atomic_write(os.path.join(args.out, "models.json"), json.dumps(results, indent=2))
    render(results, args)


def layer_bench(args, repeats, extra=(), pythonpath=None):
    """``bench_halo_attention.py --graph-only`` (its default layer: batch 8, 256 channels, 32x32) in a
    subprocess, with ``extra`` arguments and ``pythonpath`` (a tree holding ``mindcv_halonet``) first on
    ``PYTHONPATH``: its JSON with ``ok`` True, or ``{"ok": False, "error": [last line]}``."""
    fd, out = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_halo_attention.py"),
               "--graph-only", *extra, "--repeats", str(repeats), "--threads", str(args.threads), "--json", out]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), GLOG_v="3")
        if pythonpath is not None:
            env["PYTHONPATH"] = os.path.abspath(pythonpath)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
        if proc.returncode:
            return {"ok": False, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        with open(out) as f:
            return dict(json.load(f), ok=True)
    finally:
        os.remove(out)


def run_layer(args):
    """The layer alone: HaloAttention, global attention, timm's HaloAttn and a dense bmm of the same MACs."""
    print("[layer]", file=sys.stderr, flush=True)
    return layer_bench(args, args.layer_repeats)


def make_layer_markdown(layer):
    if not layer.get("ok"):
        return f"**The layer alone**: failed: {layer.get('error')}\n"
    a = layer["args"]
    rows = layer["ms_per_iter"]
    dense = next(v for k, v in rows.items() if k.startswith("dense bmm"))
    lines = [f"**The layer alone** (`bench_halo_attention.py --graph-only`, same run): batch {a['batch']}, "
             f"{a['channels']} channels, {a['size']}x{a['size']}, medians of {a['repeats']}; forward "
             f"{layer['forward_gmac']:.2f} GMAC. The dense bmm does the same MACs (x3 for forward + backward).", "",
             "| implementation | forward ms | forward + backward ms | fwd+bwd / dense bmm |", "|---|---:|---:|---:|"]
    for name, (fwd, fwd_bwd) in rows.items():
        lines.append(f"| {name} | {fwd:.1f} | {fwd_bwd:.1f} | {fwd_bwd / dense[1]:.2f} |")
    return "\n".join(lines) + "\n"


def mb_per_image(points):
    """Least-squares slope of peak RSS (MB) against batch size over ``{batch: result}``; None with fewer
    than two batches that ran."""
    xy = [(int(b), r["peak_rss_mb"]) for b, r in points.items() if r.get("ok") and r.get("peak_rss_mb")]
    if len(xy) < 2:
        return None
    mx = sum(x for x, _ in xy) / len(xy)
    my = sum(y for _, y in xy) / len(xy)
    return sum((x - mx) * (y - my) for x, y in xy) / sum((x - mx) ** 2 for x, _ in xy)


def run_slope(args, runner):
    """Train-step peak RSS of ours (Graph) and timm at each of ``--slope-batches``, alternating."""
    slope = {"batches": args.slope_batches, "models": {}}
    for model in args.slope_models:
        print(f"[slope {model}]", file=sys.stderr, flush=True)
        per = {"ours": {}, "timm": {}}
        for batch in args.slope_batches:
            per["ours"][str(batch)] = runner.train_or_infer("mindspore", model, "train", mode="graph", batch=batch,
                                                            repeats=args.slope_repeats)
            if TIMM_NAMES.get(model):
                per["timm"][str(batch)] = runner.train_or_infer("torch", model, "train", batch=batch,
                                                                repeats=args.slope_repeats)
        per["ours_mb_per_image"] = mb_per_image(per["ours"])
        per["timm_mb_per_image"] = mb_per_image(per["timm"])
        slope["models"][model] = per
    return slope


def run_h_family(args, runner, limit_mb=20000):
    """Ours only: each H model at its paper resolution, batch ``--batch`` (8) or, where that would not fit
    in ``limit_mb``, the largest batch that is predicted to (from batches 2 and 4); MB per image from the
    slope between batch 4 and the batch reported."""
    table = {}
    for model in args.h_family:
        size = H_SIZES[model]
        print(f"[H family {model} {size}px]", file=sys.stderr, flush=True)
        run = lambda b: runner.train_or_infer("mindspore", model, "train", mode="graph", size=size, batch=b,  # noqa: E731
                                              repeats=args.slope_repeats)
        points = {4: run(4)}
        batch = args.batch
        if points[4].get("ok") and 2 * points[4]["peak_rss_mb"] > limit_mb:  # peak is affine in batch: p(8) <= 2 p(4)
            points[2] = run(2)
            per = mb_per_image(points)
            batch = max(2, min(args.batch, int(4 + (limit_mb - points[4]["peak_rss_mb"]) // per))) if per else 4
        if batch not in points:
            points[batch] = run(batch)
        table[model] = {"size": size, "batch": batch, "result": points[batch],
                        "points": {str(b): r for b, r in points.items()}, "mb_per_image": mb_per_image(points),
                        "limit_mb": limit_mb}
    return table


def run_scaling(args):
    print(f"[scaling {args.scaling_model}]", file=sys.stderr, flush=True)
    scaling = {"model": args.scaling_model, "repeats": args.repeats, "sizes": {}}
    for size in args.scaling_sizes:
        scaling["sizes"][str(size)] = {
            "ours": spawn(args, worker="mindspore", model=args.scaling_model, mode="graph", task="train", size=size),
            "timm": spawn(args, worker="torch", model=args.scaling_model, task="train", size=size),
        }
    return scaling


def render(results, args):
    """Write models.md and models.png from a results dict (also used by --render-only)."""
    macs_note = results["macs_per_image"]
    md = make_markdown(results, args)
    md += "\nForward GMACs per image: " + ", ".join(
        f"{m} {v / 1e9:.2f}" for m, v in macs_note.items() if v) + " (dense bmm ceiling = the same MACs as one dense matmul; x3 for a train step).\n"
    if results.get("slope"):
        md += "\n" + make_slope_markdown(results["slope"], args)
    if results.get("h_family"):
        md += "\n" + make_h_family_markdown(results["h_family"], args)
    if results.get("scaling"):
        md += "\n" + make_scaling_markdown(results["scaling"], args)
    if results.get("layer"):
        md += "\n" + make_layer_markdown(results["layer"])
    atomic_write(os.path.join(args.out, "models.md"), md)
    make_plot(results, args, os.path.join(args.out, "models.png"))
    print(md)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["halonet_50t", "halonet_26t", "resnet50", "halonet_h1"],
                   help="models of the main table (none: no main table)")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds (ours, timm, ours, timm, ...) per model; medians over rounds")
    p.add_argument("--slope-models", nargs="*", default=["halonet_50t", "halonet_26t", "halonet_h1"],
                   help="models of the MB-per-image table (none: no table)")
    p.add_argument("--slope-batches", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--slope-repeats", type=int, default=2, help="timed calls per slope / H-family subprocess")
    p.add_argument("--h-family", nargs="*", default=list(H_SIZES),
                   help="H models of the paper-resolution table (none: no table)")
    p.add_argument("--skip-builtin", action="store_true", help="skip MindCV's built-in halonet_50t row")
    p.add_argument("--pynative-models", nargs="*", default=["halonet_50t", "halonet_26t", "resnet50"],
                   help="models that also get MindSpore PyNative rows (slow)")
    p.add_argument("--scaling-model", default="halonet_50t")
    p.add_argument("--scaling-sizes", type=int, nargs="*", default=[224, 256, 320, 384],
                   help="input sizes of the scaling table (none: no table)")
    p.add_argument("--layer-repeats", type=int, default=10,
                   help="timed calls of the layer-alone table (bench_halo_attention.py); 0: no table")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pynative-repeats", type=int, default=2, help="timed calls for MindSpore PyNative (slow)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=1800, help="seconds per worker subprocess")
    p.add_argument("--skip-pynative", action="store_true")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--render-only", action="store_true", help="redo models.md / models.png from <out>/models.json")
    p.add_argument("--scaling-only", action="store_true",
                   help="rerun only the scaling table and replace it in <out>/models.json (then re-render)")
    # internal: one measurement per subprocess
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--macs", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("batch", "size", "repeats", "pynative_repeats", "threads", "timeout", "rounds", "slope_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid; expected an integer >= 1")
    known = set(TIMM_NAMES)
    if args.worker is None and not set(args.models) <= known:
        p.error(f"--models={args.models} is invalid; expected a subset of {sorted(known)}")
    if args.worker is None and not set(args.slope_models) <= known:
        p.error(f"--slope-models={args.slope_models} is invalid; expected a subset of {sorted(known)}")
    if args.worker is None and not set(args.h_family) <= set(H_SIZES):
        p.error(f"--h-family={args.h_family} is invalid; expected a subset of {sorted(H_SIZES)}")
    if args.layer_repeats < 0:
        p.error(f"--layer-repeats={args.layer_repeats} is invalid; expected an integer >= 0 (0: no layer table)")
    if args.worker is None and any(b < 1 for b in args.slope_batches):
        p.error(f"--slope-batches={args.slope_batches} is invalid; expected batch sizes >= 1")
    if args.worker is None and args.scaling_sizes and not TIMM_NAMES.get(args.scaling_model):
        p.error(f"--scaling-model={args.scaling_model!r} is invalid; expected one with a timm peer: "
                f"{sorted(m for m, t in TIMM_NAMES.items() if t)}")
    if args.worker is None and any(s < 32 for s in args.scaling_sizes or []):
        p.error(f"--scaling-sizes={args.scaling_sizes} is invalid; expected sizes >= 32")
    if args.worker:
        run_worker(args)
    elif args.render_only or args.scaling_only:
        path = os.path.join(args.out, "models.json")
        if not os.path.isfile(path):
            p.error(f"--{'render' if args.render_only else 'scaling'}-only needs {path}; run the benchmark first")
        with open(path) as f:
            results = json.load(f)
        if args.scaling_only:
            if not args.scaling_sizes:
                p.error("--scaling-only needs --scaling-sizes")
            results["scaling"] = run_scaling(args)
            atomic_write(path, json.dumps(results, indent=2))
        saved = argparse.Namespace(**{**vars(args), **results["args"]})
        saved.pynative_repeats = results["args"].get("pynative_repeats", 2)
        render(results, saved)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
