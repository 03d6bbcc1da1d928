"""The converted cache: timm's file from the Hub, converted once for a target, kept, found offline.

For a variant whose config names a Hub file (:func:`hub_file_of`):

1. a converted checkpoint in the converted cache is looked for (no network);
2. otherwise timm's file is fetched and verified (:mod:`.hub`), converted with the strict converter
   against the *target spec the caller passes* (:func:`.pipeline.convert_state`; this layer builds no
   network) and written atomically into the converted cache.

Converted cache: ``$MINDCV_HALONET_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/mindcv_halonet``::

    {variant}.ckpt                    a checkpoint you put there yourself: used as is, no network
    {variant}-{sha256[:16]}.ckpt      converted from the timm file with that sha256
    refs/{variant}.json               which sha256 / Hub commit the revision last resolved to

Online, the Hub's metadata gives the file's sha256, so a changed upstream file is converted anew.
Offline (``HF_HUB_OFFLINE=1`` or the Hub unreachable) the last resolved conversion is used, else a
timm file already in the Hugging Face cache is converted; otherwise the error says what to fetch
and how to convert it offline.
"""
import json
import logging
import os
from typing import Mapping, Optional, Tuple

import numpy as np

from .errors import HubDownloadError, HubUnreachableError, PretrainedWeightsError
from .files import file_sha256, save_checkpoint_atomic, write_text_atomic
from .hub import DEFAULT_FILENAME, DEFAULT_REVISION, HubFile, fetch, find_in_cache, hf_hub_cache
from .pipeline import convert_state, resolve_variant
from .readers import read_state

_LOGGER = logging.getLogger(__name__)
ENV_CACHE = "MINDCV_HALONET_CACHE"
SOURCE = "timm"

#: ``{name: (shape, numpy dtype)}`` of the network the converted checkpoint must fill exactly
TargetSpec = Mapping[str, Tuple[tuple, np.dtype]]


def converted_cache_dir() -> str:
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return os.path.expandvars(os.path.expanduser(configured))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mindcv_halonet")


def hub_file_of(cfg: Mapping) -> HubFile:
    return HubFile(repo_id=cfg["hf_hub_id"], revision=cfg.get("hf_revision") or DEFAULT_REVISION,
                   filename=cfg.get("hf_filename") or DEFAULT_FILENAME,
                   sha256=cfg.get("hf_sha256"), size=cfg.get("hf_size"))


def _ref_path(cache: str, variant: str) -> str:
    return os.path.join(cache, "refs", f"{variant}.json")


def _read_ref(cache: str, variant: str, hub_file: HubFile) -> Optional[dict]:
    try:
        with open(_ref_path(cache, variant), encoding="utf-8") as f:
            ref = json.load(f)
    except (OSError, ValueError):
        return None
    if ref.get("hf_hub_id") != hub_file.repo_id or ref.get("revision") != hub_file.revision:
        return None
    if hub_file.sha256 and ref.get("sha256") != hub_file.sha256.lower():
        return None
    return ref


def _write_ref(cache: str, variant: str, ref: dict) -> None:
    path = _ref_path(cache, variant)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text_atomic(path, json.dumps(ref, indent=1))


def converted_name(variant: str, sha256: str) -> str:
    return f"{variant}-{sha256[:16]}.ckpt"


def _convert_into_cache(variant: str, source_path: str, sha256: str, cache: str, url: str,
                        target_spec: TargetSpec) -> str:
    """Strictly convert the timm file at ``source_path`` and write it atomically into the converted cache."""
    target = os.path.join(cache, converted_name(variant, sha256))
    try:
        state = read_state(source_path, SOURCE)
        result = convert_state(state, SOURCE, variant, target_spec=target_spec)
    except Exception as exc:  # unreadable safetensors, ConversionError, ...
        raise PretrainedWeightsError(
            f"pretrained=True for {variant}: {url} (its size and sha256 verified) does not convert to {variant}: "
            f"{exc}. Nothing was cached.") from exc
    os.makedirs(cache, exist_ok=True)
    save_checkpoint_atomic(result.params, target)
    return target


def user_checkpoint(cache: str, variant: str) -> str:
    return os.path.join(cache, f"{variant}.ckpt")


