"""A regular wheel built from the sources carries the start-up files at its root and in RECORD.

(The editable wheel is what the test environment itself was installed from; see
test_installed_distribution.py.)
"""
import csv
import io
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO_ROOT

SOURCES = ["setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "startup",
           "mindcv_halonet", "mindcv_halonet_autoload"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("mindcv_halonet-*.whl")
    return whl


def test_startup_files_at_the_wheel_root(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        record = {row[0] for row in csv.reader(io.StringIO(zf.read(record_name).decode()))}
        pth = zf.read("mindcv_halonet_autoload.pth").decode()
    for name in ("mindcv_halonet_autoload.pth", "mindcv_halonet_autoload.start",
                 "mindcv_halonet_autoload/__init__.py", "mindcv_halonet_autoload/loader.py",
                 "mindcv_halonet_autoload/mindocr.py",
                 "mindcv_halonet/__init__.py"):
        assert name in names and name in record, name
    assert pth.strip() == "import mindcv_halonet_autoload; mindcv_halonet_autoload.install()"
    assert not any(n.startswith(("tests/", "scripts/", "configs/")) for n in names)
