"""The HaloNets as MindOCR backbones (``backbone: {name: mindcv.halonet_26t, ...}``).

MindOCR (0.5.0) builds a ``mindcv.<name>`` backbone with ``MindCVBackboneWrapper``, which looks the
name up in MindOCR's own vendored copy of MindCV's registry
(``mindocr.models.backbones.mindcv_models.registry``), not in ``mindcv.models``. The start-up hook
(:mod:`mindcv_halonet_autoload`) calls :func:`register_models` right after that module is imported;
call it yourself if the hook is switched off (``MINDCV_HALONET_DISABLE_AUTOLOAD=1``).

Checkpoints. MindOCR's wrapper builds the plain network, wraps it in MindOCR's vendored
``FeatureExtractWrapper`` -- which re-parents the cells and thereby renames every parameter
(``stem.conv1.conv.weight`` -> ``stem_conv1.conv.weight``, ``stages.2.1.self_attn.q.weight`` ->
``stages_2.1.self_attn.q.weight``) -- and only then loads ``ckpt_path``. A checkpoint of the plain
model therefore loads *nothing* there, silently. :func:`to_mindocr_names` /
:func:`save_mindocr_checkpoint` write a checkpoint under the wrapper's names, which loads every
parameter (tests/downstream/test_mindocr_dbnet.py counts them).
"""
import logging
import sys
from typing import Dict, Mapping, TypeVar

__all__ = ["register_models", "to_mindocr_names", "save_mindocr_checkpoint", "MINDOCR_REGISTRY"]

MINDOCR_REGISTRY = "mindocr.models.backbones.mindcv_models.registry"

#: the top-level ``nn.SequentialCell`` children of ``HaloNet`` that a (flatten_sequential) feature
#: wrapper flattens one level: ``stem.conv1`` -> ``stem_conv1``, ``stages.0`` -> ``stages_0``
_FLATTENED = ("stem", "stages")

_logger = logging.getLogger("mindcv_halonet_autoload")
V = TypeVar("V")

#: filled by register_models: the vendored registry reads ``default_cfgs`` of a function's module
default_cfgs: Dict[str, dict] = {}


def _make_entry(name: str, create):
    def entry(pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3, **kwargs):
        return create(pretrained=pretrained, num_classes=num_classes, in_channels=in_channels, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = create.__doc__
    return entry


def register_models(registry=None) -> Dict[str, str]:
    """Add every HaloNet variant to MindOCR's vendored MindCV registry (idempotent).

    A name that registry already holds for another model is left alone (logged). Returns
    ``{name: 'registered' | 'already registered' | 'kept MindOCR's own'}``.
    """
    import importlib

    from mindcv_halonet.models import halonet

    if registry is None:
        registry = importlib.import_module(MINDOCR_REGISTRY)
    default_cfgs.update(halonet.default_cfgs)
    entrypoints = getattr(registry, "_model_entrypoints", {})
    report = {}
    for name in halonet.model_specs:
        existing = entrypoints.get(name)
        if existing is not None:
            ours = getattr(existing, "__module__", None) == __name__
            report[name] = "already registered" if ours else "kept MindOCR's own"
            if not ours:
                _logger.warning("mindcv-halonet: MindOCR's registry already has a model '%s' (%s); not replaced",
                                name, getattr(existing, "__module__", "?"))
            continue
        registry.register_model(_make_entry(name, getattr(halonet, name)))
        report[name] = "registered"
    return report


def to_mindocr_names(params: Mapping[str, V]) -> Dict[str, V]:
    """``{plain-model parameter name: value}`` -> the names the parameters have inside MindOCR's
    ``MindCVBackboneWrapper(..., features_only=True)`` (the feature wrapper's flattened names).
    Names outside ``stem`` / ``stages`` (``final_conv.*``, ``head.*``) are unchanged."""
    out = {}
    for name, value in params.items():
        top, _, rest = name.partition(".")
        if top in _FLATTENED and rest:
            child, _, tail = rest.partition(".")
            name = f"{top}_{child}.{tail}" if tail else f"{top}_{child}"
        out[name] = value
    return out


def save_mindocr_checkpoint(src: str, dst: str) -> int:
    """Read a plain-model checkpoint ``src`` (e.g. from ``mindcv-halonet-convert``), write ``dst`` with
    :func:`to_mindocr_names` (atomically). Returns the number of tensors written."""
    import mindspore as ms

    from mindcv_halonet.weights.files import check_output_path, save_checkpoint_atomic

    check_output_path(dst)
    params = {name: p.asnumpy() for name, p in ms.load_checkpoint(src).items()}
    if not any(name.partition(".")[0] in _FLATTENED for name in params):
        raise ValueError(
            f"src={src!r} has no 'stem.*' / 'stages.*' parameters; expected a checkpoint of the plain HaloNet "
            "(create_model(name) or mindcv-halonet-convert), not one already renamed"
        )
    renamed = to_mindocr_names(params)
    save_checkpoint_atomic(renamed, dst)
    return len(renamed)


if __name__ == "__main__":  # pragma: no cover - python -m mindcv_halonet_autoload.mindocr SRC DST
    if len(sys.argv) != 3:
        sys.exit("usage: python -m mindcv_halonet_autoload.mindocr PLAIN.ckpt MINDOCR.ckpt")
    print(f"wrote {save_mindocr_checkpoint(sys.argv[1], sys.argv[2])} tensors to {sys.argv[2]}")
