"""``scripts/digits_imagefolder.py``: scikit-learn's digits as a stratified, deterministic ImageFolder."""
import json
import os
import sys

import numpy as np
import pytest

from tests.conftest import SCRIPTS_DIR

sys.path.insert(0, str(SCRIPTS_DIR))
from digits_imagefolder import MANIFEST, make_digits_imagefolder, split_digits, to_rgb  # noqa: E402



def test_split_is_stratified_disjoint_and_complete():
    images, labels, train, val = split_digits(0.2, seed=0)
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1797
    assert len(val) == 360  # ceil(0.2 * 1797)
    full = np.bincount(labels, minlength=10)
    val_counts = np.bincount(labels[val], minlength=10)
    # stratified: every class's share of val is 20 % of its count, up to rounding (+-1 image)
    assert np.all(np.abs(val_counts - 0.2 * full) <= 1), (val_counts, full)
    assert np.array_equal(np.bincount(labels[train], minlength=10) + val_counts, full)


def test_split_is_deterministic_and_the_seed_matters():
    a, b, c = split_digits(0.2, 0), split_digits(0.2, 0), split_digits(0.2, 1)
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
    assert not np.array_equal(a[3], c[3])


def test_nearest_upscale_keeps_the_scan():
    images, _, _, _ = split_digits(0.2, 0)
    rgb = to_rgb(images[5], 32)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[::4, ::4, 0], np.rint(images[5] * 255 / 16).astype(np.uint8))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_imagefolder_counts_and_idempotence(tmp_path):
    root = tmp_path / "data"
    info = make_digits_imagefolder(str(root), image_size=32)
    assert info["written"] is True
    _, labels, train, val = split_digits(0.2, 0)
    for split, idx, key in (("train", train, "train_per_class"), ("val", val, "val_per_class")):
        assert sorted(os.listdir(root / split)) == [f"digit_{k}" for k in range(10)]
        counts = [len(os.listdir(root / split / f"digit_{k}")) for k in range(10)]
        assert counts == info[key] == np.bincount(labels[idx], minlength=10).tolist()
    # file names are load_digits() indices, and each sits in its label's folder
    names = {int(n[:-4]): k for k in range(10) for n in os.listdir(root / "val" / f"digit_{k}")}
    assert sorted(names) == sorted(val.tolist()) and all(labels[i] == k for i, k in names.items())
    from PIL import Image

    with Image.open(root / "val" / f"digit_{labels[val[0]]}" / f"{val[0]:04d}.png") as img:
        assert img.size == (32, 32) and img.mode == "RGB"

    stamp = os.stat(root / MANIFEST).st_mtime_ns
    assert make_digits_imagefolder(str(root), image_size=32)["written"] is False  # up to date: reused
    assert os.stat(root / MANIFEST).st_mtime_ns == stamp
    os.remove(root / "train" / "digit_3" / sorted(os.listdir(root / "train" / "digit_3"))[0])
    assert make_digits_imagefolder(str(root), image_size=32)["written"] is True  # incomplete: rewritten
    assert make_digits_imagefolder(str(root), image_size=16)["written"] is True  # different: rewritten
    assert json.loads((root / MANIFEST).read_text())["image_size"] == 16
    assert sorted(os.listdir(tmp_path)) == ["data"]  # no temporary directories left


@pytest.mark.parametrize("kwargs,match", [({"image_size": 4}, "image_size=4 is invalid"),
                                          ({"val_fraction": 1.5}, r"val_fraction=1.5 is invalid"),
                                          ({"seed": -1}, "seed=-1 is invalid")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_digits_imagefolder(str(tmp_path / "data"), **kwargs)
    assert os.listdir(tmp_path) == []
