"""Building blocks of the HaloNet family (timm ``byobnet`` semantics, MindSpore cells).

Every cell keeps the attribute names of its timm counterpart, so a parameter path here is the
timm state-dict key with BatchNorm renamed (see ``mindcv_halonet/models/README.md``):

    ConvNormAct      conv.weight, bn.{gamma,beta,moving_mean,moving_variance}
    BatchNormAct2d   {gamma,beta,moving_mean,moving_variance}     (timm: weight/bias/running_*)
    SqueezeExcite    fc1.{weight,bias}, fc2.{weight,bias}
    EcaModule        conv.weight (1, 1, k)                        (same shape as timm's Conv1d)
    BottleneckBlock  shortcut, conv1_1x1, conv2_kxk, attn, conv3_1x1
    SelfAttnBlock    shortcut, conv1_1x1, self_attn, post_attn, conv3_1x1
    ClassifierHead   fc.{weight,bias}

All convolutions pad symmetrically like PyTorch (``pad_mode='pad'``); the stem max-pool pads with
-inf semantics (MindSpore's padded ``nn.MaxPool2d`` ignores the padded positions). Only plain ops
are used, shapes are static for a given input size, and everything runs in PyNative and Graph mode.
"""
import math
from collections import OrderedDict
from typing import Callable, Optional, Tuple

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import HeNormal, HeUniform, Normal, initializer

from mindcv_halonet.layers import HaloAttention, SiLU, make_divisible

__all__ = [
    "ACTIVATIONS",
    "BatchNormAct2d",
    "BottleneckBlock",
    "ClassifierHead",
    "ConvNormAct",
    "DropPath",
    "EcaModule",
    "SelfAttnBlock",
    "SqueezeExcite",
    "StemMaxPool",
    "build_stem",
    "stem_layout",
    "get_activation",
    "symmetric_padding",
]

#: activation name -> cell class; a variant row picks one by name
ACTIVATIONS = {"relu": nn.ReLU, "silu": SiLU}  # SiLU: the plugin's, whose backward keeps only its input

BN_EPS = 1e-5  # timm / PyTorch BatchNorm2d defaults
BN_MOMENTUM = 0.9  # MindSpore convention: 1 - PyTorch momentum (0.1)


