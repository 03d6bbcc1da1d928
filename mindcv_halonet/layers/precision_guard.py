"""Warn once when Ascend's ``precision_mode`` will undo the float32 logits and softmax of HaloAttention.

The float32 guarantee of the attention lives in the graph (``Float32Cell`` and explicit casts). CANN's
``precision_mode`` can still run float32 operators in float16 (or bfloat16) below the graph:

* ``force_fp16`` (the default on Atlas training series / 910A): every operator that has a float16
  kernel runs in float16 -- the logits matmuls *and* the softmax.
* ``allow_fp32_to_fp16`` / ``allow_fp32_to_bf16``: matrix operators (the query-key and relative-position
  matmuls that produce the logits) run in float16 / bfloat16.
* ``allow_mix_precision`` (``_fp16`` / ``_bf16``): CANN lowers operators of its own choosing, softmax
  and matmuls included.

``must_keep_origin_dtype`` (the default on Atlas A2/A3 / 910B / 910_93) and ``force_fp32`` keep them.
Sources: ``mindspore.device_context.ascend.op_precision.precision_mode`` and ``set_context(ascend_config=)``
docstrings (MindSpore 2.8), CANN "precision_mode" (docs/ascend.md has the links and per-chip settings).

:func:`check_precision_mode` runs when a ``HaloAttention`` is built; it does nothing unless the device
target is Ascend, and warns at most once per process. ``MINDCV_HALONET_NO_PRECISION_WARNING=1`` switches
it off. What it reads goes through :func:`_device_target`, :func:`_chip_name` and
:func:`_configured_precision_mode` (tests substitute them).
"""
import os
import warnings
from typing import Optional

__all__ = ["ENV_NO_WARNING", "check_precision_mode", "precision_problem", "default_precision_mode"]

ENV_NO_WARNING = "MINDCV_HALONET_NO_PRECISION_WARNING"

# What each mode does to the float32 logits / softmax of this layer (None: nothing, they stay float32).
_EFFECT = {
    "force_fp16": "runs every operator that has a float16 kernel in float16: the attention logits matmuls and "
                  "the softmax",
    "allow_fp32_to_fp16": "runs matrix operators in float16: the query-key and relative-position matmuls that "
                          "produce the attention logits",
    "allow_fp32_to_bf16": "runs matrix operators in bfloat16: the query-key and relative-position matmuls that "
                          "produce the attention logits",
    "allow_mix_precision": "lets CANN lower operators of its choice (softmax and matmuls included) to "
                           "float16/bfloat16",
    "allow_mix_precision_fp16": "lets CANN lower operators of its choice (softmax and matmuls included) to float16",
    "allow_mix_precision_bf16": "lets CANN lower operators of its choice (softmax and matmuls included) to bfloat16",
    "must_keep_origin_dtype": None,
    "force_fp32": None,
}

_warned = False


def default_precision_mode(chip: Optional[str]) -> Optional[str]:
    """CANN's default when nothing is configured, by chip name (``None`` when the chip is not known):
    Atlas training series (910A, 910 Pro A/B, 910 Premium A) ``force_fp16``; Atlas A2/A3 (910B, 910_93)
    ``must_keep_origin_dtype`` (MindSpore 2.8 ``op_precision.precision_mode`` docstring)."""
    name = (chip or "").lower().replace(" ", "")
    if "910b" in name or "910_93" in name:
        return "must_keep_origin_dtype"
    if "910a" in name or "910pro" in name or "910premium" in name or name in ("ascend910", "910"):
        return "force_fp16"
    return None


def precision_problem(chip: Optional[str], configured: Optional[str]) -> Optional[str]:
    """The warning text if ``configured`` (or the chip's default when ``None``) breaks the float32 logits
    and softmax, else ``None``."""
    mode = configured or default_precision_mode(chip)
    effect = _EFFECT.get(mode) if mode else None
    if effect is None:
        return None
    origin = f"set to {mode!r}" if configured else f"{mode!r}, the default on this chip ({chip})"
    return (
        f"mindcv-halonet: Ascend precision_mode is {origin}; it {effect}, so HaloAttention's float32 logits "
        "and softmax (set in the graph) do not hold and attention can overflow or lose precision. Set "
        "ms.set_context(ascend_config={'precision_mode': 'must_keep_origin_dtype'}) before building the network "
        "(with amp_level O2/O3 the convolutions still run in float16) or pass --ascend-precision-mode "
        f"must_keep_origin_dtype to scripts/factory_train.py; see docs/ascend.md. Set {ENV_NO_WARNING}=1 to "
        "silence this warning."
    )


def _device_target() -> str:
    import mindspore as ms

    return ms.get_context("device_target")


def _chip_name() -> Optional[str]:
    """MindSpore's SoC version ('ascend910', 'ascend910b', ...), else the device name from ``mindspore.hal``."""
    from .precision import ascend_soc_version

    soc = ascend_soc_version()
    if soc:
        return soc
    try:
        import mindspore as ms

        return ms.hal.get_device_name(0, "Ascend")
    except Exception:  # not an Ascend build / no device visible / API gone
        return None


def _configured_precision_mode() -> Optional[str]:
    """``set_context(ascend_config={'precision_mode': ...})``, else the op_precision API's setting."""
    try:
        import mindspore as ms

        mode = (ms.get_context("ascend_config") or {}).get("precision_mode")
    except Exception:
        mode = None
    if mode:
        return mode
    from .precision import precision_mode_set_by_api

    return precision_mode_set_by_api()


def _disabled(environ=None) -> bool:
    value = (os.environ if environ is None else environ).get(ENV_NO_WARNING, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def check_precision_mode() -> Optional[str]:
    """On Ascend, warn once per process if the precision mode in effect breaks the float32 logits and
    softmax. Returns the warning text when it warned, else ``None``."""
    global _warned
    if _warned or _disabled() or _device_target() != "Ascend":
        return None
    _warned = True
    text = precision_problem(_chip_name(), _configured_precision_mode())
    if text is not None:
        warnings.warn(text, RuntimeWarning, stacklevel=3)
    return text
