"""Shared test helpers: run code in a fresh interpreter of the test environment."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = REPO_ROOT / "scripts"
CONFIG_DIR = REPO_ROOT / "configs" / "halonet"

# Marker line a subprocess prints before its JSON result (stdout also carries library chatter).
RESULT_MARK = "@@RESULT@@"


def subprocess_env(**overrides) -> dict:
    """The test environment for a child interpreter: no autoload opt-out, quiet MindSpore logs,
    this venv's bin first on PATH (msrun workers run plain ``python``)."""
    env = dict(os.environ)
    env.pop("MINDCV_HALONET_DISABLE_AUTOLOAD", None)
    env.setdefault("GLOG_v", "3")
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def run_python(code: str, cwd, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    """Run ``code`` with ``python -c`` in a fresh interpreter (cwd outside the source tree, so
    only the installed distribution is visible)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(cwd),
        env=env if env is not None else subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"child interpreter failed (exit {proc.returncode})\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def parse_result(stdout: str):
    """The JSON object a child printed after ``RESULT_MARK``."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise AssertionError(f"no {RESULT_MARK} line in child output:\n{stdout[-4000:]}")


@pytest.fixture
def fresh_python(tmp_path):
    """``fresh_python(code, **env_overrides) -> (result_json, completed_process)``."""

    def _run(code, timeout=600, **env_overrides):
        proc = run_python(code, cwd=tmp_path, env=subprocess_env(**env_overrides), timeout=timeout)
        return parse_result(proc.stdout), proc

    return _run


@pytest.fixture
def set_mode():
    """``set_mode(mode)``: switch MindSpore's execution mode inside the test; the mode it had before the
    test is restored afterwards, also when the test fails."""
    import mindspore as ms

    saved = ms.get_context("mode")
    yield lambda mode: ms.set_context(mode=mode)
    ms.set_context(mode=saved)


@pytest.fixture(scope="module")
def pynative_module():
    """PyNative mode on CPU for a whole module; the previous mode is restored after its last test."""
    import mindspore as ms

    saved = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    yield
    ms.set_context(mode=saved)
