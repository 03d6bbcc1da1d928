"""halonet_50t as the backbone of MindCV's DeepLabV3 / DeepLabV3+ example (examples/seg/deeplabv3 in
MindCV's git repository), at output stride 16 and 8.

The backbone is created exactly the way the example's train.py does it::

    create_model(backbone, checkpoint_path=..., auto_mapping=False, features_only=True,
                 out_indices=[4] (DeepLabV3) or [1, 4] (DeepLabV3+), output_stride=16 or 8)

and the head is built the way the example builds its own (written here, not copied): ASPP with rates
1 / 6 / 12 / 18 (a 1x1 branch, three dilated 3x3 branches, an image-pooling branch), each conv + BN +
ReLU, concatenated, 1x1 conv + BN + ReLU + dropout, a 1x1 classifier, bilinear upsampling to the input;
DeepLabV3+ adds the decoder (1x1 to 48 channels on the 256-channel stride-4 features, concat with the
upsampled ASPP output, two 3x3 conv + BN + ReLU, 1x1 classifier). ASPP takes 2048 input channels and the
decoder 256, as in the example. Checks: the checkpoint loaded into the backbone, feature shapes at
1/4 and 1/output_stride, finite loss, finite gradients, every halo-attention parameter has a nonzero
gradient (training mode, batch 2, 128 px, PyNative, CPU).
"""
import re

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindcv.models import create_model

NUM_CLASSES, SIZE = 21, 128
pytestmark = pytest.mark.usefixtures("pynative")  # tests/models/conftest.py


def _conv_bn_relu(cin, cout, kernel=1, dilation=1):
    pad = dilation * (kernel // 2)
    conv = nn.Conv2d(cin, cout, kernel, pad_mode="pad", padding=pad, dilation=dilation, has_bias=False,
                     weight_init="xavier_uniform")
    return nn.SequentialCell([conv, nn.BatchNorm2d(cout), nn.ReLU()])


class ImagePooling(nn.Cell):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = _conv_bn_relu(cin, cout)

    def construct(self, x):
        y = self.proj(ops.mean(x, (2, 3), keep_dims=True))
        return ops.broadcast_to(y, (-1, -1, x.shape[2], x.shape[3]))  # = nearest resize of a 1x1 map


class ASPP(nn.Cell):
    def __init__(self, cin=2048, cout=256, rates=(1, 6, 12, 18)):
        super().__init__()
        branches = [_conv_bn_relu(cin, cout, 1 if r == 1 else 3, r) for r in rates]
        self.branches = nn.CellList(branches + [ImagePooling(cin, cout)])
        self.project = _conv_bn_relu(cout * (len(rates) + 1), cout)
        self.drop = nn.Dropout(p=0.7)

    def construct(self, x):
        return self.drop(self.project(ops.cat([b(x) for b in self.branches], axis=1)))


class DeepLab(nn.Cell):
    """DeepLabV3 (``plus=False``: last feature only) or DeepLabV3+ (low-level + last feature)."""

    def __init__(self, backbone, plus):
        super().__init__()
        self.backbone, self.plus = backbone, plus
        self.aspp = ASPP()
        if plus:
            self.low = _conv_bn_relu(256, 48)
            self.decode = nn.SequentialCell([_conv_bn_relu(304, 256, 3), _conv_bn_relu(256, 256, 3)])
        self.classify = nn.Conv2d(256, NUM_CLASSES, 1, has_bias=True, weight_init="xavier_uniform")

    def construct(self, x):
        feats = self.backbone(x)
        y = self.aspp(feats[-1])
        if self.plus:
            low = self.low(feats[0])
            y = ops.interpolate(y, size=low.shape[2:], mode="bilinear", align_corners=True)
            y = self.decode(ops.cat((y, low), axis=1))
        y = self.classify(y)
        return ops.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)


@pytest.mark.parametrize("model, output_stride", [("deeplabv3", 16), ("deeplabv3plus", 8)])
def test_halonet_50t_in_deeplab_at_output_stride(model, output_stride, tmp_path):
    # a backbone checkpoint (the example's backbone_ckpt_path): the plain model, distinct random values
    plain = create_model("halonet_50t")
    rng = np.random.default_rng(0)
    for p in plain.get_parameters():
        p.set_data(Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32) * (0.05 if p.ndim > 1 else 1.0)))
    ckpt = tmp_path / "halonet_50t.ckpt"
    ms.save_checkpoint(plain, str(ckpt))
    saved = {p.name: p.asnumpy() for p in plain.get_parameters()}
    del plain

    plus = model == "deeplabv3plus"
    backbone = create_model("halonet_50t", checkpoint_path=str(ckpt), auto_mapping=False, features_only=True,
                            out_indices=[1, 4] if plus else [4], output_stride=output_stride)
    not_loaded = [p.name for p in backbone.get_parameters() if not np.array_equal(p.asnumpy(), saved[p.name])]
    assert not_loaded == []
    assert backbone.out_channels == ([256, 2048] if plus else [2048])
    names = {id(p): p.name for p in backbone.trainable_params()}  # before nesting renames them

    net = DeepLab(backbone, plus)
    net.set_train(True)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32))
    feats = backbone(x)
    side = SIZE // output_stride
    want = ([(2, 256, SIZE // 4, SIZE // 4)] if plus else []) + [(2, 2048, side, side)]
    assert [tuple(f.shape) for f in feats] == want

    labels = Tensor(np.random.default_rng(2).integers(0, NUM_CLASSES, (2, SIZE, SIZE)).astype(np.int32))
    loss_fn = nn.CrossEntropyLoss()
    params = net.trainable_params()

    def forward(images, target):
        return loss_fn(net(images), target)

    loss, grads = ms.value_and_grad(forward, grad_position=None, weights=params)(x, labels)
    assert np.isfinite(loss.asnumpy()) and float(loss.asnumpy()) > 0
    bad = [p.name for p, g in zip(params, grads) if not np.isfinite(g.asnumpy()).all()]
    assert not bad, bad[:10]
    attention = {names[id(p)]: g.asnumpy() for p, g in zip(params, grads)
                 if id(p) in names and ".self_attn." in names[id(p)]}
    blocks = sorted({re.sub(r"\.self_attn\..*", "", n) for n in attention})
    assert blocks == ["stages.1.3", "stages.2.1", "stages.2.3", "stages.2.5", "stages.3.1"], blocks
    zero = [n for n, g in attention.items() if not np.abs(g).max() > 0]
    assert not zero, zero
