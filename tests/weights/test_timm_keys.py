"""The timm -> ours mapping is a bijection with equal shapes, for every mapped variant (no torch needed).

Data: ``tests/data/timm_keys/<timm_name>.json`` lists every state-dict key, shape and dtype of the
timm model, generated once with timm 1.0.31 (``tests/weights/timm_reference.py keys``).
"""
import json
import pathlib

import numpy as np
import pytest

import mindspore as ms

from mindcv_halonet.commands.common import build_network
from mindcv_halonet.commands.convert import convert_state
from mindcv_halonet.weights import TIMM_TO_OURS, ConversionError, from_timm, network_spec
from tests.weights.helpers import TIMM_KEYS_DIR, synthetic_timm_state, timm_key_table

FIXTURES = sorted((pathlib.Path(__file__).parents[1] / "fixtures" / "halo_attn").glob("*.npz"))


@pytest.fixture(scope="module", autouse=True)
def _pynative(pynative_module):
    """PyNative for this module (tests/conftest.py restores the previous mode afterwards)."""


def test_key_tables_cover_every_mapped_variant():
    assert sorted(p.stem for p in TIMM_KEYS_DIR.glob("*.json")) == sorted(TIMM_TO_OURS)
    for timm_name in TIMM_TO_OURS:
        table = timm_key_table(timm_name)
        assert table["timm_model"] == timm_name
        assert table["num_tensors"] == len(table["state_dict"]) > 100


@pytest.mark.parametrize("timm_name", list(TIMM_TO_OURS))
def test_mapping_is_a_bijection_onto_parameters_and_bn_statistics(timm_name):
    table = timm_key_table(timm_name)["state_dict"]
    timm_shapes = {e["key"]: tuple(e["shape"]) for e in table}
    net = build_network(TIMM_TO_OURS[timm_name], num_classes=1000)
    target = network_spec(net)  # every Parameter: weights, BN gamma/beta and moving statistics

    renamed = from_timm({k: np.zeros(s, np.float32) for k, s in timm_shapes.items()})
    # injective: no two timm keys collapse onto one name; only num_batches_tracked disappears
    dropped = {k for k in timm_shapes if k.endswith(".num_batches_tracked")}
    assert len(renamed) == len(timm_shapes) - len(dropped)
    # onto, with equal shapes
    assert set(renamed) == set(target), sorted(set(renamed) ^ set(target))[:20]
    for name, (shape, _dtype) in target.items():
        assert tuple(renamed[name].shape) == shape, name
    # every BN statistic of ours is filled by a timm running statistic and vice versa
    n_timm_stats = sum(k.endswith((".running_mean", ".running_var")) for k in timm_shapes)
    n_our_stats = sum(k.endswith((".moving_mean", ".moving_variance")) for k in target)
    assert n_timm_stats == n_our_stats > 0

    # the strict pipeline agrees and carries every value over unchanged
    state = synthetic_timm_state(timm_name)
    result = convert_state(state, "timm", timm_name, net=net)
    assert list(result.params) == list(target)
    inverse = {}
    for key in state:
        if key.endswith(".num_batches_tracked"):
            continue
        prefix, _, leaf = key.rpartition(".")
        ms_leaf = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                   "running_var": "moving_variance"}.get(leaf) if f"{prefix}.running_mean" in state else leaf
        inverse[f"{prefix}.{ms_leaf}"] = key
    assert set(inverse) == set(result.params)
    for name, value in result.params.items():
        np.testing.assert_array_equal(value, state[inverse[name]], err_msg=name)


def test_from_timm_is_prefix_independent_for_a_bare_halo_attention():
    from mindcv_halonet.layers import HaloAttention

    layer = HaloAttention(64, num_heads=4, block_size=8, halo_size=3, qkv_bias=True)
    ours = {name: tuple(p.shape) for name, p in layer.parameters_and_names()}
    timm_layer = {"q.weight": (64, 64, 1, 1), "q.bias": (64,), "kv.weight": (128, 64, 1, 1), "kv.bias": (128,),
                  "pos_embed.height_rel": (27, 16), "pos_embed.width_rel": (27, 16)}
    renamed = from_timm({k: np.zeros(s, np.float32) for k, s in timm_layer.items()})
    assert {k: v.shape for k, v in renamed.items()} == ours
    # the same tensors under any prefix keep that prefix
    prefixed = from_timm({"blk.self_attn." + k: np.zeros(s, np.float32) for k, s in timm_layer.items()})
    assert set(prefixed) == {"blk.self_attn." + k for k in ours}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_from_timm_loads_timm_halo_attn_fixtures(fixture):
    """Layer level: timm HaloAttn tensors through from_timm reproduce timm's output (rtol 1e-4, atol 1e-5)."""
    from mindcv_halonet.layers import HaloAttention

    z = np.load(fixture)
    cfg = json.loads(str(z["config"]))
    timm_state = {k: z[k] for k in z.files
                  if not k.startswith(("grad.", "debug.")) and k not in ("x", "y", "g", "config", "derived")}
    layer = HaloAttention(**cfg)
    layer.set_train(False)
    params = from_timm(timm_state)
    own = dict(layer.parameters_and_names())
    assert set(params) == set(own)
    for name, value in params.items():
        own[name].set_data(ms.Tensor(value))
    y = layer(ms.Tensor(z["x"])).asnumpy()
    np.testing.assert_allclose(y, z["y"], rtol=1e-4, atol=1e-5)


def test_from_timm_renames_batchnorm_by_content_not_by_name():
    state = {"x.weight": np.ones(3), "x.bias": np.zeros(3), "x.running_mean": np.zeros(3),
             "x.running_var": np.ones(3), "x.num_batches_tracked": np.array(5),
             "conv.weight": np.ones((3, 3, 1, 1)), "fc.bias": np.ones(3)}
    assert list(from_timm(state)) == ["x.gamma", "x.beta", "x.moving_mean", "x.moving_variance",
                                      "conv.weight", "fc.bias"]


def test_a_wrong_variant_pairing_lists_missing_unexpected_and_misshaped_keys():
    state = synthetic_timm_state("halonet26t")
    with pytest.raises(ConversionError) as info:
        convert_state(state, "timm", "halonet50ts")
    err = info.value
    assert err.missing and err.unexpected and err.mis_shaped
    message = str(err)
    assert "missing" in message and "unexpected" in message and "mis-shaped" in message
    assert "stages.2.5.conv1_1x1.conv.weight" in err.missing  # halonet50ts has 6 blocks in stage 3
