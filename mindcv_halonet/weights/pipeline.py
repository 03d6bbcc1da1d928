"""Whole-model conversion: source state dict -> parameters of one of this plugin's networks.

``convert_state`` is the library entry point behind the ``mindcv-halonet-convert`` command:

1. resolve the variant pairing (``--from timm --model halonet50ts`` or ``... --model halonet_50t``);
2. rename the source to the canonical naming, then to ours;
3. take the target's parameter spec (names, shapes, dtypes of its parameters *and* BatchNorm
   statistics): from ``target_spec``, from a network passed in (``net``), or from a network made by the
   caller's factory ``build_net(variant, num_classes)`` -- this layer never builds a network by name;
4. re-head if asked (source ``head.fc.*`` dropped, the new head keeps the network's initial values);
5. match strictly (:func:`mapping.match_to_target`): any missing, unexpected or mis-shaped key
   raises :class:`ConversionError` listing all of them.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from mindcv_halonet.arguments import check_count
from .errors import ConversionError
from .mapping import match_to_target, network_spec
from .mindcv_builtin import FUNCTION_DIFFERENCES, MINDCV_TO_OURS, mindcv_to_canonical
from .readers import head_classes
from .timm import TIMM_TO_OURS, canonical_to_ours, timm_to_canonical

#: ``build_net(our_variant, num_classes) -> network`` (construction only), supplied by the model layer
NetFactory = Callable[[str, int], object]

SOURCES = ("timm", "mindcv")
# source -> {source variant: our variant}
PAIRINGS: Dict[str, Dict[str, str]] = {"timm": TIMM_TO_OURS, "mindcv": MINDCV_TO_OURS}
# (source, source variant) -> why the converted network is only the nearest equivalent
APPROXIMATE: Dict[Tuple[str, str], str] = {("mindcv", "halonet_50t"): FUNCTION_DIFFERENCES}
_TO_CANONICAL: Dict[str, Callable] = {"timm": timm_to_canonical, "mindcv": mindcv_to_canonical}

HEAD_PREFIX = "head.fc."  # classifier parameters, in the canonical naming and in ours


def supported_pairings(source: Optional[str] = None) -> List[str]:
    sources = [source] if source else list(SOURCES)
    return [f"--from {s}: {src} -> {ours}" for s in sources for src, ours in PAIRINGS[s].items()]


def resolve_variant(source: str, model: str) -> Tuple[str, str]:
    """``model`` may name the source variant or ours; returns ``(source_variant, our_variant)``."""
    if source not in PAIRINGS:
        raise ValueError(f"source={source!r} is not supported; expected one of {list(SOURCES)}")
    table = PAIRINGS[source]
    if model in table:
        return model, table[model]
    matches = [src for src, ours in table.items() if ours == model]
    if len(matches) == 1:
        return matches[0], model
    raise ValueError(
        f"model={model!r} has no conversion from {source}; supported (source name or ours): "
        + "; ".join(f"{src} -> {ours}" for src, ours in table.items()))


@dataclass
class ConversionResult:
    params: "OrderedDict[str, np.ndarray]"
    source_variant: str
    variant: str
    num_classes: int
    source_num_classes: Optional[int]
    dropped: List[str] = field(default_factory=list)   # source names deliberately not carried over
    reheaded: List[str] = field(default_factory=list)  # target names filled from the network's init
    reshaped: List[str] = field(default_factory=list)  # only length-1 axes added/removed
    approximate: Optional[str] = None                  # why the function differs, if it does


def convert_state(
    state: Mapping[str, np.ndarray],
    source: str,
    model: str,
    num_classes: Optional[int] = None,
    allow_approximate: bool = False,
    net=None,
    target_spec: Optional[Mapping[str, Tuple[tuple, np.dtype]]] = None,
    build_net: Optional[NetFactory] = None,
) -> ConversionResult:
    """Convert ``state`` (as read from a ``source`` checkpoint) for our variant named by ``model``.

    ``num_classes``: None keeps the source classifier; a different count re-heads (source head
    dropped, new head from the network's initialisation; 0 = no classifier).
    The target, one of: ``target_spec`` (``{name: (shape, dtype)}``; no re-heading), ``net`` (an
    already-built network of the variant), ``build_net(variant, num_classes)`` (called once).
    """
    source_variant, variant = resolve_variant(source, model)
    if num_classes is not None:
        check_count("num_classes", num_classes)
    approximate = APPROXIMATE.get((source, source_variant))
    if approximate and not allow_approximate:
        raise ValueError(
            f"--from {source} --model {model}: the source network computes a different function; "
            f"converting gives only the nearest equivalent and needs allow_approximate=True "
            f"(--allow-approximate).\n{approximate}")

    candidates = canonical_to_ours(_TO_CANONICAL[source](state))
    source_classes = head_classes(candidates)
    target_classes = source_classes if num_classes is None else num_classes
    if target_classes is None:
        target_classes = 0
    if target_spec is not None:
        if target_classes != source_classes:
            raise ValueError(f"num_classes={num_classes!r} re-heads the {source_classes}-class source, which needs "
                             "the target network (net= or build_net=), not only target_spec=")
        spec = OrderedDict(target_spec)
    else:
        if net is None:
            if build_net is None:
                raise TypeError("convert_state needs the target: target_spec=, net= or build_net=(variant, "
                                "num_classes) -> network")
            net = build_net(variant, target_classes)
        spec = network_spec(net)

    dropped, reheaded = [], []
    if target_classes != source_classes:
        dropped = [name for name in candidates if name.startswith(HEAD_PREFIX)]
        candidates = OrderedDict((k, v) for k, v in candidates.items() if not k.startswith(HEAD_PREFIX))
        initial = dict(net.parameters_and_names())
        for name in spec:
            if name.startswith(HEAD_PREFIX):
                candidates[name] = initial[name].asnumpy()
                reheaded.append(name)

    params, reshaped = match_to_target(candidates, spec, description=f"{source} {source_variant} -> {variant}")
    return ConversionResult(
        params=params, source_variant=source_variant, variant=variant, num_classes=target_classes,
        source_num_classes=source_classes, dropped=dropped, reheaded=reheaded, reshaped=reshaped,
        approximate=approximate)


__all__ = [
    "ConversionError", "ConversionResult", "NetFactory", "PAIRINGS", "SOURCES", "convert_state",
    "resolve_variant", "supported_pairings",
]
