"""Converted timm weights compute timm's function: logits and the four stage outputs at 256x256.

timm runs in a *separate interpreter* (``tests/weights/timm_reference.py``), which builds the timm
model with seeded random weights and non-trivial BatchNorm statistics, runs it in eval mode and
writes weights, input, logits and stage outputs to an .npz. This process only reads that file, so
the MindSpore test environment does not need torch.

Interpreter used for timm:
  * ``$MINDCV_HALONET_TIMM_PYTHON`` if set (it must be able to ``import torch, torchvision, timm``);
  * otherwise this interpreter, if it can import timm;
  * otherwise the tests fail (the reference stack is required), unless the run opted out explicitly
    with ``MINDCV_HALONET_WITH_REFERENCE=0``: then they skip, with the reason.

Tolerance (float32 on both sides): max |ours - timm| <= 1e-5 * max |timm|, for the logits and for
each stage output: the README's claim. (timm's own float32 vs float64 gap on these inputs is ~1e-6
relative.)
"""
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from mindcv_halonet.commands.common import build_network
from mindcv_halonet.commands.convert import convert_state
from mindcv_halonet.weights import TIMM_TO_OURS
from tests.weights.helpers import TIMM_REFERENCE_SCRIPT, forward_stages, load_into, max_errors
from tests.reference_stack import OPT_OUT_ENV, opted_out

TIMM_PYTHON_ENV = "MINDCV_HALONET_TIMM_PYTHON"
REL_TOL = 1e-5  # the README's "within 1e-5 relative"
SEED, SIZE, BATCH = 0, 256, 2


def _can_import_timm(python: str) -> bool:
    try:
        proc = subprocess.run([python, "-c", "import torch, timm"], capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@functools.lru_cache(maxsize=None)
def timm_python():
    """(interpreter or None, reason)."""
    configured = os.environ.get(TIMM_PYTHON_ENV)
    if configured:
        if not _can_import_timm(configured):
            raise RuntimeError(f"{TIMM_PYTHON_ENV}={configured!r} cannot 'import torch, timm'")
        return configured, ""
    if _can_import_timm(sys.executable):
        return sys.executable, ""
    reason = (f"torch+timm are not importable by {sys.executable} and {TIMM_PYTHON_ENV} is not set "
              f"(point it at a python with torch, torchvision and timm to run the numerical timm comparison)")
    if opted_out():
        return None, f"{reason}; the reference stack was opted out ({OPT_OUT_ENV}=0)"
    raise RuntimeError(f"{reason}; the reference stack is required ({OPT_OUT_ENV}=0 opts out explicitly)")


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    python, reason = timm_python()
    if python is None:
        pytest.skip(reason)
    return python, tmp_path_factory.mktemp("timm_reference")


@pytest.fixture(scope="module", autouse=True)
def _pynative(pynative_module):
    """PyNative for this module (tests/conftest.py restores the previous mode afterwards)."""


def make_reference(python, out_dir, timm_name):
    out = out_dir / f"{timm_name}.npz"
    proc = subprocess.run(
        [python, str(TIMM_REFERENCE_SCRIPT), "reference", str(out), "--model", timm_name,
         "--seed", str(SEED), "--size", str(SIZE), "--batch", str(BATCH), "--threads", "2"],
        capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"timm reference failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return np.load(out)


@pytest.mark.parametrize("timm_name", list(TIMM_TO_OURS))
def test_converted_timm_weights_match_timm(reference_dir, timm_name):
    python, out_dir = reference_dir
    ref = make_reference(python, out_dir, timm_name)
    state = {k[len("state/"):]: ref[k] for k in ref.files if k.startswith("state/")}
    # the reference weights really are non-trivial (not timm's 1/0 BatchNorm init)
    assert any(k.endswith("running_var") and abs(v - 1).max() > 0.1 for k, v in state.items())
    assert all(np.abs(v).max() > 0 for k, v in state.items() if k.endswith(".bn.weight"))

    result = convert_state(state, "timm", timm_name)
    net = build_network(result.variant, result.num_classes)
    load_into(net, result.params)
    stages, logits = forward_stages(net, ref["input"])

    lines, failures = [], []
    for i, actual in enumerate(stages):
        expected = ref[f"stage{i}"]
        assert actual.shape == expected.shape, (i, actual.shape, expected.shape)
        abs_err, rel_err = max_errors(actual, expected)
        lines.append(f"  stage{i} {actual.shape}: max abs {abs_err:.2e}, max rel {rel_err:.2e}")
        if rel_err > REL_TOL:
            failures.append(f"stage{i}")
    assert logits.shape == ref["logits"].shape
    abs_err, rel_err = max_errors(logits, ref["logits"])
    lines.insert(0, f"{timm_name} -> {result.variant}: logits max abs {abs_err:.2e}, max rel {rel_err:.2e} "
                    f"(max |timm logit| {np.abs(ref['logits']).max():.3g})")
    if rel_err > REL_TOL:
        failures.append("logits")
    print("\n" + "\n".join(lines))
    assert not failures, f"relative error above {REL_TOL} in {failures}:\n" + "\n".join(lines)
