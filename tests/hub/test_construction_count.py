"""``create_model(name, pretrained=True, ...)`` constructs exactly one HaloNet: the conversion into the
converted cache uses a parameter spec derived from the network being built, never a second network
built by name through MindCV's registry (which would run ``_create_halonet`` again)."""
import numpy as np
import pytest

from mindcv.models import create_model

from mindcv_halonet.commands.convert import convert_state
from mindcv_halonet.models import builder
from tests.hub.conftest import VARIANT


@pytest.fixture
def constructions(monkeypatch):
    """The ``num_classes`` of every ``HaloNet`` constructed while the test runs."""
    seen = []
    original = builder.HaloNet.__init__

    def counting(self, *args, **kwargs):
        seen.append(kwargs.get("num_classes", args[1] if len(args) > 1 else 1000))
        original(self, *args, **kwargs)

    monkeypatch.setattr(builder.HaloNet, "__init__", counting)
    return seen


@pytest.mark.parametrize("kwargs", [dict(num_classes=10), dict(), dict(num_classes=0, in_channels=1)],
                         ids=["num_classes=10", "default", "num_classes=0,in_channels=1"])
def test_pretrained_constructs_exactly_one_network(hub, weights, constructions, kwargs):
    net = create_model(VARIANT, pretrained=True, **kwargs)  # empty caches: download + convert + load
    assert constructions == [kwargs.get("num_classes", 1000)]
    assert any(f.endswith(".ckpt") for f in hub.files())

    # and the weights did arrive (checked against a conversion made after the count)
    expected = convert_state(weights["state"], "timm", VARIANT).params
    got = {name: p.asnumpy() for name, p in net.parameters_and_names()}
    first = "stem.conv1.conv.weight"
    want = expected[first].sum(axis=1, keepdims=True) if kwargs.get("in_channels") == 1 else expected[first]
    np.testing.assert_array_equal(got[first], want)
    np.testing.assert_array_equal(got["stages.3.1.self_attn.q.weight"], expected["stages.3.1.self_attn.q.weight"])
    if kwargs.get("num_classes", 1000) == 1000:
        np.testing.assert_array_equal(got["head.fc.weight"], expected["head.fc.weight"])
    else:
        assert ("head.fc.weight" in got) == (kwargs["num_classes"] > 0)
