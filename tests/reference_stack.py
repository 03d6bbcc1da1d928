"""The timm reference stack (torch, torchvision, timm; requirements/reference.txt) is required.

A test that needs it fails when it is missing, unless the run opted out explicitly with
``MINDCV_HALONET_WITH_REFERENCE=0`` (a local run of ``scripts/test.sh``; ``.ci/run`` never does): then
it skips, naming the variable (where the stack happens to be importable anyway, the tests still run).
A broken install cannot turn the parity tests into skips.
"""
import os

import pytest

OPT_OUT_ENV = "MINDCV_HALONET_WITH_REFERENCE"


def opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "1").strip() == "0"


def skip_if_opted_out(what: str) -> None:
    """Skip (also at module level) when the run opted out of the reference; otherwise return."""
    if opted_out():
        pytest.skip(f"{what}: the timm reference stack was opted out ({OPT_OUT_ENV}=0)", allow_module_level=True)


def import_torch(what: str):
    """``torch``, imported in this process. Without it: a skip if the run opted out, else the ImportError
    propagates (a failure, not a skip)."""
    try:
        import torch
    except ImportError:
        skip_if_opted_out(what)
        raise
    return torch
