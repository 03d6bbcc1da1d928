"""MindCV's training arguments without MindCV's ``config.py`` (which is not in the PyPI package).

``MINDCV_DEFAULTS`` holds the default value of every option of MindCV's ``config.py`` (git
51b0636, version 0.5.0; ``tests/configs/mindcv_config_keys.txt`` lists the same keys and a test
keeps both in step). :func:`load_args` reproduces what ``config.parse_args`` does with ``-c
recipe.yaml``: defaults, overridden by the recipe, overridden by command-line style overrides.
Unknown keys raise ``ValueError`` (MindCV raises ``KeyError`` for them).
"""
import argparse
import os

import yaml

_IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
_IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

MINDCV_DEFAULTS = {
    # system
    "mode": 0, "distribute": False, "val_while_train": False, "val_interval": 1, "log_interval": 100,
    "seed": 42, "device_target": "Ascend",
    # dataset
    "dataset": "imagenet", "data_dir": "./", "train_split": "train", "val_split": "val",
    "dataset_download": False, "num_parallel_workers": 8, "shuffle": True, "num_samples": None,
    "batch_size": 128, "drop_remainder": True,
    # augmentation
    "image_resize": 224, "scale": (0.08, 1.0), "ratio": (0.75, 1.333), "hflip": 0.5, "vflip": 0.0,
    "color_jitter": 0.4, "interpolation": "bilinear", "auto_augment": None, "aug_splits": 0, "re_prob": 0.0,
    "re_scale": (0.02, 0.33), "re_ratio": (0.3, 3.3), "re_value": 0, "re_max_attempts": 10,
    "mean": _IMAGENET_MEAN, "std": _IMAGENET_STD, "crop_pct": 0.875, "mixup": 0.0, "cutmix": 0.0,
    "cutmix_prob": 1.0, "aug_repeats": 0,
    # model
    "model": "mobilenet_v2_035_224", "num_classes": None, "in_channels": 3, "drop_rate": None,
    "drop_path_rate": None, "pretrained": False, "ckpt_path": "", "resume_opt": False,
    "keep_checkpoint_max": 10, "ckpt_save_dir": "./ckpt", "ckpt_save_interval": 1,
    "ckpt_save_policy": "latest_k", "epoch_size": 90, "dataset_sink_mode": True, "ema": False,
    "ema_decay": 0.9999, "clip_grad": False, "clip_value": 15.0, "layer_decay": None,
    "gradient_accumulation_steps": 1,
    # optimizer
    "opt": "adam", "momentum": 0.9, "weight_decay": 1e-6, "use_nesterov": False,
    "weight_decay_filter": "disable", "eps": 1e-10,
    # scheduler
    "scheduler": "cosine_decay", "lr": 0.001, "min_lr": 1e-6, "warmup_epochs": 3, "warmup_factor": 0.0,
    "decay_epochs": 100, "decay_rate": 0.9, "multi_step_decay_milestones": [30, 60, 90],
    "lr_epoch_stair": False, "num_cycles": 1, "cycle_decay": 1.0,
    # loss
    "loss": "CE", "label_smoothing": 0.0, "aux_factor": 0.0, "reduction": "mean",
    # mixed precision
    "amp_level": "O0", "val_amp_level": "O0", "amp_cast_list": None, "loss_scale_type": "fixed",
    "loss_scale": 1.0, "drop_overflow_update": False, "eval_shuffle": False,
    # the -c/--config option itself
    "config": "",
}

# What a CPU run needs on top of an Ascend recipe (docs/ascend.md "CPU overrides"): no data parallelism,
# as many data workers as cores, fp32, the CPU backend, and a loss scale without overflow check (MindSpore
# refuses the recipes' dynamic, overflow-skipping one on CPU; a fixed scale in fp32 changes nothing).
# drop_overflow_update=False can only come from YAML or a dict like this one: MindCV's config.py parses
# `--drop_overflow_update False` on the command line as True (type=bool).
CPU_OVERRIDES = {"device_target": "CPU", "distribute": False, "num_parallel_workers": 2,
                 "amp_level": "O0", "val_amp_level": "O0", "loss_scale_type": "fixed", "drop_overflow_update": False}


def _check_keys(keys, where):
    unknown = sorted(set(keys) - set(MINDCV_DEFAULTS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; accepted are the options of MindCV's config.py "
            f"(e.g. {', '.join(sorted(MINDCV_DEFAULTS)[:6])}, ...)"
        )


def parse_override(text: str):
    """``'key=value'`` -> ``(key, value)``, the value read as YAML (``null``, ``False``, ``[1, 2]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is invalid; expected key=value, e.g. batch_size=16")
    return key.strip(), yaml.safe_load(value)


def load_args(recipe_path=None, overrides=None) -> argparse.Namespace:
    """MindCV defaults <- recipe YAML <- ``overrides`` (a dict), as an ``argparse.Namespace``."""
    args = dict(MINDCV_DEFAULTS)
    if recipe_path:
        if not os.path.isfile(recipe_path):
            raise ValueError(f"recipe_path={recipe_path!r} is not a file")
        with open(recipe_path) as f:
            recipe = yaml.safe_load(f) or {}
        if not isinstance(recipe, dict):
            raise ValueError(f"recipe_path={recipe_path!r} does not hold a YAML mapping")
        _check_keys(recipe, f"recipe {recipe_path}")
        args.update(recipe)
        args["config"] = recipe_path
    overrides = dict(overrides or {})
    _check_keys(overrides, "overrides")
    args.update(overrides)
    return argparse.Namespace(**args)
