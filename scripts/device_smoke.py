"""Smoke test for real hardware: train halonet_26t / halonet_50t briefly on Ascend or GPU and check them.

For each model and each amp level (O0, and the recipe's O3 with its loss-scale manager) it
* builds the model from MindCV's registry (the plugin registers it) with the recipe's loss and AdamW,
  through MindCV's ``create_trainer`` as ``train.py`` does, in Graph mode with ``jit_level O2``;
* trains ``--steps`` steps on synthetic data (fixed seed), checking that every loss is finite, and
  afterwards that every parameter is finite;
* compares the eval-mode forward on the device with a float32 CPU forward (PyNative, a child process)
  of the same weights on the same batch: max |device - cpu| / max |cpu| over the logits must stay
  within ``--tol-o0`` (default 1e-3) or ``--tol-o3`` (default 3e-2, float16 compute);
* reports compile time, step time, peak memory and the precision mode in effect.

It prints ONE JSON line on stdout (the last line) and exits 1 if any check failed (2 on bad arguments).
On CPU (``--device_target CPU``; default batch 2 at 64 px there, CI runs smaller) MindSpore refuses an
overflow-checking loss scale, so every run there uses a fixed scale without overflow check; the JSON says so
(``loss_scale.used``). Peak memory is MindSpore's ``max_memory_allocated`` on a device and the
process's peak RSS on CPU.

Usage (from a checkout of mindcv-halonet, with the plugin installed)::

    python scripts/device_smoke.py --device_target Ascend            # or GPU
    python scripts/device_smoke.py --device_target CPU --models halonet_26t --steps 3 --batch 2 --image-size 32
                                                                     # what CI runs (tests/scripts)
"""
import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from factory_train import ASCEND_PRECISION_MODES, check_ascend_precision_mode, optimizer_and_trainer  # noqa: E402
from mindcv_args import load_args  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "halonet")
DEVICES = ("Ascend", "GPU", "CPU")
AMP_LEVELS = ("O0", "O3")
NUM_CLASSES = 10
CPU_FALLBACK = {"loss_scale_type": "fixed", "drop_overflow_update": False}
CPU_BATCH, CPU_IMAGE_SIZE = 2, 64  # CPU defaults: the run has to fit a small shared machine


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device_target", default="Ascend", choices=DEVICES)
    p.add_argument("--models", default="halonet_26t,halonet_50t", help="comma-separated, each with a recipe")
    p.add_argument("--amp-levels", default="O0,O3", help="comma-separated subset of O0,O3 (default both)")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--batch", type=positive_int, default=None, help="per-device batch size (default 8; CPU 2)")
    p.add_argument("--image-size", type=positive_int, default=None, help="default 224; CPU 64")
    p.add_argument("--tol-o0", type=positive_float, default=1e-3, help="O0 forward vs float32 CPU, relative")
    p.add_argument("--tol-o3", type=positive_float, default=3e-2, help="O3 forward vs float32 CPU, relative")
    p.add_argument("--ascend-precision-mode", default=None, choices=ASCEND_PRECISION_MODES, metavar="MODE",
                   help="Ascend only: CANN precision_mode to set (default: leave the chip's default)")
    p.add_argument("--inject-nan", action="store_true", help="for tests: put a NaN into one weight before training")
    p.add_argument("--reference-forward", nargs=2, metavar=("IN_NPZ", "OUT_NPZ"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    small = a.device_target == "CPU"  # at 224 px / batch 8 a CPU run was killed at 18.5 GB RSS (24 GB machine)
    a.batch = a.batch or (CPU_BATCH if small else 8)
    a.image_size = a.image_size or (CPU_IMAGE_SIZE if small else 224)
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    a.amp_levels = [m.strip() for m in a.amp_levels.split(",") if m.strip()]
    if not a.models:
        p.error("--models is empty; expected e.g. halonet_26t,halonet_50t")
    if not a.amp_levels or set(a.amp_levels) - set(AMP_LEVELS):
        p.error(f"--amp-levels={','.join(a.amp_levels)!r} is invalid; expected a comma-separated subset of O0,O3")
    for model in a.models:
        if not os.path.isfile(os.path.join(CONFIG_DIR, f"{model}_ascend.yaml")):
            p.error(f"--models: {model!r} has no recipe {model}_ascend.yaml in {CONFIG_DIR}")
    try:
        check_ascend_precision_mode(a.ascend_precision_mode, a.device_target)
    except ValueError as exc:
        p.error(str(exc))
    if a.image_size % 32:
        p.error(f"--image-size={a.image_size} is invalid; expected a multiple of 32 (total stride of the models)")
    return a


def precision_mode_in_effect(device_target):
    if device_target != "Ascend":
        return f"n/a ({device_target}: no CANN precision_mode)"
    from mindcv_halonet.layers import precision_guard

    configured = precision_guard._configured_precision_mode()
    chip = precision_guard._chip_name()
    mode = configured or precision_guard.default_precision_mode(chip)
    source = "configured" if configured else f"default of {chip}" if mode else f"unknown (chip {chip})"
    return f"{mode} ({source})"


def peak_memory_mb(device_target):
    if device_target == "CPU":
        return "peak_host_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import mindspore as ms

    return "peak_device_memory_mb", ms.runtime.max_memory_allocated() / 2**20


def _build(model_name, args):
    from mindcv.loss import create_loss
    from mindcv.models import create_model

    net = create_model(model_name, num_classes=NUM_CLASSES)
    loss = create_loss(name=args.loss, label_smoothing=args.label_smoothing)
    return net, loss


def _synthetic_batches(a, steps, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((a.batch, 3, a.image_size, a.image_size)).astype(np.float32)
        y = rng.integers(0, NUM_CLASSES, a.batch).astype(np.int32)
        yield x, y


def relative_error(device_logits, cpu_logits) -> float:
    """max |device - cpu| / max |cpu| (NaN if either holds a non-finite value)."""
    import numpy as np

    d, r = np.asarray(device_logits, np.float64), np.asarray(cpu_logits, np.float64)
    if d.shape != r.shape or not (np.all(np.isfinite(d)) and np.all(np.isfinite(r))):
        return float("nan")
    return float(np.abs(d - r).max() / max(np.abs(r).max(), 1e-12))


def run_one(model_name, amp_level, a):
    """Train one model under one amp level; returns (result dict, weights, eval batch, device logits)."""
    import numpy as np

    import mindspore as ms
    from mindspore import Tensor

    recipe = os.path.join(CONFIG_DIR, f"{model_name}_ascend.yaml")
    overrides = {"amp_level": amp_level, "num_classes": NUM_CLASSES, "distribute": False}
    if a.device_target == "CPU":
        overrides.update(CPU_FALLBACK)
    args = load_args(recipe, overrides)
    recipe_args = load_args(recipe)
    ms.set_seed(0)
    net, loss = _build(model_name, args)
    params = list(net.get_parameters())
    names = [p.name for p in params]  # before any wrapping renames them
    if a.inject_nan:
        first = params[0]
        data = first.asnumpy().copy()
        data.flat[0] = np.nan
        first.set_data(Tensor(data))
    _, model = optimizer_and_trainer(net, loss, args, lr=float(args.lr))
    step = model.train_network
    result = {
        "model": model_name, "amp_level": amp_level,
        "loss_scale": {
            "recipe": f"{recipe_args.loss_scale_type} {recipe_args.loss_scale:g}, "
                      f"drop_overflow_update={recipe_args.drop_overflow_update}",
            "used": f"{args.loss_scale_type} {args.loss_scale:g}, drop_overflow_update={args.drop_overflow_update}"
                    + (" (CPU fallback: MindSpore refuses an overflow-checking loss scale on CPU)"
                       if a.device_target == "CPU" else ""),
            "train_step": type(step).__name__,
        },
        "failures": [],
    }
    times, losses, overflows = [], [], 0
    for x, y in _synthetic_batches(a, a.steps, seed=1):
        t0 = time.perf_counter()
        out = step(Tensor(x), Tensor(y))
        if isinstance(out, (tuple, list)):  # TrainOneStepWithLossScaleCell: (loss, overflow, scale)
            out_loss = out[0].asnumpy()
            overflows += int(bool(out[1].asnumpy()))
        else:
            out_loss = out.asnumpy()
        times.append(time.perf_counter() - t0)
        losses.append(float(out_loss))
    result["losses"] = [round(v, 5) if math.isfinite(v) else str(v) for v in losses]
    result["overflow_steps"] = overflows
    if hasattr(step, "scale_sense") and step.scale_sense is not None and hasattr(step.scale_sense, "asnumpy"):
        result["final_loss_scale"] = float(step.scale_sense.asnumpy())
    result["first_step_s"] = round(times[0], 3)
    rest = sorted(times[1:]) or times
    result["step_s"] = round(rest[len(rest) // 2], 4)
    result["compile_s"] = round(max(times[0] - result["step_s"], 0.0), 3)
    if not all(math.isfinite(v) for v in losses):
        result["failures"].append("non-finite loss")
    weights = {n: p.asnumpy() for n, p in zip(names, params)}
    bad = [n for n, w in weights.items() if w.dtype.kind == "f" and not np.all(np.isfinite(w))]
    if bad:
        result["failures"].append(f"non-finite weights: {len(bad)} tensors, e.g. {bad[0]}")
    # eval-mode forward on the device, same AMP setting as training
    x_eval, _ = next(_synthetic_batches(a, 1, seed=2))
    net.set_train(False)
    logits = net(Tensor(x_eval)).astype(ms.float32).asnumpy()
    return result, weights, x_eval, logits


def reference_forward(in_npz, out_npz):
    """Child process: float32 CPU forward (PyNative) of the saved weights for every run."""
    import numpy as np

    import mindspore as ms
    from mindspore import Parameter, Tensor

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    import mindcv.models  # noqa: F401  fires the plugin hook
    from mindcv.models import create_model

    data = np.load(in_npz)
    runs = json.loads(str(data["__runs__"]))
    out = {}
    for key, model_name in runs.items():
        net = create_model(model_name, num_classes=NUM_CLASSES)
        prefix = f"{key}/"
        weights = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
        mine = {p.name for p in net.get_parameters()}
        if mine != set(weights):
            raise RuntimeError(f"{key}: parameter names differ: {sorted(mine ^ set(weights))[:5]}")
        ms.load_param_into_net(net, {k: Parameter(Tensor(v), name=k) for k, v in weights.items()}, strict_load=True)
        net.set_train(False)
        out[key] = net(Tensor(data[f"{key}::x"])).asnumpy()
    tmp = out_npz + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, out_npz)


def main(argv=None):
    a = parse_args(argv)
    if a.reference_forward:
        reference_forward(*a.reference_forward)
        return 0
    import numpy as np

    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target=a.device_target, jit_config={"jit_level": "O2"})
    if a.ascend_precision_mode:
        ms.set_context(ascend_config={"precision_mode": a.ascend_precision_mode})
    import mindcv.models  # noqa: F401  fires the plugin hook

    report = {
        "device_target": a.device_target, "mindspore": ms.__version__, "precision_mode": precision_mode_in_effect(
            a.device_target), "steps": a.steps, "batch": a.batch, "image_size": a.image_size,
        "tolerance": {"O0": a.tol_o0, "O3": a.tol_o3,
                      "metric": "max|device - cpu_fp32| / max|cpu_fp32| over eval-mode logits"},
        "runs": [],
    }
    saved = {}
    with tempfile.TemporaryDirectory(prefix="device_smoke_") as workdir:
        runs = {}
        for model_name in a.models:
            for amp_level in a.amp_levels:
                key = f"{model_name}@{amp_level}"
                try:
                    result, weights, x_eval, logits = run_one(model_name, amp_level, a)
                except Exception as exc:  # report and go on with the next run
                    report["runs"].append({"model": model_name, "amp_level": amp_level,
                                           "failures": [f"{type(exc).__name__}: {exc}"[:500]]})
                    continue
                gc.collect()  # the previous run's network, optimizer state and graphs
                report["runs"].append(result)
                runs[key] = model_name
                for name, w in weights.items():
                    saved[f"{key}/{name}"] = w
                saved[f"{key}::x"] = x_eval
                result["_logits"] = logits
        mem_key, mem = peak_memory_mb(a.device_target)
        report[mem_key] = round(mem, 1)
        if runs:
            in_npz, out_npz = os.path.join(workdir, "weights.npz"), os.path.join(workdir, "ref.npz")
            np.savez(in_npz, __runs__=json.dumps(runs), **saved)
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--device_target", "CPU",
                                   "--reference-forward", in_npz, out_npz], capture_output=True, text=True)
            if proc.returncode != 0:
                report["reference_error"] = proc.stderr[-2000:]
            ref = np.load(out_npz) if proc.returncode == 0 else {}
            for result in report["runs"]:
                logits = result.pop("_logits", None)
                key = f"{result['model']}@{result['amp_level']}"
                if logits is None:
                    continue
                if key not in ref:
                    result["failures"].append("no CPU reference forward")
                    continue
                err = relative_error(logits, ref[key])
                tol = a.tol_o0 if result["amp_level"] == "O0" else a.tol_o3
                result["forward_rel_err_vs_cpu_fp32"] = err if math.isfinite(err) else str(err)
                if not err <= tol:
                    result["failures"].append(f"eval forward differs from float32 CPU: {err:.3g} > {tol:g}")
    report["ok"] = all(not r["failures"] for r in report["runs"]) and len(report["runs"]) == len(a.amp_levels) * len(a.models)
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
