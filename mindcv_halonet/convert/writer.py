"""Write ``{name: numpy.ndarray}`` as a MindSpore ``.ckpt``, atomically.

The checkpoint is first written to a temporary file in the destination directory, then moved
over the destination with ``os.replace`` (atomic on POSIX and Windows). A failure at any point
leaves no partial output behind and an existing destination untouched.
"""
import os
import tempfile
from typing import Dict, Iterable, Optional

import numpy as np


def check_output_path(path: str, overwrite: bool = True) -> None:
    """Raise ``ValueError`` unless ``path`` ends in ``.ckpt`` and its directory exists and is writable."""
    if not path.lower().endswith(".ckpt"):
        raise ValueError(f"output={path!r} is not accepted; expected a path ending in .ckpt")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"output={path!r}: directory {directory!r} does not exist; expected an existing directory")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"output={path!r}: directory {directory!r} is not writable")
    if os.path.isdir(path):
        raise ValueError(f"output={path!r} is a directory; expected a file path ending in .ckpt")
    if not overwrite and os.path.exists(path):
        raise ValueError(f"output={path!r} already exists (pass --overwrite to replace it)")


def save_checkpoint_atomic(params: Dict[str, np.ndarray], path: str, order: Optional[Iterable[str]] = None) -> int:
    """Save ``params`` (in ``order`` if given) to ``path``; returns the file size in bytes."""
    import mindspore as ms

    names = list(order) if order is not None else list(params)
    entries = [{"name": name, "data": ms.Tensor(np.ascontiguousarray(params[name]))} for name in names]
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-", suffix=".ckpt")
    os.close(fd)
    try:
        ms.save_checkpoint(entries, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return os.path.getsize(path)
