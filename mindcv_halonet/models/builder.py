"""One generic builder for every HaloNet variant: a variant is a ``ModelSpec`` (data), not code.

A ``ModelSpec`` lists four ``StageSpec`` rows plus stem / activation / attention settings. The
``HaloNet`` cell turns it into

    stem (SequentialCell: conv1.. [, pool]) -> stages (SequentialCell of SequentialCell of blocks)
    -> final_conv (1x1 ConvNormAct or Identity) -> head (avg pool, dropout, fc)

with the same module paths as timm's ``ByobNet``, so checkpoints convert by renaming only.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mindspore import Tensor, nn

from mindcv_halonet.arguments import check_count, check_fraction
from mindcv_halonet.layers import make_divisible
from mindcv_halonet.layers.checks import check_image_input

from .blocks import (
    CHANNEL_ATTENTION,
    BottleneckBlock,
    ClassifierHead,
    ConvNormAct,
    SelfAttnBlock,
    build_stem,
    get_activation,
    stem_layout,
)

__all__ = [
    "ALL_BLOCKS", "OUTPUT_STRIDES", "HaloNet", "ModelSpec", "StageSpec", "check_output_stride", "feature_info_of",
    "stage_plan", "validate_model_args",
]

#: ``StageSpec.attn_blocks`` value meaning "every block of the stage is a self-attention block"
ALL_BLOCKS = "all"

#: accepted ``output_stride`` values (timm ByobNet's: 8, 16, 32)
OUTPUT_STRIDES = (8, 16, 32)

STEM_REDUCTION = 4  # build_stem always reaches stride 4


@dataclass(frozen=True)
class StageSpec:
    """One stage (timm ``ByoBlockCfg`` rows of a stage folded into one).

    depth: number of blocks. out_chs: block output channels. stride: stride of the first block.
    bottle_ratio: bottleneck width = make_divisible(out_chs * bottle_ratio).
    group_size: channels per group of the bottleneck's 3x3 conv (0 = dense).
    attn_blocks: indices of the blocks that are self-attention blocks (``ALL_BLOCKS`` for all); the others
        are bottleneck blocks.
    attn_kwargs: HaloAttention arguments for this stage, merged over the model's ``attn_kwargs``.
    """

    depth: int
    out_chs: int
    stride: int
    bottle_ratio: float
    group_size: int = 0
    attn_blocks: Union[str, Tuple[int, ...]] = ()
    attn_kwargs: Mapping = field(default_factory=dict)

    def is_attn(self, index: int) -> bool:
        return self.attn_blocks == ALL_BLOCKS or index in self.attn_blocks


@dataclass(frozen=True)
class ModelSpec:
    """A whole variant.

    stem_type: 'tiered' (3x3 x3: 24/32/64 for stem_chs 64) or '7x7'. stem_pool: 3x3/2 max-pool after the convs.
    act_layer: 'relu' or 'silu' (trunk activation, also inside blocks). channel_attn: None, 'se' or 'eca'
    (in bottleneck blocks only). attn_kwargs: HaloAttention arguments (block_size, halo_size, num_heads,
    dim_head, qk_ratio, ...). value_ratio: the paper's r_v (attention value width / bottleneck width).
    num_features: channels of a final 1x1 ConvNormAct before the head (0 = none).
    """

    stages: Tuple[StageSpec, ...]
    stem_type: str = "tiered"
    stem_chs: int = 64
    stem_pool: bool = True
    act_layer: str = "relu"
    channel_attn: Optional[str] = None
    attn_kwargs: Mapping = field(default_factory=dict)
    value_ratio: float = 1.0
    num_features: int = 0


def _stem_feature(spec: ModelSpec) -> List[dict]:
    """The stem's stride-2 tap: the last conv before the stem's second stride-2 layer (timm ``Stem``)."""
    chs, _ = stem_layout(spec.stem_type, spec.stem_chs)
    if spec.stem_pool:  # conv1 (stride 2), conv2.., pool (stride 2): tap the last conv
        return [dict(chs=chs[-1], reduction=2, name=f"stem.conv{len(chs)}")]
    # no pool: the last conv is strided, tap the one before it
    return [dict(chs=chs[-2], reduction=2, name=f"stem.conv{len(chs) - 1}")]


def check_output_stride(output_stride) -> None:
    """Raise ``ValueError`` naming ``output_stride``, its value and the accepted values."""
    is_int = isinstance(output_stride, (int, np.integer)) and not isinstance(output_stride, bool)
    if not is_int or output_stride not in OUTPUT_STRIDES:
        raise ValueError(
            f"output_stride={output_stride!r} is invalid; expected one of {', '.join(map(str, OUTPUT_STRIDES))}"
        )


@dataclass(frozen=True)
class StagePlan:
    """How one stage runs for a given ``output_stride`` (timm ``create_byob_stages``)."""

    stride: int  # stride of the stage's first block (1 once the target stride is reached)
    first_dilation: int  # dilation of the first block's kxk conv
    dilation: int  # dilation of the other blocks' kxk convs
    reduction: int  # total stride of the stage's output


def stage_plan(spec: ModelSpec, output_stride: int = 32) -> List[StagePlan]:
    """timm's rule: once the network stride has reached ``output_stride``, a strided stage keeps stride 1
    and multiplies the dilation by its stride instead; its first block uses dilation 1 if the new dilation
    is 1 or 2, else 2. Self-attention blocks are not dilated (they run at stride 1 on the larger map)."""
    check_output_stride(output_stride)
    plans, dilation, reduction = [], 1, STEM_REDUCTION
    for stage in spec.stages:
        stride = stage.stride
        if reduction >= output_stride and stride > 1:
            dilation *= stride
            stride = 1
        reduction *= stride
        plans.append(StagePlan(stride, 1 if dilation in (1, 2) else 2, dilation, reduction))
    return plans


def feature_info_of(spec: ModelSpec, output_stride: int = 32) -> List[dict]:
    """The ``feature_info`` a ``HaloNet(spec, output_stride=...)`` will have, from the spec alone (cheap).

    Entries follow timm's ByobNet: the stem's stride-2 tap, the output of every stage that is followed by
    a (nominally) strided stage, and the final features (``final_conv``). ``output_stride`` < 32 keeps the
    same levels and changes their reductions.
    """
    info = _stem_feature(spec)
    chs, _ = stem_layout(spec.stem_type, spec.stem_chs)
    prev = dict(chs=chs[-1], reduction=STEM_REDUCTION,
                name="stem.pool" if spec.stem_pool else f"stem.conv{len(chs)}")
    for i, (stage, plan) in enumerate(zip(spec.stages, stage_plan(spec, output_stride))):
        if stage.stride != 1:  # timm: a stage output is a feature level when the next stage downsamples
            info.append(prev)
        prev = dict(chs=make_divisible(stage.out_chs), reduction=plan.reduction, name=f"stages.{i}")
    final_chs = spec.num_features or prev["chs"]
    info.append(dict(chs=final_chs, reduction=prev["reduction"], name="final_conv"))
    return info


def validate_model_args(num_classes, in_channels, drop_rate, drop_path_rate) -> None:
    """Raise ``ValueError`` (naming the argument, its value and what is accepted) before anything is built."""
    check_count("num_classes", num_classes, 0, "(0 = no classifier)")
    check_count("in_channels", in_channels, 1)
    check_fraction("drop_rate", drop_rate)
    check_fraction("drop_path_rate", drop_path_rate)


def _drop_path_rates(rate: float, depths: Sequence[int]) -> List[List[float]]:
    # timm: linear from 0 to rate over all blocks of the network, split per stage
    rates = np.linspace(0.0, rate, sum(depths)).tolist()
    out, start = [], 0
    for d in depths:
        out.append(rates[start : start + d])
        start += d
    return out


class HaloNet(nn.Cell):
    """A HaloNet-family network built from a ``ModelSpec``.

    Args:
        spec: the variant. num_classes: classifier outputs (0 = return pooled features).
        in_channels: input image channels. drop_rate: dropout before the classifier.
        drop_path_rate: stochastic-depth rate of the last block (linear from 0 over all blocks).
        zero_init_last: zero the last BatchNorm gamma of every residual branch.
        variant: the registered name, for error messages (``HaloNet`` when built from a bare spec).
        output_stride: 32 (default), 16 or 8: total stride of the last feature map; below 32 the last
            strided stages are dilated instead (timm ByobNet semantics, see ``stage_plan``).

    ``feature_info`` / ``flatten_sequential`` follow MindCV's feature-extraction contract: ``construct`` is
    exactly stem (flattened) -> stages.0 .. stages.3 -> final_conv -> head.
    """

    def __init__(
        self,
        spec: ModelSpec,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        variant: str = "HaloNet",
        output_stride: int = 32,
    ):
        super().__init__()
        validate_model_args(num_classes, in_channels, drop_rate, drop_path_rate)
        plans = stage_plan(spec, output_stride)
        if spec.channel_attn is not None and spec.channel_attn not in CHANNEL_ATTENTION:
            raise ValueError(
                f"channel_attn={spec.channel_attn!r} is not supported; "
                f"expected None or one of {sorted(CHANNEL_ATTENTION)}"
            )
        act = get_activation(spec.act_layer)
        channel_attn = CHANNEL_ATTENTION[spec.channel_attn] if spec.channel_attn else None
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.in_channels = in_channels
        self.variant = variant

        self.stem, prev_chs = build_stem(in_channels, spec.stem_type, spec.stem_chs, spec.stem_pool, act)

        dpr = _drop_path_rates(drop_path_rate, [s.depth for s in spec.stages])
        stages = []
        for stage_idx, (stage, plan) in enumerate(zip(spec.stages, plans)):
            out_chs = make_divisible(stage.out_chs)
            attn_kwargs: Dict = {**dict(spec.attn_kwargs), **dict(stage.attn_kwargs)}
            blocks = []
            for block_idx in range(stage.depth):
                stride = plan.stride if block_idx == 0 else 1
                first = plan.first_dilation if block_idx == 0 else plan.dilation
                dilation = (first, plan.dilation)
                if stage.is_attn(block_idx):
                    block = SelfAttnBlock(
                        prev_chs, out_chs, stride=stride, bottle_ratio=stage.bottle_ratio, act_layer=act,
                        attn_kwargs=attn_kwargs, value_ratio=spec.value_ratio,
                        drop_path_rate=dpr[stage_idx][block_idx], dilation=dilation,
                    )
                else:
                    block = BottleneckBlock(
                        prev_chs, out_chs, stride=stride, bottle_ratio=stage.bottle_ratio,
                        group_size=stage.group_size, act_layer=act, attn_layer=channel_attn,
                        drop_path_rate=dpr[stage_idx][block_idx], dilation=dilation,
                    )
                if zero_init_last:
                    block.zero_init_last()
                blocks.append(block)
                prev_chs = out_chs
            stages.append(nn.SequentialCell(blocks))
        self.stages = nn.SequentialCell(stages)

        if spec.num_features:
            self.num_features = spec.num_features
            self.final_conv = ConvNormAct(prev_chs, spec.num_features, 1, act_layer=act)
        else:
            self.num_features = prev_chs
            self.final_conv = nn.Identity()
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)

        self.output_stride = output_stride
        self.feature_info = feature_info_of(spec, output_stride)
        self.flatten_sequential = True

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.stages(x)
        return self.final_conv(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)

    def construct(self, x: Tensor) -> Tensor:
        # rank / channels / dtype, before the stem; a compile-time check in Graph mode (no run-time cost)
        check_image_input(x.shape, x.dtype, self.variant, self.in_channels, "in_channels")
        return self.forward_head(self.forward_features(x))
