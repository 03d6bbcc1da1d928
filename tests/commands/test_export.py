"""``mindcv_halonet.commands.export``: MINDIR and ONNX files reproduce the network's eval output.

Each model test builds a network with random weights *and* random BatchNorm statistics, saves it as a
MindSpore checkpoint, exports through ``export_model(..., ckpt=...)`` (which builds a *fresh*
network and loads the checkpoint strictly, so a skipped load would show as a mismatch), then runs
the file: MINDIR with ``mindspore.load`` + ``nn.GraphCell`` (asserted bit-identical to the Cell's
eval output, tolerance 0), ONNX with onnxruntime (max |onnx - cell| / max |cell| <= 1e-5).
"""
import configparser
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

import mindcv_halonet  # noqa: F401  registers the models
from mindcv.models import create_model
from mindcv_halonet.commands import export as export_mod
from mindcv_halonet.commands.export import check_export_args, export_model, main, parse_image_size
from tests.conftest import REPO_ROOT, subprocess_env

NUM_CLASSES = 10


def randomised_net(model, seed=0):
    """A network in eval mode with random weights and non-trivial BatchNorm statistics."""
    ms.set_seed(seed)
    net = create_model(model, num_classes=NUM_CLASSES)
    rng = np.random.default_rng(seed)
    for name, p in net.parameters_and_names():
        if name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
        elif name.endswith(("moving_mean", "beta")):
            p.set_data(ms.Tensor((0.1 * rng.standard_normal(p.shape)).astype(np.float32)))
        elif name.endswith("gamma"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    net.set_train(False)
    return net


def relative_error(actual, reference):
    return float(np.abs(actual.astype(np.float64) - reference).max() / np.abs(reference).max())


def leftovers(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith(".export-"))


# halonet_26t at its 256 px; halonet_50t at 224 (stage maps 56/28/14/7 are not multiples of block 8)
@pytest.mark.parametrize("model,size,formats", [
    ("halonet_26t", 256, ("MINDIR", "ONNX")),
    ("halonet_50t", 224, ("MINDIR", "ONNX")),
])
def test_exported_files_reproduce_the_cell(tmp_path, model, size, formats):
    import onnxruntime as ort

    net = randomised_net(model)
    ckpt = str(tmp_path / f"{model}.ckpt")
    ms.save_checkpoint(net, ckpt)
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    expected = net(ms.Tensor(x)).asnumpy()
    assert expected.shape == (1, NUM_CLASSES) and np.isfinite(expected).all()

    for fmt in formats:
        out = str(tmp_path / f"{model}_{size}{export_mod.FORMATS[fmt]}")
        info = export_model(model, out, ckpt=ckpt, image_size=size, file_format=fmt)
        assert info["num_classes"] == NUM_CLASSES  # taken from the checkpoint's classifier
        assert info["input_shape"] == (1, 3, size, size) and os.path.getsize(out) == info["bytes"] > 1e6
        if fmt == "MINDIR":
            got = nn.GraphCell(ms.load(out))(ms.Tensor(x)).asnumpy()
            np.testing.assert_array_equal(got, expected)  # bit-identical
        else:
            session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
            (inp,) = session.get_inputs()
            assert list(inp.shape) == [1, 3, size, size]
            got = session.run(None, {inp.name: x})[0]
            assert got.shape == expected.shape
            assert relative_error(got, expected) <= 1e-5
    assert leftovers(tmp_path) == []


def test_batch_and_non_square_size_in_graph_mode(tmp_path):
    """Batch 2 at 96x160 (H x W), exported from Graph mode: the file has that static input."""
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = randomised_net("halonet_26t", seed=3)
        x = np.random.default_rng(2).standard_normal((2, 3, 96, 160)).astype(np.float32)
        expected = net(ms.Tensor(x)).asnumpy()
        out = str(tmp_path / "h26t.mindir")
        info = export_model("halonet_26t", out, image_size="96x160", batch=2, net=net)
        assert info["input_shape"] == (2, 3, 96, 160)
        got = nn.GraphCell(ms.load(out))(ms.Tensor(x)).asnumpy()
    finally:
        ms.set_context(mode=mode)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("value,expected", [(224, (224, 224)), ("256", (256, 256)), ("320x256", (320, 256)),
                                            ((96, 160), (96, 160))])
def test_parse_image_size(value, expected):
    assert parse_image_size(value) == expected


@pytest.mark.parametrize("kwargs,match", [
    ({"model": "halonet_99"}, r"model='halonet_99' is not in MindCV's model registry; HaloNet variants: .*halonet_50t"),
    ({"image_size": 0}, r"image_size=0 is invalid; expected an integer >= 1 .* or HxW"),
    ({"image_size": "224x"}, r"image_size='224x' is invalid"),
    ({"batch": 0}, r"batch=0 is invalid; expected an integer >= 1"),
    ({"num_classes": -1}, r"num_classes=-1 is invalid"),
    ({"file_format": "TFLITE"}, r"file_format='TFLITE' is invalid; expected one of MINDIR, ONNX"),
    ({"output": "net.onnx"}, r"output='net.onnx' is not accepted for format MINDIR; expected a path ending in .mindir"),
    ({"output": "/no/such/dir/net.mindir"}, r"directory '/no/such/dir' does not exist"),
    ({"ckpt": "missing.ckpt"}, r"ckpt='missing.ckpt' does not exist or is not a file"),
    ({"ckpt": "weights.pth"}, r"ckpt='weights.pth' has extension '.pth'"),
])
def test_bad_arguments_are_named(tmp_path, monkeypatch, kwargs, match):
    monkeypatch.chdir(tmp_path)
    args = {"model": "halonet_26t", "output": "net.mindir", **kwargs}
    with pytest.raises(ValueError, match=match):
        check_export_args(**args)
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "net.mindir"
    out.write_bytes(b"keep me")
    with pytest.raises(ValueError, match=r"already exists \(pass --overwrite"):
        export_model("halonet_26t", str(out), image_size=32)
    assert out.read_bytes() == b"keep me"


def test_checkpoint_that_does_not_fit_writes_nothing(tmp_path, capsys):
    """A 10-class checkpoint exported as 5 classes: strict load fails, exit code 2, nothing on disk."""
    net = create_model("halonet_26t", num_classes=NUM_CLASSES)
    ckpt = tmp_path / "h26t.ckpt"
    ms.save_checkpoint(net, str(ckpt))
    out = tmp_path / "net.mindir"
    rc = main(["--model", "halonet_26t", "--ckpt", str(ckpt), "--num-classes", "5", "--image-size", "32",
               "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "mindcv-halonet-export: error: checkpoint" in err and "mis-shaped" in err and "head.fc.weight" in err
    assert "nothing was written" in err
    assert sorted(os.listdir(tmp_path)) == ["h26t.ckpt"]


def test_failure_inside_mindspore_export_leaves_nothing(tmp_path, monkeypatch):
    def partial_export(net, *inputs, file_name, file_format):
        with open(file_name + ".mindir", "wb") as f:
            f.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ms, "export", partial_export)
    out = tmp_path / "net.mindir"
    with pytest.raises(RuntimeError, match="disk full"):
        export_model("halonet_26t", str(out), image_size=32)
    assert os.listdir(tmp_path) == []


def test_cli_module_exports_with_random_weights_warning(tmp_path):
    """``python -m mindcv_halonet.commands.export`` in a fresh interpreter; argparse errors exit 2 too."""
    out = tmp_path / "h26t.onnx"
    cmd = [sys.executable, "-m", "mindcv_halonet.commands.export", "--model", "halonet_26t", "--image-size", "64",
           "--batch", "2", "--format", "onnx", "-o", str(out)]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING: no --ckpt given: exporting RANDOMLY INITIALISED weights" in proc.stderr
    assert f"-> {out} (ONNX, input 2x3x64x64 float32" in proc.stdout
    assert out.is_file()
    again = subprocess.run(cmd, cwd=str(tmp_path), env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "mindcv-halonet-export: error: output=" in again.stderr
    assert "already exists" in again.stderr


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--model", "halonet_26t", "--format", "tflite", "-o", "x.mindir"])
    assert exc.value.code == 2 and "error: argument --format" in capsys.readouterr().err


def test_console_script_is_declared():
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    assert scripts["mindcv-halonet-export"] == "mindcv_halonet.commands.export:main"
