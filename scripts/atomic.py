"""The scripts' one atomic write (the scripts do not import mindcv_halonet: MindCV's train.py path must
work without it; the package's own is mindcv_halonet.weights.files.atomic_write)."""
import os


def atomic_write(path: str, write) -> None:
    """``write(tmp)`` creates ``tmp`` beside ``path`` (same extension); it then replaces ``path`` in one step.
    After a failure nothing is left behind and an existing ``path`` is untouched."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{os.getpid()}{ext}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
