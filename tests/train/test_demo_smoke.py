"""``scripts/demo.py --dataset colours --epochs 1``: the demo's whole path in a short run (the digits
default is the README's main job, run by users; its generator is tested in test_digits_imagefolder.py)."""
import json
import subprocess
import sys

from tests.conftest import SCRIPTS_DIR, subprocess_env


def test_demo_colours_smoke_run_writes_table_png_and_confusion_matrix(tmp_path):
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "demo.py"), "--dataset", "colours", "--epochs", "1", "--image-size", "32",
         "--workdir", str(workdir)],
        cwd=str(tmp_path), env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = proc.stdout
    for line in ("train loss (eval)", "train top-1", "val top-1 per epoch", "val top-1 (validate)",
                 "training throughput", "plot", "total time"):
        assert f"\n{line} " in out, (line, out[-2000:])
    png = workdir / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    val = json.loads((workdir / "validate.json").read_text())
    cm = val["confusion_matrix"]
    assert len(cm) == 4 and all(len(row) == 4 for row in cm)
    assert sum(map(sum, cm)) == val["num_samples"] == 32  # 4 classes x 8 val images
    assert sum(cm[i][i] for i in range(4)) / 32 == val["metrics"]["Top_1_Accuracy"]
    # the per-epoch val top-1 printed comes from MindCV's result.log of this run (one epoch)
    assert len(out.split("val top-1 per epoch")[1].splitlines()[0].split()) == 1
    assert sorted(p.name for p in workdir.iterdir()) == ["ckpt", "data", "demo.png", "validate.json"]
    # no MindInsight summary: its writer process spins on a core for the whole run (scripts/factory_train.py)
    assert not (workdir / "ckpt" / "summary").exists()
    assert (workdir / "ckpt" / "result.log").is_file()  # StateMonitor itself still ran
