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
