"""Read a checkpoint file into ``{name: numpy.ndarray}``.

Supported inputs (chosen by file extension):

* timm: ``.safetensors`` (``safetensors.numpy``, no torch needed), ``.npz`` (NumPy archive of
  named arrays), ``.pth`` / ``.pt`` / ``.bin`` (PyTorch pickles: need torch; loaded with
  ``weights_only=True``).
* MindCV: ``.ckpt`` (``mindspore.load_checkpoint``).

:func:`read_checkpoint` is the one way a MindSpore checkpoint is read for a network (convert
``--from mindcv``, check, export): its tensors, with the training state split off.

``check_input_path`` validates path and extension cheaply, so the command line can reject bad
arguments before any expensive work.
"""
import os
from typing import Callable, Dict, Mapping, Optional

import numpy as np

from .errors import InputFileError

TIMM_EXTENSIONS = (".safetensors", ".npz", ".pth", ".pt", ".bin")
MINDCV_EXTENSIONS = (".ckpt",)
EXTENSIONS = {"timm": TIMM_EXTENSIONS, "mindcv": MINDCV_EXTENSIONS}

# containers that training scripts wrap a PyTorch state dict in, most preferred first
_TORCH_WRAPPER_KEYS = ("state_dict", "model", "module")

# Entries of a MindSpore training checkpoint that are optimizer / loop state, not network tensors.
_TRAINING_STATE_PREFIXES = ("moments.", "accum.", "adam_m.", "adam_v.", "exp_avg.", "exp_avg_sq.")
_TRAINING_STATE_NAMES = frozenset({
    "global_step", "learning_rate", "momentum", "beta1_power", "beta2_power", "scale_sense",
    "current_iterator_step", "last_overflow_iterator_step", "epoch_num", "step_num", "loss_scale",
})

# progress(done, total) is called once per tensor read
ProgressFn = Optional[Callable[[int, int], None]]


def file_extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def check_input_path(path: str, source: str) -> None:
    """Raise ``ValueError`` unless ``path`` is an existing file with an extension ``source`` supports."""
    if source not in EXTENSIONS:
        raise ValueError(f"source={source!r} is not supported; expected one of {sorted(EXTENSIONS)}")
    accepted = EXTENSIONS[source]
    ext = file_extension(path)
    if ext not in accepted:
        raise ValueError(
            f"input={path!r} has extension {ext or '(none)'!r}, which --from {source} does not read; "
            f"expected one of {', '.join(accepted)}")
    if not os.path.isfile(path):
        raise ValueError(f"input={path!r} does not exist or is not a file; expected an existing {ext} file")


#: entries an EMA-enabled MindCV training run adds (``validate.py --ema`` loads these instead)
EMA_PREFIX = "ema."


def split_training_state(state: Dict[str, np.ndarray]):
    """Split a MindSpore checkpoint into (network tensors, sorted names of optimizer / loop state and
    ``ema.*`` entries)."""
    network, dropped = {}, []
    for name, value in state.items():
        if (name in _TRAINING_STATE_NAMES or name.startswith(_TRAINING_STATE_PREFIXES)
                or name.startswith(EMA_PREFIX)):
            dropped.append(name)
        else:
            network[name] = value
    return network, sorted(dropped)


def _read_safetensors(path: str, progress: ProgressFn) -> Dict[str, np.ndarray]:
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(path, framework="numpy") as f:
            names = list(f.keys())
            for i, name in enumerate(names):
                state[name] = f.get_tensor(name)
                if progress:
                    progress(i + 1, len(names))
    except (TypeError, ValueError) as exc:  # e.g. bfloat16, which NumPy has no dtype for
        raise InputFileError(
            f"input={path!r}: safetensors could not give NumPy arrays ({exc}); "
            "save the weights as float32 (or pass the .pth file with torch installed)") from exc
    return state


def _read_npz(path: str, progress: ProgressFn) -> Dict[str, np.ndarray]:
    state = {}
    with np.load(path, allow_pickle=False) as archive:
        for i, name in enumerate(archive.files):
            state[name] = archive[name]
            if progress:
                progress(i + 1, len(archive.files))
    return state


