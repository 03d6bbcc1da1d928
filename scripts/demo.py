"""The main job: train a HaloNet on real handwritten digits, validate it, plot what it learnt.

1. writes scikit-learn's bundled digits (1,797 real 8x8 scans, 10 classes; no download) as an
   ImageFolder with a fixed, stratified, seeded 80/20 split to ``WORKDIR/data``
   (``scripts/digits_imagefolder.py``; rewritten only if missing or different);
2. trains the model named by ``--model`` from its recipe ``configs/halonet/<model>_ascend.yaml``
   with the CPU overrides, through MindCV's factories in ``train.py``'s order, validating on the
   held-out split after every epoch (``val_while_train``; MindCV's checkpoint callback writes
   ``WORKDIR/ckpt/<model>-<epochs>_<batches>.ckpt``);
3. evaluates that checkpoint in a fresh interpreter the way ``validate.py`` does;
4. prints the accuracies and the training throughput (img/s, first epoch excluded: it compiles),
   and writes ``WORKDIR/demo.png``: train loss and val top-1 per epoch, and the confusion matrix of
   the held-out split.

``--dataset colours`` instead trains on a generated colour-coded 4-class set (a ~1-minute smoke run
of the same path; the classes differ by colour only, so it says nothing about learning images).
``mindcv_halonet`` is never imported here: MindCV finds the model through the plugin's entry points.
Usage: ``python scripts/demo.py [--dataset digits|colours] [--model halonet_26t] [--epochs N] ...``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# the scripts import each other: `python scripts/demo.py` puts this directory first on sys.path
from atomic import atomic_write  # noqa: E402
from digits_imagefolder import make_digits_imagefolder  # noqa: E402
from factory_train import train  # noqa: E402
from mindcv_args import CPU_OVERRIDES, load_args  # noqa: E402
from tiny_imagefolder import make_tiny_imagefolder  # noqa: E402

# Per data set: defaults of --epochs/--image-size/--batch-size/--lr and the augmentation changes to
# the ImageNet recipe (its RandAugment, mixup 0.8 and random erasing are meant for 300 ImageNet
# epochs and keep a few-epoch run from fitting).
DATASETS = {
    "digits": {
        "epochs": 7, "image_size": 32, "batch_size": 32, "lr": 0.002,
        "augment": {
            "auto_augment": None, "mixup": 0.0, "re_prob": 0.0,
            # a digit must stay a digit: no mirroring (2 vs 5), crops keep most of the scan
            "hflip": 0.0, "scale": (0.6, 1.0), "ratio": (0.8, 1.25), "color_jitter": 0.0,
        },
    },
    "colours": {
        "epochs": 6, "image_size": 64, "batch_size": 16, "lr": None,  # None: the recipe's
        "augment": {"auto_augment": None, "mixup": 0.0, "re_prob": 0.0},
    },
}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=sorted(DATASETS),
                   help="digits: real 8x8 scans from scikit-learn (default); colours: generated 4-class smoke set")
    p.add_argument("--model", default="halonet_26t", help="a registered HaloNet variant with a recipe")
    p.add_argument("--epochs", type=int, default=None, help="default: digits 7, colours 6")
    p.add_argument("--image-size", type=int, default=None, help="network input size (default: digits 32, colours 64)")
    p.add_argument("--batch-size", type=int, default=None, help="default: digits 32, colours 16")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: digits 0.002, colours the recipe's)")
    p.add_argument("--mode", type=int, default=0, choices=(0, 1), help="0 graph (default), 1 PyNative (slow)")
    p.add_argument("--workdir", default=None, help="default: runs/demo (digits) or runs/demo-colours")
    a = p.parse_args(argv)
    defaults = DATASETS[a.dataset]
    for key in ("epochs", "image_size", "batch_size", "lr"):
        if getattr(a, key) is None:
            setattr(a, key, defaults[key])
    if a.workdir is None:
        a.workdir = os.path.join(REPO, "runs", "demo" if a.dataset == "digits" else "demo-colours")
    if a.epochs < 1:
        p.error(f"--epochs={a.epochs} is invalid; expected an integer >= 1")
    if a.image_size < 16:
        p.error(f"--image-size={a.image_size} is invalid; expected an integer >= 16")
    if a.batch_size < 1:
        p.error(f"--batch-size={a.batch_size} is invalid; expected an integer >= 1")
    if a.lr is not None and not a.lr > 0:
        p.error(f"--lr={a.lr} is invalid; expected a number > 0")
    recipe = os.path.join(REPO, "configs", "halonet", f"{a.model}_ascend.yaml")
    if not os.path.isfile(recipe):
        p.error(f"--model={a.model!r} has no recipe {recipe}")
    return a, recipe


def prepare_data(a, data) -> str:
    if a.dataset == "digits":
        info = make_digits_imagefolder(data, image_size=32, val_fraction=0.2, seed=0)
        n_train, n_val = sum(info["train_per_class"]), sum(info["val_per_class"])
        state = "written" if info["written"] else "up to date, reused"
        return (f"scikit-learn digits: {n_train} train / {n_val} held-out val scans, 10 classes, stratified "
                f"80/20 split (seed 0), 8x8 -> 32 px PNG ({state}) -> {data}")
    make_tiny_imagefolder(data, 4, 32, 8, a.image_size + 8, seed=0)
    return f"generated colour squares: 4 classes x 32 train / 8 val images of {a.image_size + 8} px -> {data}"


def epoch_curves(result) -> dict:
    """Mean train loss per epoch (from every step's loss) and val top-1 per epoch (MindCV's result.log)."""
    n, losses = result["num_batches"], result["step_losses"]
    mean_loss = [sum(losses[i * n:(i + 1) * n]) / n for i in range(len(losses) // n)]
    val_top1 = [row["Top_1_Accuracy"] for row in result["epoch_log"]]
    return {"epoch": list(range(1, len(mean_loss) + 1)), "train_loss": mean_loss, "val_top1": val_top1}


def plot(path, curves, confusion, class_names, title) -> None:
    """One PNG: train loss per epoch, val top-1 per epoch, confusion matrix (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion)
    fig, (ax_loss, ax_acc, ax_cm) = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.15]})
    epochs = curves["epoch"]
    ax_loss.plot(epochs, curves["train_loss"], "o-", color="tab:blue")
    ax_loss.set(title="train loss (mean per epoch)", xlabel="epoch", ylabel="cross-entropy (label smoothing 0.1)")
    ax_acc.plot(epochs[:len(curves["val_top1"])], [100 * x for x in curves["val_top1"]], "o-", color="tab:green")
    ax_acc.set(title="held-out val top-1 after each epoch", xlabel="epoch", ylabel="top-1 (%)", ylim=(0, 101))
    for ax in (ax_loss, ax_acc):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    if curves["val_top1"]:
        last = 100 * curves["val_top1"][-1]
        ax_acc.annotate(f"{last:.1f} %", (epochs[len(curves['val_top1']) - 1], last), textcoords="offset points",
                        xytext=(-10, -16), ha="right")
    im = ax_cm.imshow(cm, cmap="Blues")
    ax_cm.set(title=f"confusion matrix, held-out val ({cm.sum()} images)", xlabel="predicted", ylabel="true",
              xticks=range(len(class_names)), yticks=range(len(class_names)),
              xticklabels=class_names, yticklabels=class_names)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax_cm.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                           color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(im, ax=ax_cm, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        plt.close(fig)


def main(argv=None):
    a, recipe = parse(argv)
    t_start = time.perf_counter()
    os.makedirs(a.workdir, exist_ok=True)
    data = os.path.join(a.workdir, "data")
    print(f"[demo] 1/4 data set", flush=True)
    print(f"[demo]     {prepare_data(a, data)}", flush=True)

    spec = DATASETS[a.dataset]
    overrides = {
        **CPU_OVERRIDES, "mode": a.mode, "data_dir": data, "num_classes": None, "batch_size": a.batch_size,
        "image_resize": a.image_size, "epoch_size": a.epochs, "warmup_epochs": 1,
        "decay_epochs": max(a.epochs - 1, 0), **spec["augment"],
        "val_while_train": True, "val_interval": 1, "log_interval": 10**6,
        "ckpt_save_dir": os.path.join(a.workdir, "ckpt"),
    }
    if a.lr is not None:
        overrides["lr"] = a.lr
    args = load_args(recipe, overrides)
    print(f"[demo] 2/4 training {a.model} ({'graph' if a.mode == 0 else 'PyNative'} mode, {a.epochs} epochs, "
          f"batch {a.batch_size}, {a.image_size} px, lr {args.lr}) from {os.path.relpath(recipe, REPO)} "
          f"+ CPU overrides, validating after every epoch", flush=True)
    result = train(args, summary=False)  # MindSpore's summary writer would spin on one of the 2 cores

    print("[demo] 3/4 validating the checkpoint in a fresh interpreter (validate.py path)", flush=True)
    val_json = os.path.join(a.workdir, "validate.json")
    sets = [f"{k}={json.dumps(v) if v is not None else 'null'}" for k, v in
            {**overrides, "ckpt_path": result["checkpoint"]}.items()]
    cmd = [sys.executable, os.path.join(HERE, "factory_validate.py"), "-c", recipe, "--result-json", val_json]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True)
    with open(val_json) as f:
        val = json.load(f)

    png = os.path.join(a.workdir, "demo.png")
    print(f"[demo] 4/4 plotting -> {png}", flush=True)
    curves = epoch_curves(result)
    class_names = sorted(os.listdir(os.path.join(data, "val")))
    if a.dataset == "digits":
        class_names = [name.split("_")[-1] for name in class_names]
    val_top1 = val["metrics"]["Top_1_Accuracy"]
    plot(png, curves, val["confusion_matrix"], class_names,
         f"{a.model} on {'scikit-learn digits' if a.dataset == 'digits' else 'colour squares'}: "
         f"{a.epochs} epochs, {a.image_size} px, CPU; val top-1 {val_top1:.2%} (validate.py path)")

    print("\n" + "=" * 72)
    print(f"model                 {result['model']} ({result['num_params']:,} parameters, "
          f"class {result['network_class']})")
    print(f"checkpoint            {result['checkpoint']}")
    print(f"train loss (eval)     {result['train_eval_before']['loss']:.4f} -> {result['train_eval_after']['loss']:.4f}")
    print(f"train top-1           {result['train_eval_before']['Top_1_Accuracy']:.2%} -> "
          f"{result['train_eval_after']['Top_1_Accuracy']:.2%}")
    print(f"val top-1 per epoch   {' '.join(f'{x:.1%}' for x in curves['val_top1'])}")
    print(f"val top-1 (validate)  {val_top1:.2%}  ({val['num_samples']} held-out images)")
    print(f"training throughput   {result['images_per_second']:.1f} img/s (batch {a.batch_size}, "
          f"{a.image_size} px, first epoch excluded)")
    print(f"plot                  {png}")
    print(f"total time            {time.perf_counter() - t_start:.0f} s")
    print("=" * 72)
    return {"result": result, "validate": val, "curves": curves, "png": png}


if __name__ == "__main__":
    main()
