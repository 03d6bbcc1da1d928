"""Build glue: put the start-up files at the root of site-packages, in regular and editable installs.

Everything else (metadata, dependencies, entry points) is declared in setup.cfg.

* ``startup/mindcv_halonet_autoload.pth``: one ``import`` line that installs the lazy hook.
* ``startup/mindcv_halonet_autoload.start``: the same as a PEP 829 entry point (Python >= 3.15,
  where it takes precedence over the ``import`` line of the matching ``.pth``).

A regular wheel gets them through ``build_py`` (files at the top of build_lib land in
site-packages). An editable wheel (PEP 660) ignores build_lib, so ``editable_wheel`` appends them
to the finished wheel and its RECORD; pip then installs (and uninstalls) them like any file.
"""
import base64
import glob
import hashlib
import os
import re
import zipfile

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
STARTUP_FILES = ("startup/mindcv_halonet_autoload.pth", "startup/mindcv_halonet_autoload.start")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def add_files_to_wheel(wheel_path: str, files: dict) -> None:
    """Add ``{archive name: bytes}`` at the wheel's root and to its RECORD (atomic rewrite)."""
    tmp_path = wheel_path + ".tmp"
    with zipfile.ZipFile(wheel_path) as src:
        names = src.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        record = src.read(record_name).decode("utf-8").splitlines()
        with zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename != record_name:
                    dst.writestr(info, src.read(info.filename))
            for arcname, data in files.items():
                if arcname in names:
                    continue
                dst.writestr(arcname, data)
                record.insert(len(record) - 1, f"{arcname},{_record_hash(data)},{len(data)}")
            dst.writestr(record_name, "\n".join(record) + "\n")
    os.replace(tmp_path, wheel_path)


def _startup_files() -> dict:
    files = {}
    for rel in STARTUP_FILES:
        with open(os.path.join(HERE, rel), "rb") as f:
            files[os.path.basename(rel)] = f.read()
    return files


class BuildPyWithStartupFiles(build_py):
    def run(self):
        super().run()
        os.makedirs(self.build_lib, exist_ok=True)
        for name, data in _startup_files().items():
            target = os.path.join(self.build_lib, name)
            with open(target, "wb") as f:
                f.write(data)


class EditableWheelWithStartupFiles(editable_wheel):
    def run(self):
        super().run()
        project = re.sub(r"[-_.]+", "_", self.distribution.get_name()).lower()
        wheels = glob.glob(os.path.join(str(self.dist_dir), f"{project}-*.editable-*.whl"))
        if not wheels:
            raise RuntimeError(f"no editable wheel of {project} found in {self.dist_dir}")
        for wheel_path in wheels:
            add_files_to_wheel(wheel_path, _startup_files())


setup(cmdclass={"build_py": BuildPyWithStartupFiles, "editable_wheel": EditableWheelWithStartupFiles})
