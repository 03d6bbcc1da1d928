"""``create_model(name, pretrained=True)``: timm's file from a local Hub stand-in -> verified -> converted ->
cached -> loaded with MindCV's ``load_pretrained`` semantics; failures leave no cache entry.

Everything runs against ``tests/hub/hub_server.py`` on 127.0.0.1 (no internet), through huggingface_hub,
mostly on halonet_26t at 64 px in PyNative mode.
"""
import logging
import os

import numpy as np
import pytest

import mindspore as ms

from mindcv.models import create_model

from mindcv_halonet.commands.convert import convert_state
from mindcv_halonet.commands.convert import main as convert_cli
from mindcv_halonet.models import halonet
from mindcv_halonet.weights.errors import PretrainedWeightsError
from tests.weights.helpers import max_errors, synthetic_timm_state
from tests.hub.conftest import REPO, TIMM_NAME, VARIANT
from tests.reference_stack import skip_if_opted_out

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def _pynative(pynative_module):
    """PyNative for this module (tests/conftest.py restores the previous mode afterwards)."""


def _logits(net, x=None):
    if x is None:
        x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy()


def _cli_checkpoint(data: bytes, tmp_path, name="route"):
    """The explicit route: timm's file converted by mindcv-halonet-convert, for checkpoint_path=."""
    src = tmp_path / f"{name}.safetensors"
    src.write_bytes(data)
    out = tmp_path / f"{name}.ckpt"
    assert convert_cli(["--from", "timm", "--model", TIMM_NAME, str(src), "-o", str(out), "-q"]) == 0
    return str(out)


def _converted(state):
    return convert_state(state, "timm", VARIANT).params


# --------------------------------------------------------------------------------------------------
# the happy path, the caches, offline
# --------------------------------------------------------------------------------------------------

