"""Files: the one atomic write, the one output-path check, the sha256 of a file.

:func:`atomic_write` makes a temporary directory beside the destination, lets the caller write the
file there, gives it the usual permissions (umask) and moves it over the destination with
``os.replace`` (atomic on POSIX and Windows). A failure at any point leaves no partial output behind
and an existing destination untouched. Every file this package writes goes through it: converted
checkpoints, exported MINDIR / ONNX graphs, the converted cache's refs, the Hub cache's refs.
"""
import hashlib
import os
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import numpy as np

_CHUNK = 1 << 20


def check_output_path(path: str, extensions: Union[str, Sequence[str]] = (".ckpt",), overwrite: bool = True,
                      name: str = "output", context: str = "") -> str:
    """Raise ``ValueError`` (naming ``name``, the value and what is accepted) unless ``path`` ends in one
    of ``extensions``, its directory exists and is writable, it is not a directory, and it does not exist
    unless ``overwrite``. ``context`` is added after "is not accepted" (e.g. " for format ONNX").
    Returns the absolute path."""
    exts = (extensions,) if isinstance(extensions, str) else tuple(extensions)
    if not isinstance(path, str) or not path.lower().endswith(exts):
        raise ValueError(f"{name}={path!r} is not accepted{context}; expected a path ending in {' or '.join(exts)}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{name}={path!r}: directory {directory!r} does not exist; expected an existing directory")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"{name}={path!r}: directory {directory!r} is not writable")
    if os.path.isdir(path):
        raise ValueError(f"{name}={path!r} is a directory; expected a file path ending in {' or '.join(exts)}")
    if not overwrite and os.path.exists(path):
        raise ValueError(f"{name}={path!r} already exists (pass --overwrite / overwrite=True to replace it)")
    return os.path.abspath(path)


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(tmp)`` to create the file ``tmp`` (same base name as ``path``, in a temporary directory
    beside it), then move it to ``path``. Returns ``path``. ``write`` may create the file under any mode;
    it gets the permissions a plain ``open(path, "w")`` would give."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        tmp = os.path.join(tmp_dir, os.path.basename(path))
        write(tmp)
        if not os.path.isfile(tmp):
            raise RuntimeError(f"writing {path}: the writer produced {sorted(os.listdir(tmp_dir))}, not {tmp}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def write_text_atomic(path: str, text: str) -> str:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def save_checkpoint_atomic(params: Dict[str, np.ndarray], path: str, order: Optional[Iterable[str]] = None) -> int:
    """Save ``params`` (in ``order`` if given) as a MindSpore ``.ckpt`` at ``path``; returns its size in bytes."""
    import mindspore as ms

    names = list(order) if order is not None else list(params)
    entries = [{"name": name, "data": ms.Tensor(np.ascontiguousarray(params[name]))} for name in names]
    atomic_write(path, lambda tmp: ms.save_checkpoint(entries, tmp))
    return os.path.getsize(path)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
