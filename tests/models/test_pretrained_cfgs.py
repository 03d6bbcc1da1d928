"""Where each variant's weights come from: Hub repository, file, crop_pct and input size, pinned.

Two references, neither produced by the code under test:
* an exact table written here from timm 1.0.31's pretrained configs (``timm.models.get_pretrained_cfg``
  of each timm architecture's default tag, read once by hand);
* timm itself, in the reference interpreter (``tests.weights.test_timm_numerical.timm_python``): the
  same fields read live from its registry (no network). The H family has no timm weights (timm's
  halonet_h1 is "untrained"), so only the table pins them.
"""
import json
import subprocess

import pytest

from mindcv_halonet.models import halonet
from mindcv_halonet.models.pretrained import variants_with_weights
from mindcv_halonet.weights.cache import hub_file_of
from tests.weights.test_timm_numerical import timm_python
from tests.reference_stack import skip_if_opted_out

# ours -> (timm architecture, Hub repository id or "" for none, crop_pct, input size)
WEIGHTS = {
    "halonet_50t": ("halonet50ts", "timm/halonet50ts.a1h_in1k", 0.94, 256),
    "halonet_26t": ("halonet26t", "timm/halonet26t.a1h_in1k", 0.95, 256),
    "sehalonet_33ts": ("sehalonet33ts", "timm/sehalonet33ts.ra2_in1k", 0.94, 256),
    "eca_halonext_26ts": ("eca_halonext26ts", "timm/eca_halonext26ts.c1_in1k", 0.94, 256),
    "halonet_h1": ("halonet_h1", "", 0.95, 256),
    # the paper's H family: no published weights; the image size of the paper's table
    "halonet_h0": (None, "", 0.95, 256), "halonet_h2": (None, "", 0.95, 256),
    "halonet_h3": (None, "", 0.95, 320), "halonet_h4": (None, "", 0.95, 384),
    "halonet_h5": (None, "", 0.95, 448), "halonet_h6": (None, "", 0.95, 512),
    "halonet_h7": (None, "", 0.95, 600),
}


def test_table_covers_every_variant():
    assert set(WEIGHTS) == set(halonet.model_specs) == set(halonet.default_cfgs)


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_weights_origin_matches_the_table(name):
    _, repo, crop_pct, size = WEIGHTS[name]
    cfg = halonet.default_cfgs[name]
    assert cfg["crop_pct"] == crop_pct
    assert cfg["input_size"] == (3, size, size)
    assert cfg["interpolation"] == "bicubic" and cfg["num_classes"] == 1000
    assert cfg.get("hf_hub_id", "") == repo
    if repo:
        assert cfg["url"] == f"https://huggingface.co/{repo}/resolve/main/model.safetensors"
        hub_file = hub_file_of(cfg)  # what pretrained=True downloads
        assert (hub_file.repo_id, hub_file.revision, hub_file.filename) == (repo, "main", "model.safetensors")
    else:
        assert cfg["url"] == ""
    assert (name in variants_with_weights(halonet.default_cfgs)) == bool(repo)


TIMM_CFG_SCRIPT = """
import json, sys
from timm.models import get_pretrained_cfg
out = {}
for arch in sys.argv[1:]:
    c = get_pretrained_cfg(arch)
    out[arch] = dict(hf_hub_id=c.hf_hub_id or "", crop_pct=c.crop_pct, input_size=list(c.input_size),
                     interpolation=c.interpolation, num_classes=c.num_classes)
print("@@CFG@@" + json.dumps(out))
"""


def test_weights_origin_matches_timms_pretrained_configs():
    python, reason = timm_python()
    if python is None:
        skip_if_opted_out(reason)
    archs = sorted({arch for arch, *_ in WEIGHTS.values() if arch})
    proc = subprocess.run([python, "-c", TIMM_CFG_SCRIPT, *archs], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("@@CFG@@")][-1]
    timm_cfgs = json.loads(line[len("@@CFG@@"):])
    for name, (arch, *_) in WEIGHTS.items():
        if arch is None:
            continue
        ours, theirs = halonet.default_cfgs[name], timm_cfgs[arch]
        assert ours.get("hf_hub_id", "") == theirs["hf_hub_id"], name
        assert ours["crop_pct"] == theirs["crop_pct"], name
        assert list(ours["input_size"]) == theirs["input_size"], name
        assert ours["interpolation"] == theirs["interpolation"] and ours["num_classes"] == theirs["num_classes"], name