def test_pretrained_equals_checkpoint_path_route_then_loads_offline(hub, backend, weights, tmp_path, monkeypatch):
    net = create_model(VARIANT, pretrained=True)
    ref = create_model(VARIANT, checkpoint_path=_cli_checkpoint(weights["data"], tmp_path))
    got, expected = _logits(net), _logits(ref)
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(got, expected)

    sha = hub.server.files[REPO]["sha256"]
    files = hub.files()
    assert f"hf/hub/models--timm--halonet26t.a1h_in1k/blobs/{sha}" in files, files
    assert f"converted/{VARIANT}-{sha[:16]}.ckpt" in files and f"converted/refs/{VARIANT}.json" in files, files
    methods = [m for m, _ in hub.server.requests if m in ("HEAD", "GET")]
    assert "HEAD" in methods and "GET" in methods

    # second load: the Hub gone, HF_HUB_OFFLINE=1 -> no request, same function
    hub.server.stop()
    seen = len(hub.server.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    np.testing.assert_array_equal(_logits(create_model(VARIANT, pretrained=True)), expected)
    # and without the flag, with the Hub unreachable (connection refused): the last conversion is used
    monkeypatch.delenv("HF_HUB_OFFLINE")
    np.testing.assert_array_equal(_logits(create_model(VARIANT, pretrained=True)), expected)
    assert len(hub.server.requests) == seen
    assert hub.files() == files


def test_second_load_offline_in_a_fresh_interpreter(hub, fresh_python, weights, tmp_path):
    """HF_HUB_OFFLINE=1 set before anything is imported (huggingface_hub reads it at import time)."""
    expected = _logits(create_model(VARIANT, pretrained=True))
    hub.server.stop()
    res, _ = fresh_python(f"""
        import json, numpy as np, mindspore as ms
        from mindcv.models import create_model
        ms.set_context(mode=ms.PYNATIVE_MODE)
        net = create_model("{VARIANT}", pretrained=True)
        net.set_train(False)
        x = np.random.default_rng(1).standard_normal((1, 3, {SIZE}, {SIZE})).astype(np.float32)
        print("@@RESULT@@" + json.dumps(net(ms.Tensor(x)).asnumpy().tolist()))
    """, HF_HUB_OFFLINE="1")
    np.testing.assert_array_equal(np.asarray(res, dtype=np.float32), expected)


def test_timm_logits_within_1e_5(hub, weights):
    """The README's bound: max |ours - timm| / max |timm| <= 1e-5 on the logits."""
    if weights["origin"] != "timm":
        skip_if_opted_out("the served file is synthetic, there are no timm logits")
    assert weights["origin"] == "timm"
    net = create_model(VARIANT, pretrained=True)
    _, rel = max_errors(_logits(net, weights["input"]), weights["logits"])
    print(f"{VARIANT} pretrained=True vs timm {TIMM_NAME}: max rel error {rel:.2e} (256 px)")
    assert rel <= 1e-5


def test_changed_upstream_file_is_converted_anew(hub, weights, tmp_path):
    first = _logits(create_model(VARIANT, pretrained=True))
    from safetensors.numpy import save

    data = save(synthetic_timm_state(TIMM_NAME, seed=5))
    hub.server.add(REPO, data)  # new content, new sha256 and commit on "main"
    second = _logits(create_model(VARIANT, pretrained=True))
    expected = _logits(create_model(VARIANT, checkpoint_path=_cli_checkpoint(data, tmp_path, "new")))
    np.testing.assert_array_equal(second, expected)
    assert not np.array_equal(first, second)
    assert len([f for f in hub.files() if f.startswith("converted/") and f.endswith(".ckpt")]) == 2


def test_file_already_in_the_hugging_face_cache_is_converted_offline(hub, backend, weights, monkeypatch):
    """E.g. downloaded by timm: with only the Hugging Face cache, offline, the file is verified and converted."""
    expected = _logits(create_model(VARIANT, pretrained=True))
    import shutil

    shutil.rmtree(hub.converted)
    hub.server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    np.testing.assert_array_equal(_logits(create_model(VARIANT, pretrained=True)), expected)


def test_user_checkpoint_in_the_converted_cache_is_used_without_network(hub, weights, tmp_path):
    hub.converted.mkdir()
    os.replace(_cli_checkpoint(weights["data"], tmp_path), hub.converted / f"{VARIANT}.ckpt")
    expected = _logits(create_model(VARIANT, checkpoint_path=str(hub.converted / f"{VARIANT}.ckpt")))
    hub.server.stop()
    np.testing.assert_array_equal(_logits(create_model(VARIANT, pretrained=True)), expected)
    assert hub.server.requests == []


# --------------------------------------------------------------------------------------------------
# failures: a clear error, nothing in either cache
# --------------------------------------------------------------------------------------------------

FAILURES = {
    "truncate": r"truncated|broke off|peer closed connection|RemoteProtocolError",
    "short": r"downloaded \d+ bytes, expected \d+|should be of size \d+ but has size \d+",
    "404": r"404",
    "bad_sha": r"sha256 of the downloaded file is [0-9a-f]{64}, expected [0-9a-f]{64}",
}


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_bad_download_is_a_clear_error_and_caches_nothing(hub, backend, weights, mode):
    hub.server.files[REPO]["mode"] = mode
    with pytest.raises(PretrainedWeightsError, match=FAILURES[mode]) as info:
        create_model(VARIANT, pretrained=True)
    msg = str(info.value)
    assert VARIANT in msg and f"{hub.server.endpoint}/{REPO}/resolve/main/model.safetensors" in msg, msg
    assert "Nothing was cached" in msg
    assert hub.files() == []


def test_corrupt_safetensors_is_a_clear_error_and_caches_nothing(hub, backend):
    hub.server.add(REPO, b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + bytes(1000))  # right sha, bad file
    with pytest.raises(PretrainedWeightsError, match=r"does not convert to halonet_26t") as info:
        create_model(VARIANT, pretrained=True)
    assert "Nothing was cached" in str(info.value)
    assert hub.files() == []


def test_pinned_sha256_that_the_hub_contradicts_downloads_nothing(hub, monkeypatch):
    monkeypatch.setitem(halonet.default_cfgs[VARIANT], "hf_sha256", "0" * 64)
    with pytest.raises(PretrainedWeightsError, match=r"pinned; the upstream file changed"):
        create_model(VARIANT, pretrained=True)
    assert [m for m, _ in hub.server.requests if m == "GET"] == []
    assert hub.files() == []


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_offline_without_cache_says_what_to_fetch_and_how_to_convert(hub, backend, monkeypatch, how):
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        hub.server.stop()
    with pytest.raises(PretrainedWeightsError) as info:
        create_model(VARIANT, pretrained=True)
    msg = str(info.value)
    for needle in (f"Fetch {hub.server.endpoint}/{REPO}/resolve/main/model.safetensors",
                   "mindcv-halonet-convert --from timm --model halonet26t model.safetensors -o halonet_26t_timm.ckpt",
                   "checkpoint_path='halonet_26t_timm.ckpt'", str(hub.converted / f"{VARIANT}.ckpt")):
        assert needle in msg, msg
    assert hub.files() == []
    if how == "HF_HUB_OFFLINE":
        assert hub.server.requests == []


# --------------------------------------------------------------------------------------------------
# MindCV's load_pretrained semantics
# --------------------------------------------------------------------------------------------------

def test_num_classes_10_drops_the_head_in_one_log_line(hub, weights, caplog):
    params = _converted(weights["state"])
    with caplog.at_level(logging.INFO, logger="mindcv_halonet"):
        net = create_model(VARIANT, pretrained=True, num_classes=10)
    lines = [r.getMessage() for r in caplog.records if "classifier" in r.getMessage()]
    assert len(lines) == 1 and "num_classes=10" in lines[0] and "head.fc.weight" in lines[0], lines
    own = dict(net.parameters_and_names())
    assert tuple(own["head.fc.weight"].shape) == (10, 2048)
    for name, value in params.items():
        if not name.startswith("head.fc."):
            np.testing.assert_array_equal(own[name].asnumpy(), value, err_msg=name)
    assert _logits(net).shape == (1, 10)


def test_in_channels_1_sums_the_first_conv_over_rgb(hub, weights):
    net = create_model(VARIANT, pretrained=True, in_channels=1)
    expected = weights["state"]["stem.conv1.conv.weight"].sum(axis=1, keepdims=True)
    got = dict(net.parameters_and_names())["stem.conv1.conv.weight"].asnumpy()
    assert got.shape == (24, 1, 3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    x = np.random.default_rng(2).standard_normal((1, 1, SIZE, SIZE)).astype(np.float32)
    assert np.isfinite(_logits(net, x)).all()


def test_features_only_loads_the_weights_before_wrapping(hub, weights):
    params = _converted(weights["state"])
    wrapper = create_model(VARIANT, pretrained=True, features_only=True)
    own = {p.name: p.asnumpy() for p in wrapper.get_parameters()}
    backbone = {n: v for n, v in params.items() if not n.startswith("head.")}
    assert set(own) == set(backbone), sorted(set(own) ^ set(backbone))[:10]
    for name, value in backbone.items():
        np.testing.assert_array_equal(own[name], value, err_msg=name)
    plain = create_model(VARIANT, pretrained=True)
    plain.set_train(False)
    wrapper.set_train(False)
    x = ms.Tensor(np.random.default_rng(3).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32))
    h = plain.stem(x)
    for stage in plain.stages:
        h = stage(h)
    np.testing.assert_array_equal(wrapper(x)[-1].asnumpy(), h.asnumpy())
