"""``mindcv-halonet-convert``: argument checks before work, input formats, strictness, re-heading, atomic output."""
import os

import numpy as np
import pytest

import mindspore as ms

from mindcv_halonet.commands import convert as cli
from mindcv_halonet.weights import readers
from tests.weights.helpers import synthetic_timm_state
from tests.reference_stack import import_torch

TIMM_NAME, OURS = "halonet26t", "halonet_26t"
BN_LEAVES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


@pytest.fixture(scope="module", autouse=True)
def _pynative(pynative_module):
    """PyNative for this module (tests/conftest.py restores the previous mode afterwards)."""


@pytest.fixture(scope="module")
def timm_state():
    return synthetic_timm_state(TIMM_NAME, seed=3)


@pytest.fixture(scope="module")
def safetensors_file(tmp_path_factory, timm_state):
    from safetensors.numpy import save_file

    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in timm_state.items()}, str(path))
    return path


def expected_params(timm_state):
    """timm key -> our name, written out from the naming contract (BN leaves renamed, counters dropped)."""
    out = {}
    for key, value in timm_state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if f"{prefix}.running_mean" in timm_state:
            leaf = BN_LEAVES[leaf]
        out[f"{prefix}.{leaf}"] = value
    return out


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load(path):
    return {name: p.asnumpy() for name, p in ms.load_checkpoint(str(path)).items()}


def assert_written_equals_contract(path, timm_state):
    """The checkpoint holds exactly the contract's names, each with timm's value bit for bit."""
    written, expected = load(path), expected_params(timm_state)
    assert sorted(written) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)


# --------------------------------------------------------------------------------------------------
# argument validation: clear errors naming the argument, before any file is read
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def no_reading(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the input was read although the arguments are invalid")

    monkeypatch.setattr(cli, "read_state", forbidden)


@pytest.mark.parametrize("source,model,expected", [
    ("timm", "resnet50", ["model='resnet50'", "halonet50ts -> halonet_50t", "halonet_h1 -> halonet_h1"]),
    ("mindcv", "halonet_26t", ["model='halonet_26t'", "halonet_50t -> halonet_50t"]),
])
def test_unknown_pairing_lists_supported_ones(capsys, no_reading, safetensors_file, tmp_path, source, model, expected):
    code, _, err = run_cli(capsys, "--from", source, "--model", model, safetensors_file, "-o", tmp_path / "o.ckpt")
    assert code == 2
    assert "--model" in err
    for text in expected:
        assert text in err


def test_bad_input_extension_and_missing_input(capsys, no_reading, tmp_path):
    bad = tmp_path / "weights.txt"
    bad.write_text("x")
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, bad, "-o", tmp_path / "o.ckpt")
    assert code == 2 and "input=" in err and ".txt" in err and ".safetensors" in err and ".pth" in err
    code, _, err = run_cli(capsys, "--from", "mindcv", "--model", "halonet_50t", tmp_path / "nope.ckpt",
                           "-o", tmp_path / "o.ckpt")
    assert code == 2 and "nope.ckpt" in err and "does not exist" in err
    code, _, err = run_cli(capsys, "--from", "mindcv", "--model", "halonet_50t", bad, "-o", tmp_path / "o.ckpt")
    assert code == 2 and ".ckpt" in err


def test_bad_output_paths(capsys, no_reading, safetensors_file, tmp_path):
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, safetensors_file, "-o", tmp_path / "o.npz")
    assert code == 2 and "output=" in err and ".ckpt" in err
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, safetensors_file,
                           "-o", tmp_path / "missing_dir" / "o.ckpt")
    assert code == 2 and "does not exist" in err
    existing = tmp_path / "existing.ckpt"
    existing.write_bytes(b"keep me")
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, safetensors_file, "-o", existing)
    assert code == 2 and "--overwrite" in err
    assert existing.read_bytes() == b"keep me"


