"""MindCV's built-in ``halonet_50t`` checkpoint -> this plugin's ``halonet_50t``.

MindCV's names are first brought to the *canonical* naming (timm's module structure with
MindSpore's BatchNorm leaf names, see :mod:`.timm`), then the same structural rules as for timm
produce this plugin's names. The function of MindCV's built-in differs from timm's (see
:data:`FUNCTION_DIFFERENCES`), so the conversion is only done when explicitly allowed.
"""
from collections import OrderedDict
from typing import Dict, Mapping

import numpy as np

from .mapping import RenameRule, apply_rules

# MindCV built-in variant -> our variant
MINDCV_TO_OURS: Dict[str, str] = {"halonet_50t": "halonet_50t"}

# MindCV built-in naming -> canonical naming (timm structure, MindSpore BN leaves)
MINDCV_TO_CANONICAL_RULES = (
    RenameRule(r"^stage([1-4])\.blocks\.(\d+)\.",
               lambda m: f"stages.{int(m.group(1)) - 1}.{m.group(2)}.",
               "MindCV: stage1..stage4, each with a CellList 'blocks'; timm: stages.0..3 indexed directly"),
    RenameRule(r"\.creat_shortcut\.", ".shortcut.", "MindCV spells the projection shortcut 'creat_shortcut'"),
    RenameRule(r"\.post_attn\.bn\.", ".post_attn.",
               "MindCV wraps the post-attention BN in a cell with a 'bn' child; timm's BatchNormAct2d is the BN"),
    RenameRule(r"\.pos_embed\.rel_height$", ".pos_embed.height_rel", "relative embedding along H"),
    RenameRule(r"\.pos_embed\.rel_width$", ".pos_embed.width_rel", "relative embedding along W"),
    RenameRule(r"^classifier\.1\.", "head.fc.", "MindCV: SequentialCell(pool, Dense, Identity); timm: head.fc"),
)

FUNCTION_DIFFERENCES = """\
MindCV's built-in halonet_50t (mindcv/models/halonet.py, halonet_50t-533da6be.ckpt) has the same
layers, parameter shapes and block layout as timm's halonet50ts: tiered 3x3 stem 24/32/64 and a
3x3/2 max-pool; 3/4/6/3 bottleneck blocks (ratio 0.25) with halo self-attention (block 8, halo 3)
replacing the 3x3 conv in stage 2 block 3 (4 heads), stage 3 blocks 1/3/5 and stage 4 block 1
(8 heads); SiLU; BatchNorm eps 1e-5; global average pool + linear head. Its query striding,
relative-position logits and output folding follow timm step by step. It still computes a
different function, for two reasons:

1. Key/value windows (decisive). It gathers each block's 14x14 key/value neighbourhood with
   nn.Unfold (ExtractImagePatches), whose channel axis is ordered (window row, window column,
   channel) with the channel fastest (TensorFlow's convention), and then reshapes it as if it were
   ordered (channel, window row, window column) (PyTorch unfold's convention). So a "key" or
   "value" vector it attends over is not the projection of one neighbouring pixel but a strided
   mixture of different channels of different pixels, and a head's "window positions" are not
   spatial positions. No permutation of its weights reproduces this in halo attention as defined
   by the paper and timm (and implemented by this plugin).
2. Stem max-pool border. It zero-pads before the 3x3/2 max-pool, timm pads with -inf. After SiLU
   (minimum about -0.28) this changes the first row and column of the pooled map wherever all
   values under the window are negative.
(Not affecting halonet_50t: its HaloAttention ignores dim_head, and with avg_down=True or a
block size not divisible by the stride it strides the query and then also average-pools.)

Names and shapes map one-to-one, so a complete checkpoint can be written, but it is the nearest
equivalent, not the same network: convolutions, BatchNorms and the classifier are carried over
exactly; the attention layers get the same weights under correct halo semantics, which is not
what they were trained for. (Checked: with both points replaced by timm's semantics, MindCV's
model and the converted one give the same logits to ~1e-5; as shipped they differ by ~70 %,
random weights.) Do not expect the 79.53 % top-1 MindCV reports for its model (not measured
here). Use the result to initialise fine-tuning, or convert timm's halonet50ts weights instead.
This conversion therefore requires --allow-approximate.
"""


def mindcv_to_canonical(state: Mapping[str, np.ndarray]) -> "OrderedDict[str, np.ndarray]":
    """Rename a MindCV built-in halonet state dict to the canonical naming (values untouched)."""
    return apply_rules(state, MINDCV_TO_CANONICAL_RULES)