def get_activation(name: str) -> Callable[[], nn.Cell]:
    """Return the activation cell class registered under ``name`` (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"act_layer={name!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def symmetric_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """PyTorch/timm default padding: ((stride - 1) + dilation * (kernel_size - 1)) // 2 on every side."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def _conv_init() -> HeNormal:
    # timm: normal(0, sqrt(2 / fan_out)) for every conv of the trunk
    return HeNormal(negative_slope=0, mode="fan_out", nonlinearity="relu")


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm2d followed by an activation; parameters are the BatchNorm's own (no extra nesting)."""

    def __init__(self, num_features: int, act_layer: Optional[Callable[[], nn.Cell]] = None):
        super().__init__(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def construct(self, x: Tensor) -> Tensor:
        return self.act(super().construct(x))


class ConvNormAct(nn.Cell):
    """Conv2d (no bias, symmetric padding) + BatchNorm2d + optional activation."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act_layer: Optional[Callable[[], nn.Cell]] = None,
        dilation: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs,
            out_chs,
            kernel_size,
            stride=stride,
            pad_mode="pad",
            padding=symmetric_padding(kernel_size, stride, dilation),
            dilation=dilation,
            group=groups,
            has_bias=False,
            weight_init=_conv_init(),
        )
        self.bn = nn.BatchNorm2d(out_chs, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def construct(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DropPath(nn.Cell):
    """Stochastic depth: in training, zero whole samples with probability ``drop_prob`` and rescale the rest."""

    def __init__(self, drop_prob: float):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob={drop_prob!r} is invalid; expected a number in [0, 1)")
        self.keep_prob = 1.0 - drop_prob
        self.uniform = ops.UniformReal()

    def construct(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        mask = ops.floor(self.uniform((x.shape[0],) + (1,) * (x.ndim - 1)) + self.keep_prob)
        return x * mask.astype(x.dtype) / self.keep_prob


def _drop_path_or_identity(rate: float) -> nn.Cell:
    return DropPath(rate) if rate > 0.0 else nn.Identity()


class SqueezeExcite(nn.Cell):
    """timm ``SEModule``: mean-pool, 1x1 conv (bias) + ReLU, 1x1 conv (bias), sigmoid gate.

    Reduced width ``make_divisible(channels * rd_ratio, 8, round_limit=0)`` as in timm.
    """

    def __init__(self, channels: int, rd_ratio: float = 1.0 / 16):
        super().__init__()
        rd_channels = make_divisible(channels * rd_ratio, 8, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, has_bias=True, weight_init=_conv_init(), bias_init="zeros")
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, has_bias=True, weight_init=_conv_init(), bias_init="zeros")
        self.gate = nn.Sigmoid()

    def construct(self, x: Tensor) -> Tensor:
        x_se = ops.mean(x, (2, 3), keep_dims=True)
        x_se = self.fc2(self.act(self.fc1(x_se)))
        return x * self.gate(x_se)


class ChannelConv1d(nn.Cell):
    """A 1-in/1-out, bias-free 1-D convolution over the channel axis with timm's weight shape (1, 1, k)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.padding = (kernel_size - 1) // 2
        self.weight = Parameter(initializer(HeUniform(negative_slope=math.sqrt(5)), (1, 1, kernel_size), ms.float32),
                                name="weight")

    def construct(self, y: Tensor) -> Tensor:
        # y: (B, C) -> (B, 1, 1, C); 1 x k conv with symmetric zero padding along C
        b, c = y.shape
        w = self.weight.reshape(1, 1, 1, self.kernel_size).astype(y.dtype)
        out = ops.conv2d(y.reshape(b, 1, 1, c), w, pad_mode="pad", padding=(0, self.padding))
        return out.reshape(b, c)


class EcaModule(nn.Cell):
    """timm ``EcaModule`` (efficient channel attention): kernel size from the channel count (gamma 2, beta 1)."""

    def __init__(self, channels: int, gamma: float = 2.0, beta: float = 1.0):
        super().__init__()
        t = int(abs(math.log(channels, 2) + beta) / gamma)
        kernel_size = max(t if t % 2 else t + 1, 3)
        self.conv = ChannelConv1d(kernel_size)
        self.gate = nn.Sigmoid()

    def construct(self, x: Tensor) -> Tensor:
        b, c = x.shape[0], x.shape[1]
        y = self.gate(self.conv(ops.mean(x, (2, 3))))
        return x * y.reshape(b, c, 1, 1)


#: channel-attention name (``ModelSpec.channel_attn``) -> cell class (passed to blocks as ``attn_layer``)
CHANNEL_ATTENTION = {"se": SqueezeExcite, "eca": EcaModule}


def _shortcut(in_chs: int, out_chs: int, stride: int, dilation: Tuple[int, int] = (1, 1)) -> nn.Cell:
    # timm downsample='conv1x1': 1x1 conv (strided) + BN without activation when the shape changes
    # (timm ``create_shortcut``: also when the block's first and later dilations differ)
    if in_chs != out_chs or stride != 1 or dilation[0] != dilation[1]:
        return ConvNormAct(in_chs, out_chs, 1, stride=stride, act_layer=None)
    return nn.Identity()


class _ResidualBlock(nn.Cell):
    """``act(drop_path(conv3_1x1(branch(x))) + shortcut(x))``; subclasses define ``branch`` and the cells."""

    def zero_init_last(self) -> None:
        """Start the residual branch at zero (timm ``zero_init_last``)."""
        gamma = self.conv3_1x1.bn.gamma
        gamma.set_data(initializer("zeros", gamma.shape, gamma.dtype))

    def branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def construct(self, x: Tensor) -> Tensor:
        shortcut = self.shortcut(x)
        x = self.drop_path(self.conv3_1x1(self.branch(x)))
        return self.act(x + shortcut)


class BottleneckBlock(_ResidualBlock):
    """ResNet bottleneck: 1x1 -> kxk (strided, grouped) -> [channel attention] -> 1x1, residual, activation.

    ``mid = make_divisible(out_chs * bottle_ratio)``; ``group_size`` 0 means a dense kxk conv.
    ``dilation`` = (first, rest) as in timm's ``create_byob_stages`` (output_stride < 32): the kxk conv
    is dilated by ``first``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        bottle_ratio: float = 0.25,
        group_size: int = 0,
        act_layer: Callable[[], nn.Cell] = nn.ReLU,
        attn_layer: Optional[Callable[[int], nn.Cell]] = None,
        drop_path_rate: float = 0.0,
        kernel_size: int = 3,
        dilation: Tuple[int, int] = (1, 1),
    ):
        super().__init__()
        mid_chs = make_divisible(out_chs * bottle_ratio)
        if group_size and mid_chs % group_size:
            raise ValueError(
                f"group_size={group_size} does not divide the bottleneck width {mid_chs}; "
                f"expected a divisor of {mid_chs} (or 0 for a dense conv)"
            )
        groups = mid_chs // group_size if group_size else 1
        self.shortcut = _shortcut(in_chs, out_chs, stride, dilation)
        self.conv1_1x1 = ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer)
        self.conv2_kxk = ConvNormAct(mid_chs, mid_chs, kernel_size, stride=stride, groups=groups, act_layer=act_layer,
                                     dilation=dilation[0])
        self.attn = attn_layer(mid_chs) if attn_layer is not None else nn.Identity()
        self.conv3_1x1 = ConvNormAct(mid_chs, out_chs, 1, act_layer=None)
        self.drop_path = _drop_path_or_identity(drop_path_rate)
        self.act = act_layer()

    def branch(self, x: Tensor) -> Tensor:
        return self.attn(self.conv2_kxk(self.conv1_1x1(x)))


class SelfAttnBlock(_ResidualBlock):
    """Bottleneck with the kxk conv replaced by halo attention: 1x1 -> HaloAttention (strided) -> BN+act -> 1x1.

    ``mid = make_divisible(out_chs * bottle_ratio)`` is the attention input and query/key width.
    ``value_ratio`` (the paper's r_v) widens the attention output (values) to
    ``make_divisible(mid * value_ratio)``; with 1.0 the block is exactly timm's ``SelfAttnBlock``.
    ``attn_kwargs`` go to ``HaloAttention`` (block_size, halo_size, num_heads, dim_head, ...).
    ``dilation`` only decides the shortcut (timm): the attention itself is never dilated; in a dilated
    stage it runs at stride 1 on the larger map (timm's byobnet: "FIXME need to dilate self attn").
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        bottle_ratio: float = 1.0,
        act_layer: Callable[[], nn.Cell] = nn.ReLU,
        attn_kwargs: Optional[dict] = None,
        value_ratio: float = 1.0,
        drop_path_rate: float = 0.0,
        dilation: Tuple[int, int] = (1, 1),
    ):
        super().__init__()
        attn_kwargs = dict(attn_kwargs or {})
        mid_chs = make_divisible(out_chs * bottle_ratio)
        attn_out = mid_chs
        if value_ratio != 1.0:
            attn_out = make_divisible(mid_chs * value_ratio)
            num_heads = attn_kwargs.get("num_heads", 8)
            # keep query/key at the bottleneck width; only the values grow
            attn_kwargs.setdefault("dim_head", mid_chs // num_heads)
        self.shortcut = _shortcut(in_chs, out_chs, stride, dilation)
        self.conv1_1x1 = ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer)
        self.self_attn = HaloAttention(mid_chs, dim_out=attn_out, stride=stride, **attn_kwargs)
        self.post_attn = BatchNormAct2d(attn_out, act_layer=act_layer)
        self.conv3_1x1 = ConvNormAct(attn_out, out_chs, 1, act_layer=None)
        self.drop_path = _drop_path_or_identity(drop_path_rate)
        self.act = act_layer()

    def branch(self, x: Tensor) -> Tensor:
        return self.post_attn(self.self_attn(self.conv1_1x1(x)))


class ClassifierHead(nn.Cell):
    """Global average pool -> dropout -> Dense (``fc``). ``num_classes=0`` returns the pooled features."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(p=drop_rate) if drop_rate > 0.0 else nn.Identity()
        if num_classes > 0:
            self.fc = nn.Dense(in_features, num_classes, weight_init=Normal(0.01), bias_init="zeros")
        else:
            self.fc = nn.Identity()

    def construct(self, x: Tensor) -> Tensor:
        x = ops.mean(x, (2, 3))
        return self.fc(self.drop(x))


def stem_layout(stem_type: str, stem_chs: int) -> Tuple[Tuple[int, ...], int]:
    """(output channels of conv1, conv2, ..., kernel size) of a stem type."""
    if stem_type == "tiered":
        return (3 * stem_chs // 8, stem_chs // 2, stem_chs), 3
    if stem_type == "7x7":
        return (stem_chs,), 7
    raise ValueError(f"stem_type={stem_type!r} is not supported; expected 'tiered' or '7x7'")


class StemMaxPool(nn.Cell):
    """3x3 / stride-2 max-pool with padding 1 that acts like -inf (padded positions never win).

    Training, on every backend but CPU: pad with the lowest value (``concat``, not ``ops.pad``, whose
    backward can hang on CPU) and a VALID ``ops.MaxPool`` -- plain ops that every backend has, unlike
    the padded ``nn.MaxPool2d``, which runs ``MaxPool3DWithArgmax`` (experimental, AICPU on Ascend).
    Training on CPU keeps the padded ``nn.MaxPool2d``: it computes the same values and gradients
    (``tests/models/test_stem_pool_portable.py``: float32 forward and backward exactly, ties included)
    and its backward is faster on CPU. ``portable=True/False`` forces a path; ``None`` (default) picks
    from ``device_target`` when the cell is built.
    Inference takes the max of three strided slices per axis, rows then columns (about 1.7x faster
    forward on CPU). All paths compute the same function: output size floor((n - 1) / 2) + 1.
    """

    def __init__(self, portable: Optional[bool] = None):
        super().__init__()
        if portable is None:
            portable = ms.get_context("device_target") != "CPU"
        self.portable = bool(portable)
        if self.portable:
            self.pool = ops.MaxPool(kernel_size=3, strides=2, pad_mode="VALID")
        else:
            self.pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        self.lowest = -3.0e38  # below every float32 value; -inf once cast to float16

    def _pad_lowest(self, x: Tensor) -> Tensor:
        """One row/column of ``lowest`` on each side of H and W."""
        b, c, h, w = x.shape
        row = ops.ones((b, c, 1, w), x.dtype) * self.lowest
        x = ops.concat((row, x, row), 2)
        col = ops.ones((b, c, h + 2, 1), x.dtype) * self.lowest
        return ops.concat((col, x, col), 3)

    def _max3_stride2(self, x: Tensor, axis: int) -> Tensor:
        n = x.shape[axis]
        out = (n - 1) // 2 + 1
        pad_shape = list(x.shape)
        pad_shape[axis] = 1
        before = ops.ones(tuple(pad_shape), x.dtype) * self.lowest
        pad_shape[axis] = 2 * out + 1 - n
        after = ops.ones(tuple(pad_shape), x.dtype) * self.lowest
        xp = ops.concat((before, x, after), axis)  # 2 * (out + 1) entries along axis
        pair_shape = list(x.shape)
        pair_shape[axis] = out + 1
        pair_shape.insert(axis + 1, 2)
        pairs = xp.reshape(tuple(pair_shape))  # [..., i, (2i, 2i+1), ...]
        even = ops.narrow(pairs, axis + 1, 0, 1).squeeze(axis + 1)  # xp[0::2]
        odd = ops.narrow(pairs, axis + 1, 1, 1).squeeze(axis + 1)  # xp[1::2]
        # window i covers xp[2i], xp[2i+1], xp[2i+2]
        return ops.maximum(ops.maximum(ops.narrow(even, axis, 0, out), ops.narrow(odd, axis, 0, out)),
                           ops.narrow(even, axis, 1, out))

    def construct(self, x: Tensor) -> Tensor:
        if self.training:
            if self.portable:
                return self.pool(self._pad_lowest(x))
            return self.pool(x)
        return self._max3_stride2(self._max3_stride2(x, 2), 3)


def build_stem(
    in_chs: int, stem_type: str, stem_chs: int, pool: bool, act_layer: Callable[[], nn.Cell]
) -> Tuple[nn.SequentialCell, int]:
    """Build timm's ``Stem`` (total stride 4) as a SequentialCell with children conv1.. and pool.

    ``tiered``: three 3x3 convs with (3/8, 1/2, 1) x ``stem_chs`` channels; the first is strided and, without
    pooling, also the last. ``7x7``: one 7x7 stride-2 conv. ``pool`` adds a 3x3 stride-2 max-pool (pad 1,
    padded positions never win, like PyTorch's -inf padding).

    Returns (stem, output channels).
    """
    chs, kernel = stem_layout(stem_type, stem_chs)
    strides = [2] + [1] * (len(chs) - 1)
    if not pool:
        if len(chs) == 1:
            raise ValueError("stem_type='7x7' needs stem_pool=True to reach the stem's total stride of 4")
        strides[-1] = 2
    layers = OrderedDict()
    prev = in_chs
    for i, (c, s) in enumerate(zip(chs, strides)):
        layers[f"conv{i + 1}"] = ConvNormAct(prev, c, kernel, stride=s, act_layer=act_layer)
        prev = c
    if pool:
        layers["pool"] = StemMaxPool()
    return nn.SequentialCell(layers), prev
