"""Bad arguments raise clear errors before anything is built (pretrained=True included)."""
import pytest

from mindcv.models import create_model

from mindcv_halonet.models import halonet


@pytest.fixture
def no_build(monkeypatch):
    """Fail loudly if a network would be constructed."""

    def boom(*args, **kwargs):
        raise AssertionError("the network was built although the arguments are invalid")

    monkeypatch.setattr(halonet, "HaloNet", boom)


WITH_WEIGHTS = ["halonet_50t", "halonet_26t", "sehalonet_33ts", "eca_halonext_26ts"]


@pytest.mark.parametrize("name", sorted(set(halonet.model_specs) - set(WITH_WEIGHTS)))
def test_pretrained_true_without_weights_names_the_variants_with_weights(name, no_build):
    with pytest.raises(ValueError) as info:
        getattr(halonet, name)(pretrained=True)
    msg = str(info.value)
    assert name in msg and "checkpoint_path" in msg
    assert all(v in msg for v in WITH_WEIGHTS), msg


@pytest.mark.parametrize("in_channels", [2, 4])
def test_pretrained_true_rejects_other_in_channels_before_building(in_channels, no_build):
    with pytest.raises(ValueError, match=f"in_channels={in_channels} .*accepted: 3, or 1"):
        halonet.halonet_26t(pretrained=True, in_channels=in_channels)


def test_pretrained_true_through_create_model(no_build):
    with pytest.raises(ValueError, match="halonet_50t"):
        create_model("halonet_h1", pretrained=True)


def test_checkpoint_path_with_pretrained_is_rejected_by_mindcv(no_build):
    with pytest.raises(ValueError, match="mutually exclusive"):
        create_model("halonet_50t", pretrained=True, checkpoint_path="x.ckpt")


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(num_classes=-1), "num_classes=-1"),
        (dict(num_classes=2.5), "num_classes=2.5"),
        (dict(in_channels=0), "in_channels=0"),
        (dict(drop_rate=1.0), "drop_rate=1.0"),
        (dict(drop_rate="0.1"), "drop_rate='0.1'"),
        (dict(drop_path_rate=-0.1), "drop_path_rate=-0.1"),
        (dict(pretrained="yes"), "pretrained='yes'"),
        (dict(features_only="yes"), "features_only='yes'"),
        (dict(features_only=True, out_indices=[5]), "out_indices=[5]"),
        (dict(features_only=True, out_indices=[1, 1]), "out_indices=[1, 1]"),
        (dict(features_only=True, out_indices=[-1]), "out_indices=[-1]"),
        (dict(features_only=True, out_indices=[]), "out_indices=[]"),
        (dict(features_only=True, out_indices=3), "out_indices=3"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs, needle, no_build):
    with pytest.raises(ValueError) as info:
        halonet.halonet_26t(**kwargs)
    assert needle in str(info.value)
    assert "expected" in str(info.value)


def test_unknown_keyword_raises_type_error(no_build):
    with pytest.raises(TypeError, match="drop_connect_rate"):
        halonet.halonet_26t(drop_connect_rate=0.1)


def test_invalid_spec_values_raise_value_error():
    from mindcv_halonet.models.builder import HaloNet, ModelSpec, StageSpec

    stages = (StageSpec(1, 64, 1, 1.0), StageSpec(1, 64, 2, 1.0), StageSpec(1, 64, 2, 1.0), StageSpec(1, 64, 2, 1.0))
    with pytest.raises(ValueError, match="act_layer='gelu'"):
        HaloNet(ModelSpec(stages=stages, act_layer="gelu"))
    with pytest.raises(ValueError, match="channel_attn='cbam'"):
        HaloNet(ModelSpec(stages=stages, channel_attn="cbam"))
    with pytest.raises(ValueError, match="stem_type='deep'"):
        HaloNet(ModelSpec(stages=stages, stem_type="deep"))


# ---------------------------------------------------------------- bad inputs to a built network
# (rank / channels / dtype are checked at the top of HaloNet.construct, before the stem: at call
# time in PyNative, at compile time in Graph mode)
_INPUT_CASES = [
    ((2, 1, 32, 32), "float32", ValueError, ["halonet_26t", "input has 1 channels", "expected in_channels=3"]),
    ((2, 32, 32, 3), "float32", ValueError, ["halonet_26t", "input has 32 channels", "(B, 3, H, W)"]),  # NHWC
    ((3, 32, 32), "float32", ValueError, ["halonet_26t", "rank 3", "4-D (B, C, H, W)", "in_channels=3"]),
    ((2, 3, 32, 32), "uint8", TypeError, ["halonet_26t", "dtype UInt8", "float32, float16 or bfloat16"]),
    ((2, 3, 32, 32), "float64", TypeError, ["halonet_26t", "dtype Float64"]),
]


@pytest.fixture(scope="module")
def small_net():
    net = halonet.halonet_26t(num_classes=4)
    net.set_train(False)
    return net


@pytest.mark.parametrize("graph", [False, True], ids=["pynative", "graph"])
@pytest.mark.parametrize("shape, dtype, error, needles", _INPUT_CASES,
                         ids=["channels", "nhwc", "rank3", "uint8", "float64"])
def test_bad_input_to_network_names_model_and_expectation(small_net, graph, shape, dtype, error, needles, set_mode):
    import numpy as np
    import mindspore as ms

    set_mode(ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    with pytest.raises(error) as info:
        small_net(ms.Tensor(np.zeros(shape, dtype)))
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert "Conv2D" not in msg.splitlines()[0]


def test_in_channels_is_what_the_check_expects():
    import numpy as np
    import mindspore as ms

    net = halonet.halonet_26t(num_classes=0, in_channels=1)
    with pytest.raises(ValueError, match="input has 3 channels .*expected in_channels=1"):
        net(ms.Tensor(np.zeros((1, 3, 32, 32), np.float32)))
    assert net(ms.Tensor(np.zeros((1, 1, 32, 32), np.float32))).shape[0] == 1
