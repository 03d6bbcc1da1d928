"""A truncated, corrupt or empty weights file is a one-line ``error:`` (exit 2) naming the file and what
is wrong, for every format the converter reads; nothing is written. ~3 s."""
import numpy as np
import pytest

import mindspore as ms

from mindcv_halonet.commands import convert as cli
from mindcv_halonet.weights.errors import InputFileError
from mindcv_halonet.weights.readers import read_state

FORMATS = {".safetensors": "timm", ".npz": "timm", ".ckpt": "mindcv"}
MODEL = {"timm": "halonet_26t", "mindcv": "halonet_50t"}
NAMES = {".safetensors": "safetensors", ".npz": "NumPy .npz archive", ".ckpt": "MindSpore checkpoint"}


def _write_valid(path, ext):
    state = {"a.weight": np.arange(4000, dtype=np.float32).reshape(40, 100), "b.bias": np.ones(7, np.float32)}
    if ext == ".safetensors":
        from safetensors.numpy import save_file

        save_file(state, str(path))
    elif ext == ".npz":
        np.savez(path, **state)
    else:
        ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], str(path))


@pytest.fixture(params=sorted(FORMATS), ids=lambda e: e.lstrip("."))
def ext(request):
    return request.param


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_file_is_a_clear_cli_error(capsys, tmp_path, ext, damage):
    good = tmp_path / f"good{ext}"
    _write_valid(good, ext)
    raw = good.read_bytes()
    bad = tmp_path / f"{damage}{ext}"
    bad.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"not a weights file " * 8, "empty": b""}[damage])
    out = tmp_path / "out.ckpt"
    source = FORMATS[ext]
    code = cli.main(["--from", source, "--model", MODEL[source], str(bad), "-o", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("mindcv-halonet-convert: error: "), err
    assert "Traceback" not in err
    assert str(bad) in err and NAMES[ext] in err, err
    assert "truncated or corrupt" in err or "contains no tensors" in err, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_read_state_raises_input_file_error(tmp_path, ext):
    good = tmp_path / f"good{ext}"
    _write_valid(good, ext)
    assert set(read_state(str(good), FORMATS[ext])) == {"a.weight", "b.bias"}  # the undamaged file reads
    bad = tmp_path / f"cut{ext}"
    bad.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(InputFileError) as info:
        read_state(str(bad), FORMATS[ext])
    assert isinstance(info.value, ValueError) and str(bad) in str(info.value)
