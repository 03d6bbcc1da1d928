"""``pretrained=True``: timm's ImageNet weights from the Hugging Face Hub, converted once, cached, loaded.

For a variant whose ``default_cfgs`` entry has an ``hf_hub_id``:

1. a converted checkpoint in the converted cache is looked for (no network);
2. otherwise timm's ``model.safetensors`` is fetched and verified (:mod:`.hub_download`), converted
   with the strict converter (:func:`mindcv_halonet.convert.convert_state`) and written atomically
   into the converted cache (:func:`mindcv_halonet.convert.writer.save_checkpoint_atomic`);
3. the checkpoint is loaded the way MindCV's ``load_pretrained`` does it (``num_classes`` other than
   1000 drops the classifier, ``in_channels=1`` sums the first conv over RGB, other ``in_channels``
   are refused), but strictly: every other parameter and BatchNorm statistic must be filled.

Converted cache: ``$MINDCV_HALONET_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/mindcv_halonet``::

    {variant}.ckpt                    a checkpoint you put there yourself: used as is, no network
    {variant}-{sha256[:16]}.ckpt      converted from the timm file with that sha256
    refs/{variant}.json               which sha256 / Hub commit the revision last resolved to

Online, the Hub's metadata (one HEAD request) gives the file's sha256, so a changed upstream file is
converted anew instead of the old conversion being reused. Offline (``HF_HUB_OFFLINE=1`` or the Hub
unreachable) the last resolved conversion is used, else a timm file already in the Hugging Face
cache (e.g. downloaded by timm) is converted; otherwise the error says what to fetch and how to
convert it offline.
"""
import json
import logging
import os
import uuid
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .hub_download import (
    HubDownloadError,
    HubFile,
    HubUnreachableError,
    fetch,
    file_sha256,
    find_in_cache,
    hf_hub_cache,
)

_LOGGER = logging.getLogger(__name__)
ENV_CACHE = "MINDCV_HALONET_CACHE"
SOURCE = "timm"


class PretrainedWeightsError(RuntimeError):
    """``pretrained=True`` could not provide weights; nothing was cached."""


def converted_cache_dir() -> str:
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return os.path.expandvars(os.path.expanduser(configured))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mindcv_halonet")


def hub_file_of(cfg: Mapping) -> HubFile:
    return HubFile(repo_id=cfg["hf_hub_id"], revision=cfg.get("hf_revision") or "main",
                   filename=cfg.get("hf_filename") or "model.safetensors",
                   sha256=cfg.get("hf_sha256"), size=cfg.get("hf_size"))


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


def _source_variant(variant: str) -> str:
    from mindcv_halonet.convert import resolve_variant

    return resolve_variant(SOURCE, variant)[0]


# --------------------------------------------------------------------------------------------------
# the converted cache
# --------------------------------------------------------------------------------------------------

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
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1)
    os.replace(tmp, path)


def converted_name(variant: str, sha256: str) -> str:
    return f"{variant}-{sha256[:16]}.ckpt"


def _convert_into_cache(variant: str, source_path: str, sha256: str, cache: str, url: str, net=None) -> str:
    """Strictly convert the timm file at ``source_path`` and write it atomically into the converted cache."""
    from mindcv_halonet.convert import convert_state
    from mindcv_halonet.convert.readers import read_state
    from mindcv_halonet.convert.writer import save_checkpoint_atomic

    target = os.path.join(cache, converted_name(variant, sha256))
    try:
        state = read_state(source_path, SOURCE)
        result = convert_state(state, SOURCE, variant, num_classes=1000, net=net)
    except Exception as exc:  # unreadable safetensors, ConversionError, ...
        raise PretrainedWeightsError(
            f"pretrained=True for {variant}: {url} (its size and sha256 verified) does not convert to {variant}: "
            f"{exc}. Nothing was cached.") from exc
    os.makedirs(cache, exist_ok=True)
    save_checkpoint_atomic(result.params, target)
    return target


def _user_checkpoint(cache: str, variant: str) -> str:
    return os.path.join(cache, f"{variant}.ckpt")


def _offline_help(variant: str, hub_file: HubFile, cache: str, reason: str) -> str:
    url = hub_file.url()
    source = _source_variant(variant)
    hf_path = os.path.join(hub_file.storage_folder(hf_hub_cache()), "snapshots", "<commit>", hub_file.filename)
    return (
        f"pretrained=True for {variant}: no cached weights, and the Hub is not available ({reason}).\n"
        f"  Fetch {url} on a machine with internet, then either\n"
        f"  * convert it (anywhere; no network needed):\n"
        f"      mindcv-halonet-convert --from timm --model {source} model.safetensors -o {variant}_timm.ckpt\n"
        f"    and load it with create_model('{variant}', checkpoint_path='{variant}_timm.ckpt') "
        f"(validate.py/train.py: --ckpt_path), or copy it to {_user_checkpoint(cache, variant)}, where "
        f"pretrained=True picks it up without network;\n"
        f"  * or put it into the Hugging Face cache (huggingface_hub/timm layout, e.g. by copying {hf_hub_cache()} "
        f"of a machine that downloaded it: {hf_path}) and call again;\n"
        f"  * or copy the converted cache {cache} of a machine where pretrained=True has run.\n"
        f"  Converted cache: ${ENV_CACHE} (now {cache}); Hugging Face cache: HF_HUB_CACHE / HF_HOME (now {hf_hub_cache()})."
    )


