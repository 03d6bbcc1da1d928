"""Fixtures of the pretrained-weights tests: a local Hub stand-in, isolated caches, the served file."""
import os
import subprocess

import numpy as np
import pytest

from tests.weights.helpers import TIMM_REFERENCE_SCRIPT, synthetic_timm_state
from tests.weights.test_timm_numerical import timm_python
from tests.hub.hub_server import HubServer

VARIANT, TIMM_NAME, REPO = "halonet_26t", "halonet26t", "timm/halonet26t.a1h_in1k"
TIMM_SIZE = 256  # timm asserts every attention map is a multiple of its block (halonet26t: 128 px fails)
ENV_KEYS = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE", "MINDCV_HALONET_CACHE", "MINDCV_HALONET_HUB_STALL_SECONDS", "XDG_CACHE_HOME")


def timm_weights(tmp_dir, timm_name=TIMM_NAME, size=TIMM_SIZE, seed=0):
    """(state, input, logits) of timm's model with seeded weights, or None when the reference stack was
    opted out (MINDCV_HALONET_WITH_REFERENCE=0); a missing one otherwise fails in ``timm_python``."""
    python, _ = timm_python()
    if python is None:
        return None
    out = tmp_dir / f"{timm_name}.npz"
    proc = subprocess.run(
        [python, str(TIMM_REFERENCE_SCRIPT), "reference", str(out), "--model", timm_name, "--seed", str(seed),
         "--size", str(size), "--batch", "1", "--threads", "2"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(out) as ref:
        state = {k[len("state/"):]: ref[k] for k in ref.files if k.startswith("state/")}
        return state, ref["input"], ref["logits"]


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """The file the Hub serves: timm's halonet26t (seeded, non-trivial BatchNorm statistics) when torch+timm
    are importable, else (reference opted out) seeded random arrays with timm's key names and shapes
    (tests/data/timm_keys)."""
    from safetensors.numpy import save

    made = timm_weights(tmp_path_factory.mktemp("timm"))
    if made is None:
        state, x, logits, origin = synthetic_timm_state(TIMM_NAME, seed=0), None, None, "synthetic"
    else:
        (state, x, logits), origin = made, "timm"
    return dict(state=state, data=save(state), input=x, logits=logits, origin=origin)


class Hub:
    def __init__(self, server, root):
        self.server, self.root = server, root
        self.hf_cache, self.converted = root / "hf" / "hub", root / "converted"

    def files(self):
        """Every file below both caches (relative to the test's root)."""
        found = []
        for top in (self.root / "hf", self.converted):
            for dirpath, _, names in os.walk(top):
                found += [os.path.relpath(os.path.join(dirpath, n), self.root) for n in names]
        return sorted(found)


@pytest.fixture
def hub(tmp_path, monkeypatch, weights):
    """A running Hub stand-in serving ``weights`` as REPO, HF_ENDPOINT pointed at it, empty caches in tmp."""
    server = HubServer()
    server.add(REPO, weights["data"])
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MINDCV_HALONET_CACHE", str(tmp_path / "converted"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        yield Hub(server, tmp_path)
    finally:
        server.stop()


@pytest.fixture(params=["huggingface_hub"])
def backend(request):
    """The one transport, huggingface_hub (a required dependency); the id names its version in the report."""
    import huggingface_hub  # a missing one is a failure, not a skip

    return f"{request.param}=={huggingface_hub.__version__}"
