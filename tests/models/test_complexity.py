"""The MAC counter against hand-computed values and an independent counter (torch FlopCounterMode on timm)."""
import pytest

import mindspore as ms
from mindspore import nn

from mindcv_halonet.layers import HaloAttention
from mindcv_halonet.models import halonet
from mindcv_halonet.models.complexity import count_macs


def test_conv_and_dense_macs_by_hand():
    net = nn.SequentialCell([
        nn.Conv2d(3, 8, 3, stride=2, pad_mode="pad", padding=1),  # 8x8 -> 4x4
        nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, group=4),  # grouped
        nn.Flatten(),
        nn.Dense(8 * 16, 10),
    ])
    assert count_macs(net, (3, 8, 8)) == 16 * 8 * 3 * 9 + 16 * 8 * 2 * 9 + 128 * 10


def test_halo_attention_macs_by_hand():
    layer = HaloAttention(16, num_heads=2, block_size=4, halo_size=1)
    # 8x8 -> 4 blocks, 2 heads: n = 8 problems of 16 queries x 36 keys, dqk = dv = 8
    content = values = 8 * 16 * 36 * 8
    relative = 2 * 8 * 16 * 6 * 8  # height and width tables, 6 window rows/cols each
    projections = 64 * 16 * 16 + 64 * 16 * 32  # q and kv 1x1 convs
    assert count_macs(layer, (16, 8, 8)) == content + relative + values + projections


def test_counter_restores_mode_and_rejects_bad_sizes():
    original = ms.get_context("mode")
    net = nn.SequentialCell([nn.Conv2d(1, 1, 1)])
    try:
        ms.set_context(mode=ms.GRAPH_MODE)
        assert count_macs(net, (1, 2, 2)) == 4
        assert ms.get_context("mode") == ms.GRAPH_MODE
    finally:
        ms.set_context(mode=original)
    with pytest.raises(ValueError, match="input_size"):
        count_macs(net, (1, 0, 2))


def test_halonet_26t_matches_torch_flop_counter_on_timm():
    # torch.utils.flop_counter.FlopCounterMode on timm 1.0.31 halonet26t, 1x3x256x256: 6,345,621,504 FLOPs / 2.
    # timm computes 2*win-1 relative-position columns per axis (we compute win), hence the 0.5 % tolerance.
    reference = 3_172_810_752
    got = count_macs(halonet.halonet_26t(), (3, 256, 256))
    assert abs(got / reference - 1) < 0.005
