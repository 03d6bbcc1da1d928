"""Which HaloNets fit MindCV's SSD example unchanged except for one dict entry.

MindCV's examples/det/ssd/model.py picks the adapter by ``args.backbone`` from a closed dict
(``mobilenet_v2_100``, ``resnet50``, ``mobilenet_v3_large_100``). Its ``resnet50`` adapter
(``ResNet50FPNWrapper``) takes ``create_model(..., features_only=True, out_indices=[2, 3, 4])`` and
builds its FPN for exactly 512 / 1024 / 2048 channels at strides 8 / 16 / 32. A HaloNet whose levels
2 / 3 / 4 have the same channels and strides works with that adapter: the user's one-line change is
``"halonet_50t": ResNet50FPNWrapper`` in that dict (docs/backbones.md). The contract is compared here
against MindCV's own ``resnet50`` feature wrapper; the 640 px forward/backward through an FPN is
tests/models/test_detection_backbone.py.
"""
import pytest

from mindcv.models import create_model

from mindcv_halonet.models import halonet
from mindcv_halonet.models.builder import feature_info_of

OUT_INDICES = [2, 3, 4]
FITS_RESNET50_ADAPTER = ["eca_halonext_26ts", "halonet_26t", "halonet_50t"]


@pytest.fixture(scope="module")
def resnet50_levels():
    net = create_model("resnet50", features_only=True, out_indices=OUT_INDICES)
    info = create_model("resnet50").feature_info
    return list(zip(net.out_channels, [info[i]["reduction"] for i in OUT_INDICES]))


def _levels(name):
    info = feature_info_of(halonet.model_specs[name])
    return [(info[i]["chs"], info[i]["reduction"]) for i in OUT_INDICES]


def test_resnet50_adapter_contract_is_512_1024_2048_at_8_16_32(resnet50_levels):
    assert resnet50_levels == [(512, 8), (1024, 16), (2048, 32)]


@pytest.mark.parametrize("name", sorted(halonet.model_specs))
def test_which_variants_fit_the_resnet50_adapter(name, resnet50_levels):
    assert (_levels(name) == resnet50_levels) == (name in FITS_RESNET50_ADAPTER), _levels(name)


def test_built_backbone_reports_the_same_channels():
    assert create_model("halonet_26t", features_only=True, out_indices=OUT_INDICES).out_channels == [512, 1024, 2048]
