"""scripts/device_smoke.py on CPU: it runs (so it cannot rot), and it fails when it should.

CI sizes: halonet_26t only, 32 px, batch 2, 2 steps (the default on a device: both models, 224 px,
batch 8, 20 steps). The positive run uses the recipes' O3 (on CPU with the fixed-scale fallback), the
failing run O0 with a NaN injected into one weight.
"""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SCRIPTS_DIR, subprocess_env
from tests.scripts import load_script

SCRIPT = SCRIPTS_DIR / "device_smoke.py"
SMALL = ["--device_target", "CPU", "--models", "halonet_26t", "--batch", "2", "--image-size", "32"]


def _run(args, timeout=600):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, (json.loads(lines[-1]) if lines else None)


def _module():
    return load_script("device_smoke")


def test_cpu_run_passes_and_reports_one_json_line(tmp_path):
    proc, report = _run([*SMALL, "--amp-levels", "O3", "--steps", "2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("{")  # the JSON line is the last line
    assert report["ok"] is True and report["device_target"] == "CPU"
    assert report["precision_mode"].startswith("n/a")
    assert report["peak_host_rss_mb"] > 0
    (run,) = report["runs"]
    assert run["model"] == "halonet_26t" and run["amp_level"] == "O3" and run["failures"] == []
    assert len(run["losses"]) == 2 and all(math.isfinite(v) for v in run["losses"])
    assert run["compile_s"] >= 0 and run["step_s"] > 0
    assert 0 <= run["forward_rel_err_vs_cpu_fp32"] <= report["tolerance"]["O3"]
    assert run["forward_rel_err_vs_cpu_fp32"] > 0  # float16 compute vs float32 reference: never identical
    assert run["loss_scale"]["recipe"] == "dynamic 1024, drop_overflow_update=True"
    assert "CPU fallback" in run["loss_scale"]["used"] and run["loss_scale"]["train_step"] == "TrainOneStepCell"


def test_injected_nan_fails_the_run():
    proc, report = _run([*SMALL, "--amp-levels", "O0", "--steps", "1", "--batch", "1", "--inject-nan"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    (run,) = report["runs"]
    assert report["ok"] is False
    # the forward may even stay finite (ReLU maps NaN to 0 on CPU); the update writes NaN into the weights
    assert any(f.startswith("non-finite weights") for f in run["failures"]), run["failures"]


@pytest.mark.parametrize("args, message", [
    (["--device_target", "TPU"], "invalid choice: 'TPU'"),
    (["--device_target", "CPU", "--models", "resnet18"], "'resnet18' has no recipe"),
    (["--device_target", "CPU", "--amp-levels", "O1"], "--amp-levels='O1' is invalid"),
    (["--device_target", "CPU", "--steps", "0"], "'0' is not an integer >= 1"),
    (["--device_target", "CPU", "--image-size", "100"], "--image-size=100 is invalid"),
    (["--device_target", "CPU", "--ascend-precision-mode", "must_keep_origin_dtype"], "needs device_target='Ascend'"),
])
def test_bad_arguments_are_named_before_any_work(args, message, capsys):
    module = _module()
    with pytest.raises(SystemExit) as exc:
        module.parse_args(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_relative_error_catches_a_mismatch_and_non_finite_values():
    module = _module()
    ref = np.array([[1.0, -2.0], [0.5, 4.0]])
    assert module.relative_error(ref, ref) == 0.0
    assert module.relative_error(ref + [[0, 0], [0, 0.4]], ref) == pytest.approx(0.1)
    assert math.isnan(module.relative_error(np.where(ref > 3, np.nan, ref), ref))
    assert math.isnan(module.relative_error(ref[:1], ref))
