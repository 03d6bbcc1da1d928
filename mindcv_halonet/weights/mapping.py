"""Generic renaming machinery shared by the timm and the MindCV-built-in converters.

A conversion is ``source state dict --rename--> candidate names --match--> target parameters``:

1. :func:`rename_batchnorm` finds BatchNorm modules *by content* (a module that owns a
   ``running_mean`` is a BatchNorm, whatever its name or prefix) and renames PyTorch's
   ``weight/bias/running_mean/running_var`` to MindSpore's ``gamma/beta/moving_mean/moving_variance``.
   ``num_batches_tracked`` (a PyTorch step counter, no MindSpore counterpart) is dropped.
2. :func:`apply_rules` applies an ordered table of :class:`RenameRule` regex substitutions
   (structural differences such as ``head.fc`` -> ``classifier``).
3. :func:`match_to_target` pairs the candidates with the target network's parameters
   (names, shapes) *strictly*: every target filled, every source consumed, every shape equal.
   The only reshape ever done is inserting/removing axes of length 1 (the memory layout is
   unchanged, e.g. a PyTorch Conv1d kernel ``(1, 1, k)`` stored as a Conv2d kernel ``(1, 1, 1, k)``).
   Anything else raises :class:`ConversionError` listing every missing, unexpected and
   mis-shaped name.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, List, Mapping, Sequence, Tuple, Union

import numpy as np

from .errors import ConversionError

BN_TORCH_TO_MS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
BN_DROPPED = ("num_batches_tracked",)


@dataclass(frozen=True)
class RenameRule:
    """``re.sub(pattern, replacement, key)``; ``why`` documents the naming difference it bridges.

    ``replacement`` is a ``re.sub`` replacement: a template string or a function of the match.
    """

    pattern: str
    replacement: Union[str, Callable[["re.Match"], str]]
    why: str = ""

    def apply(self, key: str) -> str:
        return re.sub(self.pattern, self.replacement, key)


def _split(key: str) -> Tuple[str, str]:
    """``"a.b.weight"`` -> ``("a.b.", "weight")``; ``"weight"`` -> ``("", "weight")``."""
    head, _, leaf = key.rpartition(".")
    return (head + "." if head else ""), leaf


def batchnorm_prefixes(names: Iterable[str], marker: str = "running_mean") -> set:
    """Module prefixes (with trailing dot, ``""`` for a bare module) that own a ``marker`` entry."""
    return {_split(name)[0] for name in names if _split(name)[1] == marker}


def rename_batchnorm(state: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """PyTorch BatchNorm entry names -> MindSpore names; drops ``num_batches_tracked``."""
    bn = batchnorm_prefixes(state)
    out = OrderedDict()
    for key, value in state.items():
        prefix, leaf = _split(key)
        if prefix in bn:
            if leaf in BN_DROPPED:
                continue
            key = prefix + BN_TORCH_TO_MS.get(leaf, leaf)
        out[key] = value
    return out


def apply_rules(state: Mapping[str, np.ndarray], rules: Sequence[RenameRule]) -> "OrderedDict[str, np.ndarray]":
    """Rename every key through ``rules`` in order; two keys landing on one name is an error."""
    out = OrderedDict()
    origin = {}
    for key, value in state.items():
        new = key
        for rule in rules:
            new = rule.apply(new)
        if new in out:
            raise ConversionError(
                f"renaming is not one-to-one: {origin[new]!r} and {key!r} both become {new!r}")
        origin[new] = key
        out[new] = value
    return out


def _without_unit_axes(shape: Sequence[int]) -> Tuple[int, ...]:
    return tuple(int(d) for d in shape if int(d) != 1)


def match_to_target(
    candidates: Mapping[str, np.ndarray],
    target: Mapping[str, Tuple[tuple, np.dtype]],
    description: str = "source",
    optional: Sequence[str] = (),
) -> Tuple["OrderedDict[str, np.ndarray]", List[str]]:
    """Strictly pair ``candidates`` with ``target`` (``{name: (shape, dtype)}``, in the network's order).

    ``optional``: target names that may be missing (e.g. a classifier that is re-initialised).
    Returns ``(params, reshaped)``: ``params`` in target order, cast to the target dtypes, and
    the names whose only change was adding/removing length-1 axes.
    """
    missing = [name for name in target if name not in candidates and name not in optional]
    unexpected = [name for name in candidates if name not in target]
    mis_shaped, reshaped = [], []
    params = OrderedDict()
    for name, (shape, dtype) in target.items():
        if name not in candidates:
            continue
        value = np.asarray(candidates[name])
        shape = tuple(int(d) for d in shape)
        if tuple(value.shape) != shape:
            if _without_unit_axes(value.shape) == _without_unit_axes(shape):
                value = value.reshape(shape)
                reshaped.append(name)
            else:
                mis_shaped.append((name, tuple(value.shape), shape))
                continue
        params[name] = value.astype(dtype, copy=False)
    if missing or unexpected or mis_shaped:
        raise ConversionError(
            f"{description} does not map one-to-one onto the target network "
            f"({len(candidates)} source tensors, {len(target)} target parameters)",
            missing=missing, unexpected=unexpected, mis_shaped=mis_shaped)
    return params, reshaped



def network_spec(net) -> "OrderedDict[str, Tuple[tuple, np.dtype]]":
    """``{name: (shape, numpy dtype)}`` of every parameter and BatchNorm statistic of ``net``, in network order.

    ``net`` is any MindSpore cell; this layer never builds one (the caller passes it in)."""
    import mindspore as ms

    spec = OrderedDict()
    for name, param in net.parameters_and_names():
        spec[name] = (tuple(param.shape), np.dtype(ms.dtype_to_nptype(param.dtype)))
    return spec


def load_into(net, state: Mapping[str, np.ndarray], description: str, optional: Sequence[str] = ()) -> List[str]:
    """Fill ``net`` from ``state`` after :func:`match_to_target` against it (raises :class:`ConversionError`
    listing every missing, unexpected and mis-shaped name, before anything is changed).

    ``optional``: parameter names that may be absent from ``state`` (they keep their values).
    Returns the names that were loaded."""
    import mindspore as ms

    params, _ = match_to_target(state, network_spec(net), description=description, optional=optional)
    own = dict(net.parameters_and_names())
    for name, value in params.items():
        own[name].set_data(ms.Tensor(value))
    return list(params)
