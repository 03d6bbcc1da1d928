"""Write scikit-learn's bundled handwritten digits as an ImageFolder (``root/<split>/digit_<k>/<n>.png``).

``sklearn.datasets.load_digits()`` ships 1,797 real 8x8 scans (16 grey levels, 10 classes) inside
the scikit-learn package, so nothing is downloaded. They are split once, stratified and seeded
(``train_test_split(..., stratify=labels, random_state=seed)``, default 80/20: 1,437 train / 360 val
images, every class in the same proportion in both splits), and written as lossless PNGs upscaled
with **nearest-neighbour** to ``image_size`` (default 32 px):

* nearest keeps exactly the scan's 17 grey values (0..16 -> 0..255) as uniform 4x4 squares; the
  interpolation the network sees is then MindCV's own (its resize/crop transforms), not a second
  one baked into the files;
* 32 px makes HaloNet's stride-4 stem output exactly the scan's 8x8 grid.

The set is written to a temporary sibling directory and renamed into place, and only when it is
missing or differs from what the arguments describe (``root/digits_split.json`` records the
arguments and a digest of the split); so ``root`` is either absent or complete. This is the layout
MindCV's ``create_dataset('imagenet', root, split)`` reads. Usage::

    python scripts/digits_imagefolder.py OUT_DIR [--image-size 32] [--val-fraction 0.2] [--seed 0]
"""
import argparse
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

MANIFEST = "digits_split.json"
NUM_CLASSES = 10
# bump when the file layout or the pixel mapping changes (forces a rewrite of existing sets)
FORMAT_VERSION = 1


def class_dir_name(k: int) -> str:
    return f"digit_{k}"


def split_digits(val_fraction: float = 0.2, seed: int = 0):
    """``(images, labels, train_idx, val_idx)``: the 1,797 scans (N x 8 x 8, values 0..16), their labels
    and a stratified, seeded split of their indices (each sorted ascending)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} is invalid; expected a number in (0, 1), e.g. 0.2")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid; expected an integer >= 0")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, labels = digits.images, digits.target.astype(np.int64)
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed, shuffle=True
    )
    return images, labels, np.sort(train_idx), np.sort(val_idx)


def to_rgb(scan: np.ndarray, image_size: int) -> np.ndarray:
    """One 8x8 scan (0..16) -> ``image_size`` x ``image_size`` x 3 uint8, nearest-neighbour upscaled."""
    from PIL import Image  # pillow comes with mindspore

    grey = np.rint(np.asarray(scan, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    big = Image.fromarray(grey).resize((image_size, image_size), resample=Image.NEAREST)
    return np.repeat(np.asarray(big)[:, :, None], 3, axis=2)


def _manifest(image_size, val_fraction, seed, labels, train_idx, val_idx) -> dict:
    digest = hashlib.sha256()
    for part in (train_idx, val_idx, labels):
        digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    count = lambda idx: [int(c) for c in np.bincount(labels[idx], minlength=NUM_CLASSES)]  # noqa: E731
    return {
        "format_version": FORMAT_VERSION, "source": "sklearn.datasets.load_digits", "image_size": image_size,
        "val_fraction": val_fraction, "seed": seed, "split_sha256": digest.hexdigest(),
        "train_per_class": count(train_idx), "val_per_class": count(val_idx),
    }


def _is_complete(root: str, manifest: dict) -> bool:
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            if json.load(f) != manifest:
                return False
    except (OSError, ValueError):
        return False
    for split, key in (("train", "train_per_class"), ("val", "val_per_class")):
        for k, expected in enumerate(manifest[key]):
            d = os.path.join(root, split, class_dir_name(k))
            if not os.path.isdir(d) or len([n for n in os.listdir(d) if n.endswith(".png")]) != expected:
                return False
    return True


def make_digits_imagefolder(root: str, image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Make sure ``root`` holds the digits ImageFolder described by the arguments; returns its manifest
    (plus ``"written": True/False``, whether this call wrote it)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size={image_size!r} is invalid; expected an integer >= 8 (the scans are 8x8)")
    images, labels, train_idx, val_idx = split_digits(val_fraction, seed)
    manifest = _manifest(image_size, val_fraction, seed, labels, train_idx, val_idx)
    root = os.path.abspath(root)
    if _is_complete(root, manifest):
        return {**manifest, "written": False}

    from PIL import Image

    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".digits_imagefolder-", dir=parent)
    try:
        for split, idx in (("train", train_idx), ("val", val_idx)):
            for k in range(NUM_CLASSES):
                os.makedirs(os.path.join(tmp, split, class_dir_name(k)))
            for i in idx:  # file name = index in load_digits(), so a file traces back to its scan
                path = os.path.join(tmp, split, class_dir_name(int(labels[i])), f"{int(i):04d}.png")
                Image.fromarray(to_rgb(images[i], image_size)).save(path)
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        if os.path.lexists(root):
            old = tempfile.mkdtemp(prefix=".digits_imagefolder-old-", dir=parent)
            os.replace(root, os.path.join(old, "data"))  # move aside first: root is never half-deleted
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**manifest, "written": True}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    try:
        info = make_digits_imagefolder(a.root, a.image_size, a.val_fraction, a.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(info, sort_keys=True))


if __name__ == "__main__":
    main()
