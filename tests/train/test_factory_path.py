"""MindCV's train.py / validate.py path on CPU, driven from a recipe in fresh interpreters.

``scripts/factory_train.py`` and ``scripts/factory_validate.py`` call MindCV's factories in the
order ``train.py`` / ``validate.py`` do and never import ``mindcv_halonet``: the model is built by
name from MindCV's registry, which only the plugin's start-up hook can have filled.
"""
import json
import math
import re

import pytest

from tests.conftest import SCRIPTS_DIR
from tests.train.tiny_setup import (
    CPU, MODEL, NO_HEAVY_AUG, NUM_CLASSES, RECIPE, TINY, TRAIN_PER_CLASS, VAL_PER_CLASS, run_script, sets,
)

def train_then_validate(tmp_path, data, overrides):
    """Train in one fresh interpreter, validate the saved checkpoint in another."""
    common = {**CPU, **TINY, "data_dir": str(data), **overrides}
    result_file = tmp_path / "train.json"
    proc = run_script("factory_train.py", ["-c", str(RECIPE), *sets({**common, "ckpt_save_dir": str(tmp_path / "ckpt")}),
                                          "--result-json", str(result_file)], tmp_path)
    train = json.loads(result_file.read_text())
    val_file = tmp_path / "validate.json"
    run_script("factory_validate.py", ["-c", str(RECIPE), *sets({**common, "ckpt_path": train["checkpoint"]}),
                                       "--result-json", str(val_file)], tmp_path)
    return train, json.loads(val_file.read_text()), proc


def assert_common(train, val, proc):
    # the model came from the registry filled by the start-up hook
    assert train["network_class"].startswith("mindcv_halonet.") and train["mindcv_halonet_in_sys_modules"]
    assert val["network_class"] == train["network_class"]
    assert train["num_classes"] == NUM_CLASSES and train["train_count"] == NUM_CLASSES * TRAIN_PER_CLASS
    # MindCV's StateMonitor wrote the checkpoint validate.py loads
    assert re.search(rf"Saving model to .*{MODEL}-{train['epochs']}_{train['num_batches']}\.ckpt", proc.stdout + proc.stderr)
    assert all(math.isfinite(x) for x in train["step_losses"])
    assert len(train["step_losses"]) == train["epochs"] * train["num_batches"]
    # validate.py path in a fresh interpreter == in-process evaluation of the trained network
    assert val["num_samples"] == NUM_CLASSES * VAL_PER_CLASS
    assert val["metrics"]["Top_1_Accuracy"] == train["val_eval"]["Top_1_Accuracy"]
    assert val["metrics"]["loss"] == pytest.approx(train["val_eval"]["loss"], rel=1e-5, abs=1e-6)


def test_scripts_do_not_import_the_plugin():
    for script in ("factory_train.py", "factory_validate.py", "mindcv_args.py", "demo.py"):
        source = (SCRIPTS_DIR / script).read_text()
        assert not re.search(r"^\s*(import|from)\s+mindcv_halonet", source, re.M), script


def test_graph_mode_fits_the_tiny_set_and_validate_agrees(tmp_path, tiny_data):
    """Graph mode, the recipe's sink mode and val_while_train (val_interval 5), 6 epochs = 24 steps."""
    train, val, proc = train_then_validate(
        tmp_path, tiny_data, {"mode": 0, "epoch_size": 6, "decay_epochs": 5, **NO_HEAVY_AUG}
    )
    assert_common(train, val, proc)
    before, after = train["train_eval_before"], train["train_eval_after"]
    assert after["loss"] < 0.6 * before["loss"], (before, after)
    losses = train["step_losses"]
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
    assert after["Top_1_Accuracy"] >= 0.9, after
    assert train["val_eval"]["Top_1_Accuracy"] >= 0.9, train["val_eval"]
    assert "Validation Top_1_Accuracy" in proc.stdout + proc.stderr  # the recipe's val_while_train ran
    # throughput: recomputed here from the tiny set's size and the recorded epoch times (first epoch excluded)
    epochs = train["epoch_seconds"]
    assert len(epochs) == train["epochs"] == 6 and train["throughput_excludes_first_epoch"] is True
    assert sum(epochs) <= train["train_seconds"]
    images_per_epoch = NUM_CLASSES * TRAIN_PER_CLASS  # batch 16 x 4 batches, one device
    assert train["num_batches"] * TINY["batch_size"] == images_per_epoch
    assert train["images_per_second"] == pytest.approx(images_per_epoch / (sum(epochs[1:]) / len(epochs[1:])), rel=1e-12)


def test_pynative_mode_with_the_recipe_augmentations(tmp_path, tiny_data):
    """PyNative mode with the recipe's RandAugment, mixup 0.8, random erasing and colour jitter
    (slow on CPU, so one epoch of 4 steps): the path works, checkpoint and validate.py agree."""
    train, val, proc = train_then_validate(
        tmp_path, tiny_data, {"mode": 1, "epoch_size": 1, "decay_epochs": 0, "val_while_train": False}
    )
    assert_common(train, val, proc)
    assert train["args"]["auto_augment"].startswith("randaug") and train["args"]["mixup"] == 0.8
    assert train["args"]["re_prob"] == 0.25 and train["args"]["color_jitter"] == 0.4
    assert train["train_eval_after"] != train["train_eval_before"]  # the weights moved