def _offline_help(variant: str, hub_file: HubFile, cache: str, reason: str) -> str:
    url = hub_file.url()
    source = resolve_variant(SOURCE, variant)[0]
    hf_path = os.path.join(hub_file.storage_folder(hf_hub_cache()), "snapshots", "<commit>", hub_file.filename)
    return (
        f"pretrained=True for {variant}: no cached weights, and the Hub is not available ({reason}).\n"
        f"  Fetch {url} on a machine with internet, then either\n"
        f"  * convert it (anywhere; no network needed):\n"
        f"      mindcv-halonet-convert --from timm --model {source} model.safetensors -o {variant}_timm.ckpt\n"
        f"    and load it with create_model('{variant}', checkpoint_path='{variant}_timm.ckpt') "
        f"(validate.py/train.py: --ckpt_path), or copy it to {user_checkpoint(cache, variant)}, where "
        f"pretrained=True picks it up without network;\n"
        f"  * or put it into the Hugging Face cache (huggingface_hub/timm layout, e.g. by copying {hf_hub_cache()} "
        f"of a machine that downloaded it: {hf_path}) and call again;\n"
        f"  * or copy the converted cache {cache} of a machine where pretrained=True has run.\n"
        f"  Converted cache: ${ENV_CACHE} (now {cache}); Hugging Face cache: HF_HUB_CACHE / HF_HOME (now {hf_hub_cache()})."
    )


def pretrained_checkpoint(variant: str, cfg: Mapping, target_spec: TargetSpec) -> str:
    """Path of the converted checkpoint for ``variant`` (fetching and converting it when needed).

    ``target_spec``: the parameter spec of the network the weights were published for (timm's classes and
    input channels), given by the model layer; the conversion must fill it exactly.
    """
    cache = converted_cache_dir()
    user = user_checkpoint(cache, variant)
    if os.path.isfile(user):
        _LOGGER.info("pretrained=True for %s: using %s (found in the converted cache)", variant, user)
        return user
    hub_file = hub_file_of(cfg)
    url = hub_file.url()
    try:
        fetched, target = fetch(
            hub_file,
            ready=lambda sha: os.path.isfile(os.path.join(cache, converted_name(variant, sha))),
            use=lambda f: _convert_into_cache(variant, f.path, f.sha256, cache, url, target_spec))
    except HubUnreachableError as exc:
        return _offline_checkpoint(variant, hub_file, cache, str(exc), target_spec)
    except HubDownloadError as exc:
        raise PretrainedWeightsError(f"pretrained=True for {variant}: {str(exc).rstrip('.')}. Nothing was cached.") from exc
    if target is None:  # converted before from the file of this sha256
        target = os.path.join(cache, converted_name(variant, fetched.sha256))
    _write_ref(cache, variant, {"hf_hub_id": hub_file.repo_id, "revision": hub_file.revision,
                                "commit": fetched.commit, "sha256": fetched.sha256, "size": fetched.size,
                                "checkpoint": os.path.basename(target)})
    return target


def _offline_checkpoint(variant: str, hub_file: HubFile, cache: str, reason: str, target_spec: TargetSpec) -> str:
    ref = _read_ref(cache, variant, hub_file)
    if ref:
        target = os.path.join(cache, ref["checkpoint"])
        if os.path.isfile(target):
            _LOGGER.info("pretrained=True for %s: Hub not used (%s); using the cached %s", variant, reason, target)
            return target
    source = find_in_cache(hub_file)
    if source is not None:
        blob = os.path.basename(os.path.realpath(source))
        sha256 = file_sha256(source)
        expected = (hub_file.sha256 or "").lower() or (blob if len(blob) == 64 else None)
        if expected and sha256 != expected:
            raise PretrainedWeightsError(
                f"pretrained=True for {variant}: the Hugging Face cache file {source} has sha256 {sha256}, "
                f"expected {expected}; delete it and fetch {hub_file.url()} again")
        target = os.path.join(cache, converted_name(variant, sha256))
        if not os.path.isfile(target):
            target = _convert_into_cache(variant, source, sha256, cache, hub_file.url(), target_spec)
        _write_ref(cache, variant, {"hf_hub_id": hub_file.repo_id, "revision": hub_file.revision, "commit": None,
                                    "sha256": sha256, "size": os.path.getsize(source),
                                    "checkpoint": os.path.basename(target)})
        return target
    raise PretrainedWeightsError(_offline_help(variant, hub_file, cache, reason))