def test_bad_num_classes_is_rejected_by_the_parser(capsys, safetensors_file, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.main(["--from", "timm", "--model", TIMM_NAME, str(safetensors_file), "-o", str(tmp_path / "o.ckpt"),
                  "--num-classes", "-3"])
    assert info.value.code == 2
    assert "--num-classes='-3'" in capsys.readouterr().err


def test_help_documents_pairings_formats_and_the_mindcv_difference(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for text in ("halonet50ts -> halonet_50t", "eca_halonext26ts -> eca_halonext_26ts", ".safetensors", ".ckpt",
                 "--allow-approximate", "ExtractImagePatches", "-inf"):
        assert text in out


# --------------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------------


def test_safetensors_round_trip_with_progress(capsys, safetensors_file, timm_state, tmp_path):
    out = tmp_path / "h26t.ckpt"
    code, stdout, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, safetensors_file, "-o", out)
    assert code == 0, err
    n = len(timm_state)
    assert f"reading: {n}/{n} (100%)" in err and "writing" in err
    assert f"halonet26t, {n} tensors)" in stdout
    expected = expected_params(timm_state)
    written = load(out)
    assert set(written) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


def test_npz_input_and_our_variant_name(capsys, timm_state, tmp_path):
    src = tmp_path / "w.npz"
    np.savez(src, **timm_state)
    out = tmp_path / "h26t.ckpt"
    code, stdout, err = run_cli(capsys, "--from", "timm", "--model", OURS, src, "-o", out, "-q")
    assert code == 0, err
    assert err == ""  # --quiet
    assert_written_equals_contract(out, timm_state)


def test_pth_input_with_torch(capsys, timm_state, tmp_path):
    torch = import_torch("writes a .pth file with torch")  # the reference stack: a missing torch fails
    src = tmp_path / "w.pth"
    # as saved by a DataParallel training script: wrapped and "module."-prefixed
    torch.save({"state_dict": {"module." + k: torch.from_numpy(np.array(v)) for k, v in timm_state.items()},
                "epoch": 3}, src)
    out = tmp_path / "h26t.ckpt"
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, src, "-o", out, "-q")
    assert code == 0, err
    assert_written_equals_contract(out, timm_state)


def test_pth_input_without_torch_is_a_clear_error(capsys, monkeypatch, tmp_path):
    src = tmp_path / "w.pth"
    src.write_bytes(b"not read")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # makes "import torch" fail
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, src, "-o", tmp_path / "o.ckpt")
    assert code == 2 and "needs PyTorch" in err and ".safetensors" in err
    assert not (tmp_path / "o.ckpt").exists()


def test_mismatch_lists_every_problem_and_writes_nothing(capsys, timm_state, tmp_path):
    broken = dict(timm_state)
    del broken["stages.2.1.self_attn.q.weight"]
    broken["stages.9.0.extra.weight"] = np.zeros(3, np.float32)
    broken["stages.3.0.self_attn.pos_embed.width_rel"] = np.zeros((5, 5), np.float32)
    src = tmp_path / "broken.npz"
    np.savez(src, **broken)
    out = tmp_path / "out.ckpt"
    out.write_bytes(b"previous result")
    code, _, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, src, "-o", out, "--overwrite", "-q")
    assert code == 2
    assert "missing" in err and "stages.2.1.self_attn.q.weight" in err
    assert "unexpected" in err and "stages.9.0.extra.weight" in err
    assert "mis-shaped" in err and "stages.3.0.self_attn.pos_embed.width_rel: (5, 5) -> (23, 64)" in err
    assert "nothing was written" in err
    assert out.read_bytes() == b"previous result"
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


def test_failed_write_leaves_no_partial_file(capsys, monkeypatch, safetensors_file, tmp_path):
    def failing_save(entries, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ms, "save_checkpoint", failing_save)
    out = tmp_path / "o.ckpt"
    with pytest.raises(OSError):
        cli.main(["--from", "timm", "--model", TIMM_NAME, str(safetensors_file), "-o", str(out), "-q"])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("num_classes", [10, 0])
def test_reheading_drops_the_source_head(capsys, safetensors_file, timm_state, tmp_path, num_classes):
    out = tmp_path / f"h26t_{num_classes}.ckpt"
    code, stdout, err = run_cli(capsys, "--from", "timm", "--model", TIMM_NAME, safetensors_file, "-o", out,
                                "--num-classes", num_classes, "-q")
    assert code == 0, err
    assert "1000 classes" in stdout and "head.fc.weight" in stdout
    written = load(out)
    expected = {k: v for k, v in expected_params(timm_state).items() if not k.startswith("head.fc.")}
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)
    if num_classes:
        assert f"re-headed for {num_classes} classes" in stdout
        assert written["head.fc.weight"].shape == (num_classes, 2048)
        assert written["head.fc.bias"].shape == (num_classes,)
        assert set(written) == set(expected) | {"head.fc.weight", "head.fc.bias"}
    else:
        assert set(written) == set(expected)

    # the user path: MindCV's create_model loads it into our registered model, every parameter
    from mindcv.models import create_model

    import mindcv_halonet  # noqa: F401

    net = create_model(OURS, num_classes=num_classes, checkpoint_path=str(out))
    for name, param in net.parameters_and_names():
        np.testing.assert_array_equal(param.asnumpy(), written[name], err_msg=name)


def test_reader_rejects_unknown_source():
    with pytest.raises(ValueError, match="source='onnx'"):
        readers.check_input_path("x.onnx", "onnx")
