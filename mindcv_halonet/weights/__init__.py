"""Weights: read, rename, match strictly, report; the Hub, the converted cache, atomic files.

This layer sits between :mod:`mindcv_halonet.layers` and :mod:`mindcv_halonet.models` and imports
nothing from the models or from MindCV's registry: whoever needs a target network passes it in (a
network, its parameter spec, or a factory), as timm passes ``pretrained_filter_fn`` into its builder.

* :func:`from_timm` -- rename a timm state dict (a bare ``HaloAttn``, a block or a whole model);
* :func:`convert_state` -- strict whole-model conversion against a target passed in;
* :func:`match_to_target` / :func:`load_into` -- the one strict state-to-network match;
* :func:`read_state` / :func:`read_checkpoint` -- the one way files are read;
* :mod:`.files` -- the one atomic write and output-path check; :mod:`.hub`, :mod:`.cache` -- the Hub.
"""
from .errors import (
    ConversionError,
    HubDownloadError,
    HubUnreachableError,
    InputFileError,
    PretrainedWeightsError,
    format_listing,
)
from .files import atomic_write, check_output_path, save_checkpoint_atomic
from .mapping import load_into, match_to_target, network_spec
from .mindcv_builtin import FUNCTION_DIFFERENCES, MINDCV_TO_OURS, mindcv_to_canonical
from .pipeline import ConversionResult, NetFactory, convert_state, resolve_variant, supported_pairings
from .readers import head_classes, read_checkpoint, read_state, split_training_state
from .timm import TIMM_TO_OURS, from_timm

__all__ = [
    "ConversionError", "ConversionResult", "FUNCTION_DIFFERENCES", "HubDownloadError", "HubUnreachableError",
    "InputFileError", "MINDCV_TO_OURS", "NetFactory", "PretrainedWeightsError", "TIMM_TO_OURS", "atomic_write",
    "check_output_path", "convert_state", "format_listing", "from_timm", "head_classes", "load_into",
    "match_to_target", "mindcv_to_canonical", "network_spec", "read_checkpoint", "read_state",
    "resolve_variant", "save_checkpoint_atomic", "split_training_state", "supported_pairings",
]
