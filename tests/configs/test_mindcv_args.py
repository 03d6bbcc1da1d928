"""scripts/mindcv_args.py: MindCV's defaults as data, recipe loading and overrides."""
import importlib.util

import pytest

from tests.conftest import CONFIG_DIR, SCRIPTS_DIR
from tests.configs.test_recipes import read_accepted_keys


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", SCRIPTS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mindcv_args = _load("mindcv_args")


def test_defaults_cover_exactly_the_keys_of_mindcv_config():
    assert set(mindcv_args.MINDCV_DEFAULTS) == set(read_accepted_keys())


def test_recipe_then_overrides():
    args = mindcv_args.load_args(CONFIG_DIR / "halonet_50t_ascend.yaml", {"batch_size": 4, "num_classes": None})
    assert args.model == "halonet_50t" and args.lr == 0.00125  # from the recipe
    assert args.batch_size == 4 and args.num_classes is None  # overridden
    assert args.hflip == 0.5 and args.eps == 1e-10  # MindCV defaults


def test_unknown_keys_are_rejected_with_the_key_named(tmp_path):
    with pytest.raises(ValueError, match=r"overrides: unknown key\(s\) \['learning_rate'\]"):
        mindcv_args.load_args(None, {"learning_rate": 0.1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: halonet_50t\nbatchsize: 8\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['batchsize'\]"):
        mindcv_args.load_args(str(bad))
    with pytest.raises(ValueError, match="recipe_path='/no/such.yaml' is not a file"):
        mindcv_args.load_args("/no/such.yaml")


@pytest.mark.parametrize("text, expected", [
    ("batch_size=16", ("batch_size", 16)), ("num_classes=null", ("num_classes", None)),
    ("distribute=False", ("distribute", False)), ("scale=[0.5, 1.0]", ("scale", [0.5, 1.0])),
    ("data_dir=/tmp/x", ("data_dir", "/tmp/x")),
])
def test_parse_override(text, expected):
    assert mindcv_args.parse_override(text) == expected


@pytest.mark.parametrize("text", ["batch_size", "=3", ""])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(ValueError, match="expected key=value"):
        mindcv_args.parse_override(text)


def test_tiny_imagefolder_layout_and_validation(tmp_path):
    tiny = _load("tiny_imagefolder")
    root = tiny.make_tiny_imagefolder(str(tmp_path / "d"), num_classes=3, train_per_class=2, val_per_class=1,
                                      image_size=16)
    files = sorted(p.relative_to(root).as_posix() for p in __import__("pathlib").Path(root).rglob("*.jpg"))
    assert files == [f"{s}/class_{k}/{n:04d}.jpg" for s, per in (("train", 2), ("val", 1))
                     for k in range(3) for n in range(per)]
    with pytest.raises(ValueError, match="num_classes=9 is invalid"):
        tiny.make_tiny_imagefolder(str(tmp_path / "e"), num_classes=9)
    with pytest.raises(ValueError, match="image_size=4 is invalid"):
        tiny.make_tiny_imagefolder(str(tmp_path / "e"), image_size=4)
    assert not (tmp_path / "e").exists()
