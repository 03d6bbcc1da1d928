"""``halonet_50t`` as a detection backbone, the way MindCV's SSD-FPN recipe uses ``resnet50``.

``create_model(name, features_only=True, out_indices=[2, 3, 4])``: in both models' ``feature_info``
index 2/3/4 are the stride-8/16/32 levels (halonet_50t: ``stages.1`` / ``stages.2`` / ``final_conv``
after ``stages.3``; resnet50: ``layer2`` / ``layer3`` / ``layer4``). At 640x640 the maps are 80/40/20;
20 is not a multiple of the attention block size 8, so the last stage's halo attention runs on a
padded block layout. Forward and backward through a small FPN-style head (lateral 1x1 convs, top-down
nearest upsampling + add, 3x3 output convs, a scalar loss): every gradient is finite, and every
attention parameter of the backbone gets a non-zero gradient.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindcv.models import create_model

SIZE = 640
OUT_INDICES = [2, 3, 4]
EXPECTED = [(512, 8, 80), (1024, 16, 40), (2048, 32, 20)]  # (channels, stride, map size) at 640 px

pytestmark = pytest.mark.usefixtures("pynative")  # tests/models/conftest.py


class TinyFPN(nn.Cell):
    """Lateral 1x1 convs -> top-down nearest upsampling + add -> 3x3 convs (one output per level)."""

    def __init__(self, in_channels, width=32):
        super().__init__()
        self.lateral = nn.CellList([nn.Conv2d(c, width, 1, has_bias=True) for c in in_channels])
        self.output = nn.CellList([nn.Conv2d(width, width, 3, pad_mode="pad", padding=1, has_bias=True)
                                   for _ in in_channels])

    def construct(self, features):
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        merged = [laterals[-1]]
        for lat in reversed(laterals[:-1]):  # coarse -> fine
            up = ops.interpolate(merged[0], size=lat.shape[2:], mode="nearest")
            merged.insert(0, lat + up)
        return [conv(m) for conv, m in zip(self.output, merged)]


class BackboneWithFPN(nn.Cell):
    def __init__(self, backbone, in_channels):
        super().__init__()
        self.backbone = backbone
        self.fpn = TinyFPN(in_channels)

    def construct(self, x):
        outs = self.fpn(self.backbone(x))
        loss = 0.0
        for o in outs:
            loss = loss + (o * o).mean()
        return loss


def _image():
    return Tensor(np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32))


def test_halonet_50t_pyramid_equals_resnet50_and_trains_through_an_fpn():
    x = _image()
    # the peer MindCV's SSD-FPN recipe uses, built the same way
    resnet = create_model("resnet50", features_only=True, out_indices=OUT_INDICES)
    resnet.set_train(False)
    resnet_shapes = [tuple(f.shape) for f in resnet(x)]
    # zero_init_last=False: like the (pretrained) backbone a detector starts from; with the default
    # zero-initialised last BatchNorm of every residual branch, nothing inside a branch gets a gradient
    # at step 0 (timm's behaviour too)
    halo = create_model("halonet_50t", features_only=True, out_indices=OUT_INDICES, zero_init_last=False)
    expected_shapes = [(1, c, s, s) for c, _, s in EXPECTED]
    assert resnet_shapes == expected_shapes
    assert resnet.out_channels == halo.out_channels == [c for c, _, _ in EXPECTED]

    # nesting a cell renames its parameters (prefixes); keep the backbone's own names to report by
    backbone_names = {id(p): p.name for p in halo.trainable_params()}
    model = BackboneWithFPN(halo, halo.out_channels)
    model.set_train(True)  # a detector fine-tunes its backbone (BatchNorm in training mode)
    halo_shapes = [tuple(f.shape) for f in halo(x)]
    assert halo_shapes == expected_shapes == resnet_shapes

    params = model.trainable_params()
    loss, grads = ms.value_and_grad(model, grad_position=None, weights=params)(x)
    assert np.isfinite(loss.asnumpy()) and float(loss.asnumpy()) > 0
    by_name = {backbone_names.get(id(p), "fpn." + p.name): g.asnumpy() for p, g in zip(params, grads)}
    assert len(by_name) == len(params) and len(backbone_names) == len(params) - 12  # 6 FPN convs x (w, b)
    bad = [n for n, g in by_name.items() if not np.isfinite(g).all()]
    assert not bad, bad[:10]
    attention = {n: g for n, g in by_name.items() if ".self_attn." in n}
    # halonet_50t (timm halonet50ts) has halo attention in blocks stages.1.3, stages.2.{1,3,5}, stages.3.1
    blocks = sorted({n.split(".self_attn.")[0] for n in attention})
    assert blocks == ["stages.1.3", "stages.2.1", "stages.2.3", "stages.2.5", "stages.3.1"], blocks
    zero = [n for n, g in attention.items() if not np.abs(g).max() > 0]
    assert not zero, zero
    assert any(np.abs(g).max() > 0 for n, g in by_name.items() if n.startswith("fpn."))
