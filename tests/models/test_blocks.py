"""Unit tests of the building blocks against hand-computed / NumPy references."""
import math

import numpy as np
import pytest

from mindspore import Tensor, nn

from mindcv_halonet.models import halonet
from mindcv_halonet.models.blocks import BottleneckBlock, ConvNormAct, DropPath, EcaModule, SelfAttnBlock


pytestmark = pytest.mark.usefixtures("pynative")  # tests/models/conftest.py


def test_conv_padding_is_symmetric_at_stride_2():
    # ones 4x4, 3x3 ones kernel, stride 2: symmetric padding 1 covers 2x2, 2x3, 3x2, 3x3 input pixels
    cna = ConvNormAct(1, 1, 3, stride=2)
    cna.conv.weight.set_data(Tensor(np.ones((1, 1, 3, 3), np.float32)))
    out = cna.conv(Tensor(np.ones((1, 1, 4, 4), np.float32))).asnumpy()[0, 0]
    np.testing.assert_array_equal(out, [[4, 6], [6, 9]])


@pytest.mark.parametrize("training", [True, False], ids=["train-path", "inference-path"])
@pytest.mark.parametrize("size", [(6, 6), (7, 5), (1, 2)])
def test_stem_max_pool_pads_like_minus_infinity(training, size):
    """Both code paths of the stem pool against NumPy with -inf padding, on all-negative input."""
    pool = halonet.halonet_50t().stem.pool
    pool.set_train(training)
    h, w = size
    x = -1.0 - np.random.default_rng(0).random((2, 3, h, w)).astype(np.float32)  # all negative
    got = pool(Tensor(x)).asnumpy()
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    ref = np.empty((2, 3, ho, wo), np.float32)
    for i in range(ho):
        for j in range(wo):
            ref[:, :, i, j] = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
    np.testing.assert_array_equal(got, ref)


def test_drop_path_eval_identity_and_train_statistics():
    dp = DropPath(0.3)
    x = Tensor(np.ones((4000, 1, 2, 2), np.float32))
    dp.set_train(False)
    np.testing.assert_array_equal(dp(x).asnumpy(), x.asnumpy())
    dp.set_train(True)
    y = dp(x).asnumpy()
    per_sample = y.reshape(4000, -1)
    assert np.all(per_sample == per_sample[:, :1])  # whole samples are kept or dropped
    kept = per_sample[per_sample[:, 0] != 0, 0]
    np.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-6)
    dropped = float((per_sample[:, 0] == 0).mean())
    assert abs(dropped - 0.3) < 0.04
    with pytest.raises(ValueError, match="drop_prob=1.0"):
        DropPath(1.0)


def test_drop_path_schedule_is_linear_over_blocks():
    net = halonet.halonet_26t(drop_path_rate=0.2)
    assert isinstance(net.stages[0][0].drop_path, nn.Identity)  # rate 0 for the first block
    rates = [1 - b.drop_path.keep_prob for s in net.stages for b in s if not isinstance(b.drop_path, nn.Identity)]
    np.testing.assert_allclose(rates, np.linspace(0, 0.2, 8)[1:], rtol=1e-6)


@pytest.mark.parametrize("channels, kernel", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_size_and_output(channels, kernel):
    eca = EcaModule(channels)
    assert tuple(eca.conv.weight.shape) == (1, 1, kernel)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1, 1, kernel)).astype(np.float32)
    eca.conv.weight.set_data(Tensor(w))
    x = rng.standard_normal((2, channels, 3, 3)).astype(np.float32)
    got = eca(Tensor(x)).asnumpy()
    pooled = x.mean(axis=(2, 3))
    pad = (kernel - 1) // 2
    padded = np.pad(pooled, ((0, 0), (pad, pad)))
    conv = np.stack([np.convolve(row, w[0, 0][::-1], mode="valid") for row in padded])  # cross-correlation
    ref = x * (1 / (1 + np.exp(-conv)))[:, :, None, None]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_zero_init_last():
    for zero in (True, False):
        net = halonet.halonet_26t(zero_init_last=zero)
        gammas = [b.conv3_1x1.bn.gamma.asnumpy() for s in net.stages for b in s]
        assert all((g == 0).all() for g in gammas) == zero


def test_blocks_downsample_consistently():
    x = Tensor(np.random.default_rng(0).standard_normal((1, 16, 7, 9)).astype(np.float32))
    bottle = BottleneckBlock(16, 32, stride=2)
    attn = SelfAttnBlock(16, 32, stride=2, bottle_ratio=0.5, attn_kwargs=dict(block_size=4, halo_size=1, num_heads=2))
    for block in (bottle, attn):
        block.set_train(False)
        assert tuple(block(x).shape) == (1, 32, 4, 5)


def test_value_ratio_widens_only_the_values():
    block = SelfAttnBlock(32, 64, bottle_ratio=0.5, value_ratio=2.5,
                          attn_kwargs=dict(block_size=4, halo_size=1, num_heads=4))
    assert tuple(block.self_attn.q.weight.shape) == (32, 32, 1, 1)  # q/k at the bottleneck width
    assert tuple(block.self_attn.kv.weight.shape) == (32 + 80, 32, 1, 1)  # values 2.5 x 32
    assert tuple(block.conv3_1x1.conv.weight.shape) == (64, 80, 1, 1)


def test_num_classes_zero_and_single_channel_input():
    net = halonet.halonet_26t(num_classes=0, in_channels=1)
    net.set_train(False)
    y = net(Tensor(np.zeros((1, 1, 64, 64), np.float32)))
    assert tuple(y.shape) == (1, 2048) and net.num_features == 2048
    assert tuple(net.stem.conv1.conv.weight.shape) == (24, 1, 3, 3)


def test_drop_rate_sets_head_dropout():
    net = halonet.halonet_26t(drop_rate=0.25)
    assert isinstance(net.head.drop, nn.Dropout)
    assert math.isclose(net.head.drop.p, 0.25)
