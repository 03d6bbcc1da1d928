"""Every recipe in configs/halonet/ is one MindCV's config.py accepts, for every registered variant."""
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
CONFIG_DIR = HERE.parent.parent / "configs" / "halonet"
KEYS_FILE = HERE / "mindcv_config_keys.txt"
RECIPES = sorted(CONFIG_DIR.glob("*.yaml"))


def read_accepted_keys(path=KEYS_FILE):
    """``{key: note}``; note is the trailing comment (e.g. ``not in v0.3.0 ...``) or ''."""
    keys = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, note = line.partition("#")
        keys[key.strip()] = note.strip()
    return keys


def unaccepted_keys(recipe: dict, accepted: dict) -> list:
    """Keys MindCV's config.py would reject (its ``_check_cfgs_in_parser`` raises KeyError), plus
    keys only newer MindCV versions accept (so the recipe also works with the PyPI release)."""
    return sorted(k for k in recipe if k not in accepted or accepted[k].startswith("not in"))


def load(path):
    with open(path) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def test_key_list_is_test_data_with_its_source():
    header = KEYS_FILE.read_text().splitlines()[:3]
    assert any("Source:" in line and "mindspore-lab/mindcv" in line for line in header)
    keys = read_accepted_keys()
    assert len(keys) > 80 and {"model", "lr", "batch_size", "amp_level", "scheduler"} <= set(keys)


def test_checker_rejects_unknown_and_too_new_keys():
    accepted = read_accepted_keys()
    assert unaccepted_keys({"model": "x", "learning_rate": 0.1, "device_target": "CPU"}, accepted) == [
        "device_target",
        "learning_rate",
    ]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_keys_are_accepted_by_mindcv_config(path):
    assert unaccepted_keys(load(path), read_accepted_keys()) == []


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_consistent(path):
    r = load(path)
    assert path.name == f"{r['model']}_ascend.yaml"
    assert r["warmup_epochs"] + r["decay_epochs"] == r["epoch_size"]
    assert r["distribute"] is True and r["mode"] == 0
    assert r["dataset"] == "imagenet" and r["num_classes"] == 1000


def test_recipe_for_every_registered_variant_with_its_image_size():
    from mindcv_halonet.models import default_cfgs

    by_model = {load(p)["model"]: load(p) for p in RECIPES}
    assert set(by_model) == set(default_cfgs)
    for name, recipe in by_model.items():
        assert recipe["image_resize"] == default_cfgs[name]["input_size"][-1], name


SEED_RECIPE = dict(
    model="halonet_50t", batch_size=64, distribute=True, mode=0, opt="adamw", lr=0.00125, weight_decay=0.04,
    scheduler="warmup_cosine_decay", warmup_epochs=3, decay_epochs=297, epoch_size=300, min_lr=0.000006,
    mixup=0.8, re_prob=0.25, color_jitter=0.4, label_smoothing=0.1, image_resize=256, crop_pct=0.95,
    amp_level="O3", loss_scale=1024, dataset="imagenet", num_classes=1000, loss="CE",
)


def test_halonet_50t_recipe_is_the_seed_recipe():
    r = load(CONFIG_DIR / "halonet_50t_ascend.yaml")
    assert {k: r.get(k) for k in SEED_RECIPE} == SEED_RECIPE
    assert r["auto_augment"].startswith("randaug-m9-n2")


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_skips_overflowing_steps_and_adapts_its_scale(path):
    """A fixed scale without drop_overflow_update writes inf/NaN into every weight on 910B (issue 14);
    tests/configs/test_overflow.py shows what MindCV builds from these keys and what it does."""
    r = load(path)
    assert r.get("loss_scale_type") == "dynamic", "fixed: the scale never adapts (and never skips without drop)"
    assert r.get("drop_overflow_update") is True, "MindCV raises for dynamic without drop_overflow_update: True"
    assert r.get("loss_scale", 1.0) >= 1.0
