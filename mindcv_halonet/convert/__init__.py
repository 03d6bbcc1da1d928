"""Convert timm and MindCV HaloNet weights to this plugin's parameter names.

* :func:`from_timm` -- rename a timm state dict (a bare ``HaloAttn``, a block or a whole model).
* :func:`convert_state` -- strict whole-model conversion against one of our networks.
* :func:`check_checkpoint` -- compare a checkpoint with a variant (missing / unexpected /
  mis-shaped / dtype); ``mindcv-halonet-convert --check CKPT --model NAME``.
* ``mindcv-halonet-convert`` (:mod:`.cli`) -- the command line around them.
"""
from .check import CheckReport, check_checkpoint
from .errors import ConversionError, InputFileError
from .mindcv_builtin import FUNCTION_DIFFERENCES, MINDCV_TO_OURS, mindcv_to_canonical
from .pipeline import ConversionResult, convert_state, network_spec, resolve_variant, supported_pairings
from .timm import TIMM_TO_OURS, from_timm

__all__ = [
    "CheckReport",
    "ConversionError",
    "InputFileError",
    "check_checkpoint",
    "ConversionResult",
    "FUNCTION_DIFFERENCES",
    "MINDCV_TO_OURS",
    "TIMM_TO_OURS",
    "convert_state",
    "from_timm",
    "mindcv_to_canonical",
    "network_spec",
    "resolve_variant",
    "supported_pairings",
]
