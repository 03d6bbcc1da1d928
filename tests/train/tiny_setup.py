"""Settings shared by the train-path tests: the recipe, CPU overrides and the tiny data set."""
import json
import subprocess
import sys

from tests.conftest import CONFIG_DIR, SCRIPTS_DIR, subprocess_env

MODEL = "halonet_26t"
RECIPE = CONFIG_DIR / f"{MODEL}_ascend.yaml"
IMAGE_SIZE = 32
NUM_CLASSES = 4
TRAIN_PER_CLASS = 16  # 64 images: 4 steps of 16 per epoch
VAL_PER_CLASS = 4

# What any CPU run of an Ascend recipe needs (README "CPU overrides") + the tiny data set.
CPU = {"device_target": "CPU", "distribute": False, "num_parallel_workers": 2, "amp_level": "O0",
       "val_amp_level": "O0", "loss_scale_type": "fixed", "drop_overflow_update": False}
TINY = {"num_classes": None, "batch_size": 16, "image_resize": IMAGE_SIZE, "log_interval": 1, "warmup_epochs": 1}
# Fitting 64 images in 24 steps: switch off the augmentations meant for 300 ImageNet epochs.
NO_HEAVY_AUG = {"auto_augment": None, "mixup": 0.0, "re_prob": 0.0}


def sets(overrides: dict) -> list:
    out = []
    for key, value in overrides.items():
        out += ["--set", f"{key}={json.dumps(value) if value is not None else 'null'}"]
    return out


def run_script(name, args, cwd, timeout=900):
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / name), *args],
        cwd=str(cwd), env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def make_tiny_data(root):
    subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "tiny_imagefolder.py"), str(root), "--classes", str(NUM_CLASSES),
         "--train-per-class", str(TRAIN_PER_CLASS), "--val-per-class", str(VAL_PER_CLASS),
         "--image-size", str(IMAGE_SIZE + 4)],
        check=True, capture_output=True,
    )
    return root