def _unwrap_torch_checkpoint(obj, path: str):
    if isinstance(obj, dict):
        for key in _TORCH_WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return obj[key]
        return obj
    raise InputFileError(f"input={path!r} holds a {type(obj).__name__}, expected a state dict (name -> tensor)")


def _read_torch(path: str, progress: ProgressFn) -> Dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise InputFileError(
            f"input={path!r}: reading {file_extension(path)} files needs PyTorch, which is not importable "
            f"here ({exc}); install torch, or convert the file to .safetensors / .npz first") from exc
    obj = torch.load(path, map_location="cpu", weights_only=True)
    raw = _unwrap_torch_checkpoint(obj, path)
    state = {}
    for i, (name, value) in enumerate(raw.items()):
        if not isinstance(value, torch.Tensor):
            raise InputFileError(f"input={path!r}: entry {name!r} is a {type(value).__name__}, expected a tensor")
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        state[name] = value.numpy()
        if progress:
            progress(i + 1, len(raw))
    # checkpoints saved from DataParallel / DistributedDataParallel prefix every key with "module."
    if state and all(name.startswith("module.") for name in state):
        state = {name[len("module."):]: value for name, value in state.items()}
    return state


def _read_mindspore(path: str, progress: ProgressFn) -> Dict[str, np.ndarray]:
    import mindspore as ms

    params = ms.load_checkpoint(path)
    state = {}
    for i, (name, param) in enumerate(params.items()):
        state[name] = param.asnumpy()
        if progress:
            progress(i + 1, len(params))
    return state


_READERS = {
    ".safetensors": _read_safetensors,
    ".npz": _read_npz,
    ".pth": _read_torch,
    ".pt": _read_torch,
    ".bin": _read_torch,
    ".ckpt": _read_mindspore,
}


_FORMAT_NAMES = {
    ".safetensors": "safetensors", ".npz": "NumPy .npz archive", ".pth": "PyTorch checkpoint",
    ".pt": "PyTorch checkpoint", ".bin": "PyTorch checkpoint", ".ckpt": "MindSpore checkpoint",
}


def read_state(path: str, source: str, progress: ProgressFn = None) -> Dict[str, np.ndarray]:
    """Load every tensor of ``path`` as NumPy arrays; ``progress(done, total)`` is called per tensor.

    Raises ``ValueError`` for a bad path/extension and :class:`InputFileError` (a ``ValueError``)
    naming the file when it cannot be parsed (truncated, corrupt, another format, no tensors).
    """
    check_input_path(path, source)
    ext = file_extension(path)
    try:
        state = _READERS[ext](path, progress)
    except InputFileError:
        raise
    except Exception as exc:  # the format libraries raise anything from OSError to their own error types
        size = os.path.getsize(path)
        detail = " ".join(str(exc).split()) or "no detail"
        raise InputFileError(
            f"input={path!r} ({size} bytes) is not a readable {_FORMAT_NAMES[ext]}: {type(exc).__name__}: "
            f"{detail}; the file is truncated or corrupt (e.g. an interrupted download or copy) -- "
            f"expected a complete {ext} file") from exc
    if not state:
        raise InputFileError(f"input={path!r} contains no tensors; expected a {_FORMAT_NAMES[ext]} with the weights")
    return state


def read_checkpoint(path: str, progress: ProgressFn = None):
    """A MindSpore ``.ckpt`` -> ``(network tensors, ignored names)``: optimizer / training-loop state and
    ``ema.*`` entries are split off (see :func:`split_training_state`)."""
    return split_training_state(read_state(path, "mindcv", progress=progress))


def head_classes(state: Mapping[str, np.ndarray], classifier: str = "head.fc") -> Optional[int]:
    """Number of classes of the classifier ``{classifier}.weight`` in a state dict (None if it has none)."""
    weight = state.get(classifier + ".weight")
    return int(weight.shape[0]) if weight is not None and np.ndim(weight) == 2 else None
