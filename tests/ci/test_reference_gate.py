"""CI requires the timm reference stack: ``.ci/run`` (and ``scripts/test_versions.sh``, the version matrix)
exit non-zero when requirements/reference.txt cannot be installed or torch/timm cannot be imported.

Cheap: the scripts run for real, but against a stand-in environment whose ``bin/python`` is a shell
script. Its ``pip`` "installs" (or fails for requirements/reference.txt, as asked), its ``pytest`` only
prints a marker (so a broken gate cannot start the real suite: the marker makes it visible), and
anything else is this interpreter with ``torch`` made unimportable. ``PYTHON=/bin/false`` makes any
attempt of the matrix to create an environment fail at once.
"""
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

PYTEST_MARK = "FAKE-PYTEST-REACHED"


@pytest.fixture
def fake_env(tmp_path):
    """``run(command, reference_pip_rc=0, **env) -> CompletedProcess`` against the stand-in environment."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text('raise ImportError("torch is unimportable in this test environment")\n')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        if [ "${{1:-}} ${{2:-}}" = "-m pip" ]; then
            case "$*" in *reference.txt*) exit "${{FAKE_REFERENCE_PIP_RC:-0}}" ;; *) exit 0 ;; esac
        fi
        if [ "${{1:-}} ${{2:-}}" = "-m pytest" ]; then echo "{PYTEST_MARK}"; exit 0; fi
        PYTHONPATH="{block.parent}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"
        """))
    python.chmod(python.stat().st_mode | stat.S_IXUSR)

    def run(command, reference_pip_rc=0, **overrides):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MINDCV_HALONET_")}
        env.update(MINDCV_HALONET_VENV=str(venv), PYTHON="/bin/false", MINDCV_HALONET_MS_VERSIONS="0.0.0",
                   FAKE_REFERENCE_PIP_RC=str(reference_pip_rc), GLOG_v="3")
        env.update(overrides)
        return subprocess.run(["bash", *command], cwd=str(REPO_ROOT), env=env, capture_output=True, text=True,
                              timeout=300)

    return run


def test_the_stand_in_really_lacks_torch(fake_env, tmp_path):
    proc = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c", "import torch"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "unimportable" in proc.stderr


@pytest.mark.parametrize("pip_rc,message", [(1, "FAILED to install requirements/reference.txt"),
                                            (0, "torch, torchvision and timm do not import")],
                         ids=["install-fails", "import-fails"])
def test_ci_exits_non_zero_without_the_reference(fake_env, pip_rc, message):
    proc = fake_env([".ci/run"], reference_pip_rc=pip_rc)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert message in proc.stderr, out[-3000:]
    assert PYTEST_MARK not in out  # stopped before any test ran


def test_ci_ignores_the_local_opt_out(fake_env):
    proc = fake_env([".ci/run"], MINDCV_HALONET_WITH_REFERENCE="0")
    assert proc.returncode != 0
    assert "do not import" in proc.stderr and PYTEST_MARK not in proc.stdout


def test_local_opt_out_runs_and_says_so_in_its_last_line(fake_env):
    proc = fake_env(["scripts/test.sh", "tests/plugin"], MINDCV_HALONET_WITH_REFERENCE="0")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert PYTEST_MARK in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("test.sh: REFERENCE SKIPPED (MINDCV_HALONET_WITH_REFERENCE=0)")


@pytest.mark.parametrize("timm_python", [None, "venv"], ids=["base-lacks-timm", "configured-lacks-timm"])
def test_version_matrix_exits_non_zero_without_the_reference(fake_env, tmp_path, timm_python):
    overrides = {}
    if timm_python:
        overrides["MINDCV_HALONET_TIMM_PYTHON"] = str(tmp_path / "venv" / "bin" / "python")
    proc = fake_env(["scripts/test_versions.sh"], **overrides)
    assert proc.returncode != 0
    assert "test_versions.sh: FAILED" in proc.stderr, proc.stderr[-3000:]
    assert "[matrix] creating" not in proc.stdout  # failed before any environment was set up


@pytest.mark.parametrize("opt_out", [None, "0"], ids=["required", "opted-out"])
def test_parity_tests_fail_without_torch_unless_opted_out(tmp_path, opt_out):
    """In-process torch (the property test) and timm in another interpreter (the numerical comparison):
    with torch unimportable both are errors, not skips; with the explicit opt-out both skip."""
    block = tmp_path / "block" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text('raise ImportError("torch is unimportable in this test environment")\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINDCV_HALONET_")}
    env["PYTHONPATH"] = os.pathsep.join([str(block.parent), str(REPO_ROOT)])
    env.setdefault("GLOG_v", "3")
    if opt_out is not None:
        env["MINDCV_HALONET_WITH_REFERENCE"] = opt_out
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "--continue-on-collection-errors",
         "tests/layers/test_halo_attention_property.py",
         "tests/weights/test_timm_numerical.py::test_converted_timm_weights_match_timm[halonet26t]"],
        cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1]
    if opt_out is None:
        assert proc.returncode != 0, proc.stdout[-3000:]
        assert "2 errors" in summary and "skipped" not in summary, proc.stdout[-3000:]
        assert "ERROR tests/layers/test_halo_attention_property.py" in proc.stdout
        assert "ERROR tests/weights/test_timm_numerical.py::test_converted_timm_weights_match_timm[halonet26t]" \
            in proc.stdout and "the reference stack is required" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "2 skipped" in summary and "MINDCV_HALONET_WITH_REFERENCE=0" in proc.stdout, proc.stdout[-3000:]
