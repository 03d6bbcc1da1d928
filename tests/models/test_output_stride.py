"""``output_stride`` 8 / 16 / 32 (timm ByobNet semantics): dilation replaces the stride of the last
strided stages; halo attention is not dilated and runs at stride 1 on the larger map.

* spec level (cheap): every variant's ``feature_info`` reductions are min(nominal, output_stride);
* built models at an odd input size: each feature map (``features_only``) and the plain model's
  ``forward_features`` have the size obtained by halving (rounding up, like a padded stride-2 conv)
  ``log2(reduction)`` times -- computed here, independently of the model. Built for the four timm
  variants and ``halonet_h1`` (the paper family's structure: 7x7 stem, attention-only stages); H0 and
  H2..H7 share that builder path and cost 0.5-1.5 min each in PyNative, so they are checked at the
  spec level only (measured once, all 12 variants: 7.7 min, all passing);
* against timm: ``timm.create_model(name, output_stride=16 / 8)`` with seeded random weights, converted
  to ours, gives the same stage outputs and logits (max |ours - timm| <= 1e-4 * max |timm|, float32 both);
* bad ``output_stride`` values and unknown keywords are rejected before anything is built.
"""
import math
import subprocess

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mindcv.models import create_model

from mindcv_halonet.models import halonet
from mindcv_halonet.models.builder import feature_info_of
from tests.weights.helpers import TIMM_REFERENCE_SCRIPT, forward_stages, load_into, max_errors

VARIANTS = sorted(halonet.model_specs)
STRIDES = (8, 16, 32)
BUILT = ["halonet_26t", "halonet_50t", "sehalonet_33ts", "eca_halonext_26ts", "halonet_h1"]
ODD_SIZE = 100  # 100 -> 50 -> 25 -> 13 -> 7 -> 4: no level is an exact multiple


def _expected_side(size: int, reduction: int) -> int:
    for _ in range(int(math.log2(reduction))):
        size = (size + 1) // 2
    return size


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("output_stride", STRIDES)
def test_feature_info_reductions_follow_output_stride(name, output_stride):
    nominal = feature_info_of(halonet.model_specs[name])
    info = feature_info_of(halonet.model_specs[name], output_stride)
    assert [f["name"] for f in info] == [f["name"] for f in nominal]
    assert [f["chs"] for f in info] == [f["chs"] for f in nominal]
    assert [f["reduction"] for f in nominal] == [2, 4, 8, 16, 32]
    assert [f["reduction"] for f in info] == [min(r, output_stride) for r in (2, 4, 8, 16, 32)]


def test_halonet_50t_deeplab_call_gives_the_issue_shapes(pynative):
    """create_model("halonet_50t", features_only=True, out_indices=[1, 4], output_stride=16 / 8)."""
    x = Tensor(np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32))
    for output_stride, last in ((16, 8), (8, 16)):
        net = create_model("halonet_50t", features_only=True, out_indices=[1, 4], output_stride=output_stride)
        net.set_train(False)
        assert net.out_channels == [256, 2048]
        low, high = net(x)
        assert tuple(low.shape) == (1, 256, 32, 32)  # 1/4
        assert tuple(high.shape) == (1, 2048, last, last)  # 1/16 or 1/8
        assert np.isfinite(high.asnumpy()).all()


@pytest.mark.parametrize("name", BUILT)
def test_shapes_at_an_odd_size(name, pynative):
    x = Tensor(np.random.default_rng(1).standard_normal((1, 3, ODD_SIZE, ODD_SIZE)).astype(np.float32))
    # features_only, output_stride 16: all five levels
    feats = create_model(name, features_only=True, output_stride=16)
    feats.set_train(False)
    info = feature_info_of(halonet.model_specs[name], 16)
    got = [tuple(f.shape) for f in feats(x)]
    want = [(1, f["chs"], _expected_side(ODD_SIZE, f["reduction"]), _expected_side(ODD_SIZE, f["reduction"]))
            for f in info]
    assert got == want
    del feats
    # the plain model, output_stride 8: forward_features at 1/8, the classifier still works
    net = create_model(name, num_classes=7, output_stride=8)
    net.set_train(False)
    side = _expected_side(ODD_SIZE, 8)
    assert tuple(net.forward_features(x).shape) == (1, net.num_features, side, side)
    logits = net(x)
    assert tuple(logits.shape) == (1, 7) and np.isfinite(logits.asnumpy()).all()


# -- against timm ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_reference(tmp_path_factory):
    from tests.weights.test_timm_numerical import timm_python

    python, reason = timm_python()
    if python is None:
        pytest.skip(reason)
    out_dir = tmp_path_factory.mktemp("timm_output_stride")

    def make(timm_name, output_stride, size=128, batch=2):
        out = out_dir / f"{timm_name}_os{output_stride}.npz"
        proc = subprocess.run(
            [python, str(TIMM_REFERENCE_SCRIPT), "reference", str(out), "--model", timm_name, "--seed", "3",
             "--size", str(size), "--batch", str(batch), "--threads", "2", "--output-stride", str(output_stride)],
            capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"timm reference failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return np.load(out)

    return make


@pytest.mark.parametrize("timm_name, output_stride", [("halonet50ts", 16), ("halonet26t", 8)])
def test_output_stride_matches_timm(timm_reference, timm_name, output_stride, pynative):
    from mindcv_halonet.commands.convert import convert_state

    ref = timm_reference(timm_name, output_stride)
    state = {k[len("state/"):]: ref[k] for k in ref.files if k.startswith("state/")}
    result = convert_state(state, "timm", timm_name)
    net = create_model(result.variant, num_classes=result.num_classes, output_stride=output_stride)
    load_into(net, result.params)
    stages, logits = forward_stages(net, ref["input"])
    size = ref["input"].shape[-1]
    lines = []
    for i, actual in enumerate(stages):
        expected = ref[f"stage{i}"]
        assert actual.shape == expected.shape, (i, actual.shape, expected.shape)
        lines.append((f"stage{i} {actual.shape}",) + max_errors(actual, expected))
    # the last stage really is at 1/output_stride (timm dilated it too)
    assert stages[-1].shape[-1] == size // output_stride
    lines.append(("logits",) + max_errors(logits, ref["logits"]))
    print("\n" + "\n".join(f"  {what}: max abs {a:.2e}, max rel {r:.2e}" for what, a, r in lines))
    assert all(r <= 1e-4 for _, _, r in lines), lines


# -- errors --------------------------------------------------------------------------------------


@pytest.fixture
def no_build(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the network was built although the arguments are invalid")

    monkeypatch.setattr(halonet, "HaloNet", boom)


@pytest.mark.parametrize("value", [4, 12, 64, "16", 16.0, True])
def test_bad_output_stride_is_rejected_before_building(value, no_build):
    with pytest.raises(ValueError, match=r"output_stride=.*expected one of 8, 16, 32"):
        create_model("halonet_26t", features_only=True, output_stride=value)


def test_unknown_keyword_still_names_it(no_build):
    with pytest.raises(TypeError, match=r"\['dilation'\].*output_stride"):
        create_model("halonet_50t", output_stride=16, dilation=2)
