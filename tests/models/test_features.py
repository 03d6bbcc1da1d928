"""``features_only=True`` through MindCV's ``build_model_with_cfg`` / ``create_model`` / ``FeatureExtractWrapper``."""
import math

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor
from mindcv.models import create_model
from mindcv.models.features import FeatureExtractWrapper

from mindcv_halonet.models import halonet

# expected pyramid, written down from timm's ByobNet feature_info for these layouts: (channels, reduction)
EXPECTED = {
    "halonet_26t": [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "sehalonet_33ts": [(32, 2), (256, 4), (512, 8), (1024, 16), (1280, 32)],  # no stem pool: tap after conv2
    "halonet_h1": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
}
SIZE = 64


def _input(size=SIZE):
    return Tensor(np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32))


pytestmark = pytest.mark.usefixtures("pynative")  # tests/models/conftest.py


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feature_info_matches_timm_layout(name):
    net = getattr(halonet, name)()
    assert [(f["chs"], f["reduction"]) for f in net.feature_info] == EXPECTED[name]
    assert net.flatten_sequential is True
    top = dict(net.name_cells())
    for f in net.feature_info:  # every name is a top-level cell or a child of a flattened SequentialCell
        parent, _, child = f["name"].partition(".")
        assert parent in top
        if child:
            assert child in dict(top[parent].name_cells())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_features_only_all_levels_shapes(name):
    net = getattr(halonet, name)(features_only=True)
    assert isinstance(net, FeatureExtractWrapper)
    net.set_train(False)
    outs = net(_input())
    assert [tuple(o.shape) for o in outs] == [
        (1, c, math.ceil(SIZE / r), math.ceil(SIZE / r)) for c, r in EXPECTED[name]
    ]
    assert net.out_channels == [c for c, _ in EXPECTED[name]]


def test_features_only_subset_via_create_model():
    net = create_model("halonet_50t", features_only=True, out_indices=[1, 3, 4])
    net.set_train(False)
    outs = net(_input())
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16), (1, 1024, 4, 4), (1, 2048, 2, 2)]


def test_construct_is_the_chain_of_feature_cells():
    """The wrapper re-runs the flattened top-level cells; its last feature must equal forward_features."""
    net = halonet.halonet_26t()
    net.set_train(False)
    x = _input()
    reference = net.forward_features(x).asnumpy()
    logits = net(x).asnumpy()
    wrapped = FeatureExtractWrapper(net, out_indices=[4])
    wrapped.set_train(False)
    (last,) = wrapped(x)
    np.testing.assert_allclose(last.asnumpy(), reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.forward_head(Tensor(reference)).asnumpy(), logits, rtol=1e-5, atol=1e-6)


def test_features_only_keeps_plain_parameter_names_so_checkpoints_load(tmp_path):
    plain = halonet.halonet_h0()
    plain.set_train(False)
    x = _input()
    expected = plain.forward_features(x).asnumpy()
    ckpt = tmp_path / "h0.ckpt"
    ms.save_checkpoint(plain, str(ckpt))

    wrapped = create_model("halonet_h0", features_only=True, out_indices=[4], checkpoint_path=str(ckpt))
    assert {p.name for p in wrapped.get_parameters()} <= {p.name for p in plain.get_parameters()}
    assert "stem.conv1.conv.weight" in {p.name for p in wrapped.get_parameters()}
    wrapped.set_train(False)
    (got,) = wrapped(x)
    np.testing.assert_allclose(got.asnumpy(), expected, rtol=1e-5, atol=1e-6)
