"""Helpers shared by the converter tests (no torch needed)."""
import json
import pathlib
from typing import Dict

import numpy as np

import mindspore as ms

TIMM_KEYS_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "timm_keys"
TIMM_REFERENCE_SCRIPT = pathlib.Path(__file__).resolve().parent / "timm_reference.py"


def timm_key_table(timm_name: str) -> dict:
    """The committed ``tests/data/timm_keys/<timm_name>.json`` (generated once from timm)."""
    with open(TIMM_KEYS_DIR / f"{timm_name}.json", encoding="utf-8") as f:
        return json.load(f)


def synthetic_timm_state(timm_name: str, seed: int = 0) -> Dict[str, np.ndarray]:
    """A timm state dict with every key and shape of the real one, filled with distinct random values."""
    rng = np.random.default_rng(seed)
    state = {}
    for entry in timm_key_table(timm_name)["state_dict"]:
        shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
        if np.issubdtype(dtype, np.integer):
            state[entry["key"]] = np.asarray(rng.integers(0, 1000, size=shape), dtype=dtype)
        elif entry["key"].endswith("running_var"):
            state[entry["key"]] = rng.uniform(0.5, 1.5, size=shape).astype(dtype)
        else:
            state[entry["key"]] = (0.1 * rng.standard_normal(shape)).astype(dtype)
    return state


def load_into(net, params: Dict[str, np.ndarray]) -> None:
    """Set every parameter of ``net`` from ``params``; the name sets must be equal."""
    own = dict(net.parameters_and_names())
    assert set(own) == set(params), (sorted(set(own) ^ set(params)))[:20]
    for name, value in params.items():
        assert tuple(own[name].shape) == tuple(value.shape), name
        own[name].set_data(ms.Tensor(value))


def max_errors(actual: np.ndarray, reference: np.ndarray):
    """(max |actual - reference|, that divided by max |reference|)."""
    diff = float(np.abs(actual.astype(np.float64) - reference.astype(np.float64)).max())
    return diff, diff / max(float(np.abs(reference).max()), 1e-30)


def forward_stages(net, x: np.ndarray):
    """Our network's four stage outputs and logits (eval mode), via its own sub-cells."""
    net.set_train(False)
    h = net.stem(ms.Tensor(x))
    stages = []
    for stage in net.stages:
        h = stage(h)
        stages.append(h.asnumpy())
    logits = net.forward_head(net.final_conv(h)).asnumpy()
    return stages, logits
