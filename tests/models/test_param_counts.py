"""Parameter counts and parameter names of every variant.

References (not produced by the code under test):
* timm-derived variants: ``sum(p.numel() for p in timm.create_model(name).parameters())`` with
  timm 1.0.31, and the timm state-dict key/shape lists in ``tests/data/timm_keys`` (timm 1.0.31).
* paper variants: the parameter counts of the HaloNet paper's table (millions, one decimal);
  tolerance 0.4 %, the README's claim (measured: 0.001 % (H1) .. 0.363 % (H3)).
"""
import json
import pathlib

import pytest

from mindcv_halonet.models import halonet

TIMM_KEYS = pathlib.Path(__file__).resolve().parents[1] / "data" / "timm_keys"

TIMM_PARAMS = {  # ours -> (timm name, timm parameter count)
    "halonet_50t": ("halonet50ts", 22_733_280),
    "halonet_26t": ("halonet26t", 12_480_288),
    "sehalonet_33ts": ("sehalonet33ts", 13_691_712),
    "eca_halonext_26ts": ("eca_halonext26ts", 10_756_885),
    "halonet_h1": ("halonet_h1", 8_100_056),
}

PAPER_PARAMS_M = {
    "halonet_h0": 5.5, "halonet_h1": 8.1, "halonet_h2": 9.4, "halonet_h3": 11.8,
    "halonet_h4": 19.1, "halonet_h5": 30.7, "halonet_h6": 43.4, "halonet_h7": 67.4,
}

PAPER_TOL = 0.004  # README: "H0-H7 are within 0.4 % of the paper"

BN_RENAME = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}

def model(name):
    return getattr(halonet, name)()


def num_params(net):
    return sum(p.size for p in net.trainable_params())


def test_every_variant_has_a_reference():
    assert set(halonet.model_specs) == set(TIMM_PARAMS) | set(PAPER_PARAMS_M)


def timm_names_as_mindspore(timm_name):
    """timm state-dict entries renamed by the documented rule: BatchNorm modules (owners of
    ``running_mean``) get gamma/beta/moving_mean/moving_variance, num_batches_tracked is dropped,
    every other key and every shape is unchanged."""
    entries = json.loads((TIMM_KEYS / f"{timm_name}.json").read_text())["state_dict"]
    keys = {e["key"]: tuple(e["shape"]) for e in entries}
    bn = {k.rpartition(".")[0] for k in keys if k.endswith(".running_mean")}
    out = {}
    for key, shape in keys.items():
        module, _, leaf = key.rpartition(".")
        if module in bn:
            if leaf == "num_batches_tracked":
                continue
            key = f"{module}.{BN_RENAME[leaf]}"
        out[key] = shape
    return out


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_timm_variants_exact_param_count_names_and_shapes(name):
    net = model(name)
    assert num_params(net) == TIMM_PARAMS[name][1]
    expected = timm_names_as_mindspore(TIMM_PARAMS[name][0])
    got = {p.name: tuple(p.shape) for p in net.get_parameters()}
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}


# the paper's table: image size, block b, halo h, stage-3 depth
PAPER_TABLE = {
    "halonet_h0": (256, 8, 3, 7), "halonet_h1": (256, 8, 3, 10), "halonet_h2": (256, 8, 3, 11),
    "halonet_h3": (320, 10, 3, 12), "halonet_h4": (384, 12, 2, 12), "halonet_h5": (448, 14, 2, 23),
    "halonet_h6": (512, 8, 4, 24), "halonet_h7": (600, 10, 3, 26),
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_paper_variants_params_structure_naming_and_cfg(name):
    from mindcv_halonet.layers import HaloAttention

    net = model(name)
    got = num_params(net) / 1e6
    assert abs(got / PAPER_PARAMS_M[name] - 1) <= PAPER_TOL, f"{name}: {got:.3f} M vs paper {PAPER_PARAMS_M[name]} M"

    size, block, halo, l3 = PAPER_TABLE[name]
    assert [len(stage) for stage in net.stages] == [3, 3, l3, 3]
    attn = [c for _, c in net.cells_and_names() if isinstance(c, HaloAttention)]
    assert len(attn) == 9 + l3  # every block is a self-attention block
    assert {(a.block_size, a.halo_size) for a in attn} == {(block, halo)}
    cfg = halonet.default_cfgs[name]
    assert cfg["input_size"] == (3, size, size)

    names = {p.name for p in net.get_parameters()}
    for expected in ("stem.conv1.conv.weight", "stem.conv1.bn.moving_variance", "head.fc.weight",
                     "stages.0.0.self_attn.pos_embed.height_rel", "stages.2.0.post_attn.gamma",
                     "stages.3.2.conv3_1x1.bn.gamma"):
        assert expected in names


def test_default_cfgs_follow_mindcv_layout():
    for name, cfg in halonet.default_cfgs.items():
        # timm's weights on the Hub for the timm-derived variants (pretrained=True), none for the H family
        assert bool(cfg["url"]) == bool(cfg.get("hf_hub_id")) == (name in TIMM_PARAMS and name != "halonet_h1")
        assert cfg["num_classes"] == 1000
        assert cfg["first_conv"] == "stem.conv1.conv" and cfg["classifier"] == "head.fc"
        if name in TIMM_PARAMS:
            assert cfg["input_size"] == (3, 256, 256)


def test_models_are_registered_with_mindcv():
    from mindcv.models import create_model, list_models
    from mindcv.models.registry import is_model_pretrained, model_entrypoint

    for name in halonet.model_specs:
        assert name in list_models()
        assert model_entrypoint(name) is getattr(halonet, name)
        # MindCV's mark follows ours (MindCV's own halonet_50t URL does not count)
        assert is_model_pretrained(name) == bool(halonet.default_cfgs[name].get("hf_hub_id"))
    net = create_model("halonet_26t", num_classes=7)
    assert tuple(net.head.fc.weight.shape) == (7, 2048)
