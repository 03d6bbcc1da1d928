"""``check_checkpoint`` / ``mindcv-halonet-convert --check``: exit 0 only for an exact match; missing,
unexpected, mis-shaped and dtype-mismatched parameters are listed; a missing or truncated file is an
``error:`` line (exit 2) before any network is built. Builds halonet_26t / eca_halonext_26ts a few
times (construction only): ~20 s."""
import numpy as np
import pytest

import mindspore as ms
from mindcv.models import create_model

from mindcv_halonet.commands import convert as cli
from mindcv_halonet.commands.check import CheckReport, check_checkpoint
from mindcv_halonet.weights.files import save_checkpoint_atomic

MODEL, OTHER = "halonet_26t", "eca_halonext_26ts"


def _params(net):
    return {name: p.asnumpy() for name, p in net.parameters_and_names()}


@pytest.fixture(scope="module")
def good_params():
    return _params(create_model(MODEL, num_classes=10))


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory, good_params):
    path = tmp_path_factory.mktemp("ckpt") / f"{MODEL}.ckpt"
    # as MindCV's callback saves it: network parameters plus optimizer / loop state
    extra = {"moments.head.fc.weight": good_params["head.fc.weight"], "global_step": np.array([7], np.int32)}
    save_checkpoint_atomic({**good_params, **extra}, str(path))
    return path


@pytest.fixture(scope="module")
def other_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / f"{OTHER}.ckpt"
    save_checkpoint_atomic(_params(create_model(OTHER, num_classes=10)), str(path))
    return path


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_good_checkpoint_matches_exactly(capsys, good_ckpt, good_params):
    report = check_checkpoint(str(good_ckpt), MODEL)
    assert isinstance(report, CheckReport) and report.ok, report.format()
    assert report.num_classes == 10 and report.num_tensors == len(good_params)
    assert report.ignored == ["global_step", "moments.head.fc.weight"]
    code, out, err = run(capsys, "--check", good_ckpt, "--model", MODEL, "--num-classes", 10)
    assert code == 0, err
    assert out.startswith("OK: ") and f"{len(good_params)} parameters" in out


def test_other_variants_checkpoint_is_a_mismatch(capsys, other_ckpt, good_params):
    report = check_checkpoint(str(other_ckpt), MODEL)
    assert not report.ok
    other = _params(create_model(OTHER, num_classes=10))
    # the expected lists, from the two networks' own parameter tables
    assert report.missing == sorted(set(good_params) - set(other))
    assert report.unexpected == sorted(set(other) - set(good_params))
    shared = set(good_params) & set(other)
    assert [n for n, _, _ in report.mis_shaped] == sorted(n for n in shared if good_params[n].shape != other[n].shape)
    assert report.mis_shaped and (report.missing or report.unexpected)
    code, out, err = run(capsys, "--check", other_ckpt, "--model", MODEL)
    assert code == 1 and out == ""
    assert err.startswith(f"MISMATCH: {other_ckpt} does not match {MODEL}") and "load_param_into_net" in err
    assert "mis-shaped:" in err and ("missing:" in err or "unexpected:" in err)


def test_wrong_num_classes_is_a_mis_shaped_head(capsys, good_ckpt):
    report = check_checkpoint(str(good_ckpt), MODEL, num_classes=1000)
    assert not report.ok and not report.missing and not report.unexpected
    assert report.mis_shaped == [("head.fc.bias", (10,), (1000,)), ("head.fc.weight", (10, 2048), (1000, 2048))]
    report = check_checkpoint(str(good_ckpt), MODEL, num_classes=0)  # no classifier: head.fc.* unexpected
    assert report.unexpected == ["head.fc.bias", "head.fc.weight"] and not report.missing


def test_dtype_mismatch_is_reported(tmp_path, good_params):
    half = dict(good_params)
    half["head.fc.weight"] = half["head.fc.weight"].astype(np.float16)
    path = tmp_path / "half.ckpt"
    save_checkpoint_atomic(half, str(path))
    report = check_checkpoint(str(path), MODEL)
    assert report.dtype_mismatched == [("head.fc.weight", "float16", "float32")] and not report.ok
    assert "float16 -> float32" in report.format()


def test_missing_path_truncated_file_and_bad_model_are_errors(capsys, tmp_path, good_ckpt, monkeypatch):
    from mindcv_halonet.commands import check as check_module

    def no_build(*args, **kwargs):
        raise AssertionError("the network was built although the input is unusable")

    monkeypatch.setattr(check_module, "build_network", no_build)
    missing = tmp_path / "typo.ckpt"
    code, out, err = run(capsys, "--check", missing, "--model", MODEL)
    assert code == 2 and out == ""
    assert err.startswith("mindcv-halonet-convert: error: ") and str(missing) in err and "does not exist" in err
    assert "skip this path silently" in err

    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good_ckpt.read_bytes()[:100_000])
    code, _, err = run(capsys, "--check", cut, "--model", MODEL)
    assert code == 2 and str(cut) in err and "truncated or corrupt" in err and "Traceback" not in err

    code, _, err = run(capsys, "--check", good_ckpt, "--model", "halonet_99")
    assert code == 2 and "model='halonet_99'" in err and "halonet_50t" in err
    code, _, err = run(capsys, "--check", tmp_path / "w.safetensors", "--model", MODEL)
    assert code == 2 and "expected a MindSpore .ckpt" in err
    with pytest.raises(SystemExit):
        cli.main(["--check", str(good_ckpt), "--model", MODEL, "--num-classes", "-3"])
    assert "--num-classes='-3'" in capsys.readouterr().err


def test_mindcv_loads_a_partial_checkpoint_without_error(tmp_path, good_params):
    """The behaviour the README warns about, observed on the installed MindCV + MindSpore: a missing path
    raises nothing, and a checkpoint lacking parameters (here all of stage 3, plus one foreign entry)
    loads without an error, leaving those parameters at their initial values. The check flags both."""
    net = create_model(MODEL, num_classes=10, checkpoint_path=str(tmp_path / "does-not-exist.ckpt"))
    # no error, and nothing loaded: the same parameters as a plain create_model, freshly random-initialised
    fresh = _params(net)
    assert {n: v.shape for n, v in fresh.items()} == {n: v.shape for n, v in good_params.items()}
    randomised = [n for n in good_params if np.ptp(good_params[n]) > 0]
    assert randomised and not any(np.array_equal(fresh[n], good_params[n]) for n in randomised)

    partial = {n: v for n, v in good_params.items() if not n.startswith("stages.3.")}
    partial["stem.conv9.weight"] = np.zeros((3,), np.float32)
    path = tmp_path / "partial.ckpt"
    save_checkpoint_atomic(partial, str(path))
    net = create_model(MODEL, num_classes=10, checkpoint_path=str(path))  # no error either
    loaded = _params(net)
    # random-initialised stage-3 tensors (constant initial values such as BatchNorm's ones would match anyway)
    stage3 = [n for n in loaded if n.startswith("stages.3.") and np.ptp(good_params[n]) > 0]
    assert stage3 and not any(np.array_equal(loaded[n], good_params[n]) for n in stage3)  # not loaded
    assert all(np.array_equal(loaded[n], v) for n, v in partial.items() if n in loaded)  # the rest is

    report = check_checkpoint(str(path), MODEL)
    assert not report.ok
    assert report.missing == sorted(n for n in good_params if n.startswith("stages.3."))
    assert report.unexpected == ["stem.conv9.weight"]
