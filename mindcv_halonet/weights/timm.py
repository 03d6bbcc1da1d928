"""timm (PyTorch) HaloNet state dicts -> this plugin's parameter names.

This plugin's modules keep timm's attribute paths (``stem.conv1.conv``, ``stages.S.B.self_attn``,
``post_attn``, ``final_conv``, ``head.fc`` ...), and ``HaloAttention`` keeps timm's parameter
names and layouts (``q.weight``, per-head interleaved ``kv.weight``, ``pos_embed.height_rel`` /
``width_rel``). So converting a timm state dict is:

* BatchNorm leaves ``weight/bias/running_mean/running_var`` -> ``gamma/beta/moving_mean/moving_variance``
  (BatchNorms are recognised by owning a ``running_mean``, at any prefix), ``num_batches_tracked`` dropped;
* the structural rename table :data:`CANONICAL_TO_OURS_RULES` (empty today: the module paths are equal);
* no tensor is reshaped or transposed (Conv2d ``(out, in/g, kh, kw)``, Dense ``(out, in)``, the ECA
  kernel ``(1, 1, k)`` and the relative embeddings ``(2*win-1, dim_head)`` have the same layout in both).

"Canonical" naming = timm's module paths with MindSpore's BatchNorm leaf names; other sources
(MindCV's built-in) are brought to it first.
"""
from collections import OrderedDict
from typing import Dict, Mapping, Tuple

import numpy as np

from .mapping import RenameRule, apply_rules, rename_batchnorm

# timm variant -> our variant
TIMM_TO_OURS: Dict[str, str] = OrderedDict([
    ("halonet50ts", "halonet_50t"),
    ("halonet26t", "halonet_26t"),
    ("sehalonet33ts", "sehalonet_33ts"),
    ("eca_halonext26ts", "eca_halonext_26ts"),
    ("halonet_h1", "halonet_h1"),
])

# Structural differences between the canonical naming and ours: none today. Kept as a table so
# that a future divergence is one line here, applied to every source.
CANONICAL_TO_OURS_RULES: Tuple[RenameRule, ...] = ()


def timm_to_canonical(state: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    return rename_batchnorm(state)


def canonical_to_ours(state: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    return apply_rules(state, CANONICAL_TO_OURS_RULES)


def from_timm(state: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Rename timm tensors to this project's parameter names (values unchanged, order kept).

    Independent of the module prefix: works for a bare ``HaloAttn`` state dict
    (``q.weight, kv.weight, pos_embed.height_rel, ...``), for a single block, and for whole models.
    Only names change; :func:`mindcv_halonet.weights.convert_state` checks the result against a
    network strictly.
    """
    return canonical_to_ours(timm_to_canonical(state))
