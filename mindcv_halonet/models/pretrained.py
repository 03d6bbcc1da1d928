"""``pretrained=True`` for the model family: timm's ImageNet weights, loaded into the network being built.

The weights layer (:mod:`mindcv_halonet.weights.cache`) fetches, verifies, converts and caches; it
builds no network. This module gives it what it needs -- the parameter spec of the network the weights
were published for (:func:`reference_spec`, derived from the network under construction: no second
network is built) -- and then loads the checkpoint the way MindCV's ``load_pretrained`` does
(``num_classes`` other than the weights' drops the classifier, ``in_channels=1`` sums the first conv
over RGB, other ``in_channels`` are refused), but strictly: every other parameter and BatchNorm
statistic must be filled (:func:`mindcv_halonet.weights.mapping.load_into`).
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

import numpy as np

from mindcv_halonet.weights.cache import pretrained_checkpoint
from mindcv_halonet.weights.errors import ConversionError, PretrainedWeightsError
from mindcv_halonet.weights.mapping import load_into, network_spec

__all__ = ["PretrainedWeightsError", "adapt_state", "check_request", "load_pretrained", "reference_spec",
           "variants_with_weights"]

_LOGGER = logging.getLogger(__name__)


def variants_with_weights(cfgs: Mapping[str, Mapping]) -> List[str]:
    return [name for name, cfg in cfgs.items() if cfg.get("hf_hub_id")]


def check_request(variant: str, cfgs: Mapping[str, Mapping], in_channels: int) -> None:
    """The cheap checks of ``pretrained=True``, before anything is built or downloaded."""
    if not cfgs[variant].get("hf_hub_id"):
        raise ValueError(
            f"pretrained=True: {variant!r} has no published weights; pretrained weights exist for "
            f"{', '.join(variants_with_weights(cfgs))} (timm's ImageNet-1k weights). For {variant}, train it, or "
            "load your own converted weights with checkpoint_path=... (pretrained=False)")
    if in_channels not in (1, 3):
        raise ValueError(
            f"in_channels={in_channels!r} is invalid with pretrained=True: the weights have 3 input channels; "
            "accepted: 3, or 1 (the first conv's weights are summed over RGB, as in MindCV)")


def reference_spec(net, cfg: Mapping) -> "OrderedDict[str, Tuple[tuple, np.dtype]]":
    """The spec of ``net``'s variant as the weights were published (``cfg["num_classes"]`` classes, 3 input
    channels), from ``net`` itself: its classifier and first conv are given the published shapes."""
    spec = network_spec(net)
    first = cfg["first_conv"] + ".weight"
    shape, dtype = spec[first]
    spec[first] = ((shape[0], 3) + tuple(shape[2:]), dtype)
    head_w, head_b = cfg["classifier"] + ".weight", cfg["classifier"] + ".bias"
    spec.pop(head_w, None)
    spec.pop(head_b, None)
    spec[head_w] = ((cfg["num_classes"], net.num_features), np.dtype(np.float32))
    spec[head_b] = ((cfg["num_classes"],), np.dtype(np.float32))
    return spec


def adapt_state(params: Dict[str, np.ndarray], cfg: Mapping, num_classes: int, in_channels: int,
                variant: str) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """MindCV's ``load_pretrained`` edits: sum the first conv over RGB for ``in_channels=1``; drop the
    classifier when ``num_classes`` differs from the weights'. Returns ``(params, dropped names)``."""
    if in_channels == 1:
        name = cfg["first_conv"] + ".weight"
        _LOGGER.info("Converting first conv (%s) from 3 to 1 channel", cfg["first_conv"])
        params[name] = params[name].sum(axis=1, keepdims=True)
    dropped = []
    if num_classes != cfg["num_classes"]:
        prefix = cfg["classifier"] + "."
        dropped = sorted(name for name in params if name.startswith(prefix))
        for name in dropped:
            del params[name]
        _LOGGER.warning("pretrained=True for %s: num_classes=%d differs from the weights' %d classes: dropped the "
                        "classifier (%s), the new one is randomly initialised", variant, num_classes,
                        cfg["num_classes"], ", ".join(dropped))
    return params, dropped


def load_pretrained(net, variant: str, cfg: Mapping, num_classes: int, in_channels: int) -> None:
    """Fill ``net`` (a plain, unwrapped network of ``variant``) with timm's ImageNet weights."""
    import mindspore as ms

    checkpoint = pretrained_checkpoint(variant, cfg, reference_spec(net, cfg))
    try:
        params = {name: p.asnumpy() for name, p in ms.load_checkpoint(checkpoint).items()}
    except Exception as exc:
        raise PretrainedWeightsError(f"pretrained=True for {variant}: cannot read {checkpoint} ({exc}); "
                                     "delete it from the converted cache and call again") from exc
    params, dropped = adapt_state(params, cfg, num_classes, in_channels, variant)
    optional = [name for name, _ in net.parameters_and_names() if name.startswith(cfg["classifier"] + ".")]
    try:
        load_into(net, params, f"pretrained=True for {variant}: {checkpoint}", optional=optional if dropped else ())
    except ConversionError as exc:
        raise PretrainedWeightsError(f"{exc}\ndelete {checkpoint} from the converted cache and call again") from exc
