"""The main job on a small embedded default: train a HaloNet on a generated tiny data set.

1. writes a class-separable ImageFolder set (colour-coded classes) to ``WORKDIR/data``;
2. trains the model named by ``--model`` from its recipe ``configs/halonet/<model>_ascend.yaml``
   with CPU overrides, through MindCV's factories in ``train.py``'s order (MindCV's checkpoint
   callback writes ``WORKDIR/ckpt/<model>-<epochs>_<batches>.ckpt``);
3. evaluates that checkpoint in a fresh interpreter the way ``validate.py`` does;
4. prints the accuracies and the training throughput (img/s, first epoch excluded: it compiles).

``mindcv_halonet`` is never imported here: MindCV finds the model through the plugin's entry
points. Usage: ``python scripts/demo.py [--model halonet_26t] [--epochs 6] [--workdir runs/demo]``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from factory_train import train  # noqa: E402
from mindcv_args import CPU_OVERRIDES, load_args  # noqa: E402
from tiny_imagefolder import make_tiny_imagefolder  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="halonet_26t", help="a registered HaloNet variant with a recipe")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--train-per-class", type=int, default=32)
    p.add_argument("--val-per-class", type=int, default=8)
    p.add_argument("--mode", type=int, default=0, choices=(0, 1), help="0 graph (default), 1 PyNative (slow)")
    p.add_argument("--workdir", default=os.path.join(REPO, "runs", "demo"))
    a = p.parse_args(argv)
    if a.epochs < 2:
        p.error(f"--epochs={a.epochs} is invalid; expected >= 2 (the first epoch compiles the graph)")
    recipe = os.path.join(REPO, "configs", "halonet", f"{a.model}_ascend.yaml")
    if not os.path.isfile(recipe):
        p.error(f"--model={a.model!r} has no recipe {recipe}")
    return a, recipe


def main(argv=None):
    a, recipe = parse(argv)
    t_start = time.perf_counter()
    data = os.path.join(a.workdir, "data")
    print(f"[demo] 1/3 writing a tiny data set: {a.classes} classes x {a.train_per_class} train / "
          f"{a.val_per_class} val images of {a.image_size + 8} px -> {data}", flush=True)
    make_tiny_imagefolder(data, a.classes, a.train_per_class, a.val_per_class, a.image_size + 8, seed=0)

    overrides = {
        **CPU_OVERRIDES, "mode": a.mode, "data_dir": data, "num_classes": None, "batch_size": a.batch_size,
        "image_resize": a.image_size, "epoch_size": a.epochs, "warmup_epochs": 1, "decay_epochs": a.epochs - 1,
        # meant for 300 ImageNet epochs; they would keep a 6-epoch toy run from fitting
        "auto_augment": None, "mixup": 0.0, "re_prob": 0.0,
        "val_while_train": False, "log_interval": 4, "ckpt_save_dir": os.path.join(a.workdir, "ckpt"),
    }
    args = load_args(recipe, overrides)
    print(f"[demo] 2/3 training {a.model} ({'graph' if a.mode == 0 else 'PyNative'} mode, {a.epochs} epochs) "
          f"from {os.path.relpath(recipe, REPO)} + CPU overrides", flush=True)
    result = train(args)

    print("[demo] 3/3 validating the checkpoint in a fresh interpreter (validate.py path)", flush=True)
    val_json = os.path.join(a.workdir, "validate.json")
    sets = [f"{k}={json.dumps(v) if v is not None else 'null'}" for k, v in
            {**overrides, "ckpt_path": result["checkpoint"]}.items()]
    cmd = [sys.executable, os.path.join(HERE, "factory_validate.py"), "-c", recipe, "--result-json", val_json]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True)
    with open(val_json) as f:
        val = json.load(f)

    print("\n" + "=" * 72)
    print(f"model                 {result['model']} ({result['num_params']:,} parameters, "
          f"class {result['network_class']})")
    print(f"checkpoint            {result['checkpoint']}")
    print(f"train loss (eval)     {result['train_eval_before']['loss']:.4f} -> {result['train_eval_after']['loss']:.4f}")
    print(f"train top-1           {result['train_eval_before']['Top_1_Accuracy']:.2%} -> "
          f"{result['train_eval_after']['Top_1_Accuracy']:.2%}")
    print(f"val top-1 (validate)  {val['metrics']['Top_1_Accuracy']:.2%}  ({val['num_samples']} images)")
    print(f"training throughput   {result['images_per_second']:.1f} img/s (batch {a.batch_size}, "
          f"{a.image_size} px, first epoch excluded)")
    print(f"total time            {time.perf_counter() - t_start:.0f} s")
    print("=" * 72)


if __name__ == "__main__":
    main()