def pretrained_checkpoint(variant: str, cfg: Mapping, net=None, quiet: bool = False) -> str:
    """Path of the converted checkpoint for ``variant`` (fetching and converting it when needed).

    ``net``: a freshly built 1000-class, 3-channel network of the variant, reused as the conversion
    target (built by the converter when None).
    """
    cache = converted_cache_dir()
    user = _user_checkpoint(cache, variant)
    if os.path.isfile(user):
        _LOGGER.info("pretrained=True for %s: using %s (found in the converted cache)", variant, user)
        return user
    hub_file = hub_file_of(cfg)
    url = hub_file.url()
    try:
        fetched, target = fetch(
            hub_file, quiet=quiet,
            ready=lambda sha: os.path.isfile(os.path.join(cache, converted_name(variant, sha))),
            use=lambda f: _convert_into_cache(variant, f.path, f.sha256, cache, url, net))
    except HubUnreachableError as exc:
        return _offline_checkpoint(variant, hub_file, cache, str(exc), net)
    except HubDownloadError as exc:
        raise PretrainedWeightsError(f"pretrained=True for {variant}: {str(exc).rstrip('.')}. Nothing was cached.") from exc
    if target is None:  # converted before from the file of this sha256
        target = os.path.join(cache, converted_name(variant, fetched.sha256))
    _write_ref(cache, variant, {"hf_hub_id": hub_file.repo_id, "revision": hub_file.revision,
                                "commit": fetched.commit, "sha256": fetched.sha256, "size": fetched.size,
                                "checkpoint": os.path.basename(target)})
    return target


def _offline_checkpoint(variant: str, hub_file: HubFile, cache: str, reason: str, net) -> str:
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
            target = _convert_into_cache(variant, source, sha256, cache, hub_file.url(), net)
        _write_ref(cache, variant, {"hf_hub_id": hub_file.repo_id, "revision": hub_file.revision, "commit": None,
                                    "sha256": sha256, "size": os.path.getsize(source),
                                    "checkpoint": os.path.basename(target)})
        return target
    raise PretrainedWeightsError(_offline_help(variant, hub_file, cache, reason))


# --------------------------------------------------------------------------------------------------
# loading, with MindCV's load_pretrained semantics
# --------------------------------------------------------------------------------------------------

def adapt_state(params: Dict, cfg: Mapping, num_classes: int, in_channels: int, variant: str) -> Tuple[Dict, List[str]]:
    """MindCV's ``load_pretrained`` edits: sum the first conv over RGB for ``in_channels=1``; drop the
    classifier when ``num_classes`` differs from the weights'. Returns ``(params, dropped names)``."""
    import mindspore as ms

    if in_channels == 1:
        name = cfg["first_conv"] + ".weight"
        weight = params[name].asnumpy()
        _LOGGER.info("Converting first conv (%s) from 3 to 1 channel", cfg["first_conv"])
        params[name] = ms.Parameter(ms.Tensor(weight.sum(axis=1, keepdims=True)), name=name)
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


def load_into(net, params: Dict, checkpoint: str, variant: str, allowed_missing_prefix: Optional[str]) -> None:
    """``load_param_into_net``, strictly: names and shapes must match except the re-initialised classifier."""
    import mindspore as ms

    own = dict(net.parameters_and_names())
    missing = [n for n in own if n not in params and not (allowed_missing_prefix and n.startswith(allowed_missing_prefix))]
    unexpected = [n for n in params if n not in own]
    mis_shaped = [f"{n}: {tuple(params[n].shape)} -> {tuple(own[n].shape)}"
                  for n in params if n in own and tuple(params[n].shape) != tuple(own[n].shape)]
    if missing or unexpected or mis_shaped:
        raise PretrainedWeightsError(
            f"pretrained=True for {variant}: {checkpoint} does not fit the network "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}, mis-shaped {mis_shaped[:5]}); "
            "delete it from the converted cache and call again")
    for name, param in params.items():
        own[name].set_data(ms.Tensor(param.asnumpy() if hasattr(param, "asnumpy") else np.asarray(param)))


def load_pretrained(net, variant: str, cfg: Mapping, num_classes: int, in_channels: int, quiet: bool = False) -> None:
    """Fill ``net`` (a plain, unwrapped network of ``variant``) with timm's ImageNet weights."""
    import mindspore as ms

    reuse = net if (num_classes == cfg["num_classes"] and in_channels == 3) else None
    checkpoint = pretrained_checkpoint(variant, cfg, net=reuse, quiet=quiet)
    try:
        params = ms.load_checkpoint(checkpoint)
    except Exception as exc:
        raise PretrainedWeightsError(f"pretrained=True for {variant}: cannot read {checkpoint} ({exc}); "
                                     "delete it from the converted cache and call again") from exc
    params, dropped = adapt_state(params, cfg, num_classes, in_channels, variant)
    load_into(net, params, checkpoint, variant, cfg["classifier"] + "." if dropped else None)
