"""Generate a tiny, class-separable ImageFolder data set (``root/<split>/<class>/<n>.jpg``).

Each class has its own colour; every image is that colour with per-image brightness jitter,
pixel noise and a darker square at a random place, so the classes are easy to separate but the
images are not identical. This is the layout MindCV's ``create_dataset('imagenet', root, split)``
reads. Usage::

    python scripts/tiny_imagefolder.py OUT_DIR [--classes 4] [--train-per-class 32] ...
"""
import argparse
import os
import shutil
import tempfile

import numpy as np

PALETTE = (
    (220, 40, 40),  # red
    (40, 180, 60),  # green
    (50, 80, 220),  # blue
    (230, 210, 40),  # yellow
    (200, 60, 200),  # magenta
    (40, 200, 210),  # cyan
    (240, 140, 30),  # orange
    (128, 128, 128),  # grey
)


def _check_positive_int(name, value, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (maximum and value > maximum):
        upper = f" and <= {maximum}" if maximum else ""
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= 1{upper}")


def make_image(rng: np.random.Generator, colour, size: int) -> np.ndarray:
    """One HxWx3 uint8 image of class colour ``colour``."""
    base = np.array(colour, dtype=np.float32) * rng.uniform(0.8, 1.1)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    side = int(rng.integers(size // 4, size // 2 + 1))
    top, left = rng.integers(0, size - side + 1, size=2)
    img[top : top + side, left : left + side] *= 0.6
    img += rng.normal(0.0, 12.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tiny_imagefolder(
    root: str,
    num_classes: int = 4,
    train_per_class: int = 32,
    val_per_class: int = 8,
    image_size: int = 64,
    seed: int = 0,
) -> str:
    """Write ``root/train`` and ``root/val`` (replacing an existing ``root``); returns ``root``.

    The data set is written to a temporary sibling directory and renamed into place, so ``root``
    is either absent or complete.
    """
    _check_positive_int("num_classes", num_classes, maximum=len(PALETTE))
    _check_positive_int("train_per_class", train_per_class)
    _check_positive_int("val_per_class", val_per_class)
    _check_positive_int("image_size", image_size)
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is invalid; expected an integer >= 8")
    from PIL import Image  # pillow comes with mindspore

    root = os.path.abspath(root)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tiny_imagefolder-", dir=parent)
    rng = np.random.default_rng(seed)
    try:
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            for k in range(num_classes):
                class_dir = os.path.join(tmp, split, f"class_{k}")
                os.makedirs(class_dir)
                for n in range(per_class):
                    img = make_image(rng, PALETTE[k], image_size)
                    Image.fromarray(img).save(os.path.join(class_dir, f"{n:04d}.jpg"), quality=95)
        if os.path.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=32)
    parser.add_argument("--val-per-class", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    path = make_tiny_imagefolder(a.root, a.classes, a.train_per_class, a.val_per_class, a.image_size, a.seed)
    print(path)


if __name__ == "__main__":
    main()
