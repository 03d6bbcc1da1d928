"""Auto-registration in fresh interpreters: nothing imports ``mindcv_halonet`` except the hook."""
import os
import textwrap

import pytest

from tests.conftest import RESULT_MARK

REPLACED_LINE = "replaces MindCV's built-in"

VARIANTS = {
    "halonet_50t", "halonet_26t", "sehalonet_33ts", "eca_halonext_26ts",
    "halonet_h0", "halonet_h1", "halonet_h2", "halonet_h3", "halonet_h4", "halonet_h5", "halonet_h6", "halonet_h7",
}

# Imported by every child before anything else: records what start-up alone left behind.
PRELUDE = f"""
import json, sys
RESULT_MARK = {RESULT_MARK!r}
heavy_at_startup = sorted(m for m in ("mindspore", "mindcv", "numpy", "mindcv_halonet", "wrapt", "importlib.metadata")
                          if m in sys.modules)
hook_waiting = any(getattr(f, "mindcv_halonet_autoload", False) for f in sys.meta_path)
def done(**result):
    print(RESULT_MARK + json.dumps(result, sort_keys=True, default=str))
"""

REGISTRY_SNAPSHOT = """
def registry_snapshot():
    from mindcv.models import registry
    return {k: f"{v.__module__}.{v.__name__}#{id(v)}" for k, v in registry._model_entrypoints.items()}
"""


def _child(body: str) -> str:
    return PRELUDE + REGISTRY_SNAPSHOT + textwrap.dedent(body)


def _replaced_lines(proc):
    return [line for line in proc.stderr.splitlines() if REPLACED_LINE in line]


def test_startup_installs_only_the_hook(fresh_python):
    res, _ = fresh_python(_child("done(heavy=heavy_at_startup, hook=hook_waiting)"))
    assert res == {"heavy": [], "hook": True}


def test_fresh_interpreter_gets_the_plugin_models_and_layers(fresh_python):
    res, proc = fresh_python(_child("""
        from mindcv.models import create_model, is_model_pretrained, list_models, model_entrypoint
        import mindcv, mindcv.models
        from mindcv.models.layers import HaloAttention
        loaded_by_hook = "mindcv_halonet" in sys.modules
        net = create_model("halonet_50t", num_classes=10)
        done(
            heavy=heavy_at_startup,
            loaded_by_hook=loaded_by_hook,
            net_class=f"{type(net).__module__}.{type(net).__name__}",
            halo_models=list_models("*halo*"),
            layer=f"{HaloAttention.__module__}.{HaloAttention.__name__}",
            in_layers_all="HaloAttention" in mindcv.models.layers.__all__,
            entrypoint=model_entrypoint("halonet_50t").__module__,
            models_attr=mindcv.models.halonet_50t is model_entrypoint("halonet_50t"),
            top_attr=mindcv.halonet_50t is model_entrypoint("halonet_50t"),
            new_attr=mindcv.models.halonet_26t is model_entrypoint("halonet_26t"),
            pretrained=is_model_pretrained("halonet_50t"),
        )
    """))
    assert res["heavy"] == []
    assert res["loaded_by_hook"] is True
    assert res["net_class"].startswith("mindcv_halonet.")
    assert VARIANTS <= set(res["halo_models"]), sorted(VARIANTS - set(res["halo_models"]))
    assert res["layer"] == "mindcv_halonet.layers.halo_attention.HaloAttention"
    assert res["in_layers_all"] is True
    assert res["entrypoint"] == "mindcv_halonet.models.halonet"
    assert res["models_attr"] and res["top_attr"] and res["new_attr"]
    assert res["pretrained"] is True  # timm's weights from the Hub (pretrained=True), not the built-in's URL
    lines = _replaced_lines(proc)
    assert len(lines) == 1 and "'halonet_50t'" in lines[0], proc.stderr[-3000:]


def test_loading_is_idempotent(fresh_python):
    res, proc = fresh_python(_child("""
        import importlib
        import mindcv
        from mindcv_halonet_autoload import loader
        first_registry, first_state = registry_snapshot(), loader.plugin_state()
        loader.load_plugins()
        import mindcv_halonet                      # the explicit fallback runs the same loader
        importlib.import_module("mindcv_halonet.models.halonet")
        loader.load_plugins()
        done(same_registry=registry_snapshot() == first_registry,
             same_state=loader.plugin_state() == first_state,
             loaded=len(first_state["loaded"]), failed=first_state["failed"],
             replaced=first_state["replaced"])
    """))
    assert res["same_registry"] and res["same_state"]
    assert res["loaded"] >= 3 and res["failed"] == {}
    assert res["replaced"] == {"halonet_50t": "mindcv_halonet.models.halonet.halonet_50t"}
    assert len(_replaced_lines(proc)) == 1, proc.stderr[-3000:]


def test_explicit_import_first_is_equivalent(fresh_python):
    res, proc = fresh_python(_child("""
        import mindcv_halonet
        from mindcv.models import is_model, model_entrypoint
        from mindcv.models.layers import HaloAttention
        done(version=mindcv_halonet.__version__, same_layer=HaloAttention is mindcv_halonet.HaloAttention,
             all_registered=all(is_model(n) for n in mindcv_halonet.models.__all__ if n.startswith(("halo", "seh", "eca"))),
             entrypoint=model_entrypoint("halonet_50t").__module__)
    """))
    assert res["same_layer"] and res["all_registered"]
    assert res["entrypoint"] == "mindcv_halonet.models.halonet"
    assert len(_replaced_lines(proc)) == 1, proc.stderr[-3000:]


def test_opt_out_and_explicit_fallback(fresh_python):
    res, proc = fresh_python(_child("""
        import mindcv.models
        from mindcv.models import is_model, model_entrypoint
        before = dict(hook=hook_waiting, plugin_imported="mindcv_halonet" in sys.modules,
                      h26=is_model("halonet_26t"), h50=model_entrypoint("halonet_50t").__module__,
                      layer=hasattr(mindcv.models.layers, "HaloAttention"))
        import mindcv_halonet
        after = dict(h26=is_model("halonet_26t"), h50=model_entrypoint("halonet_50t").__module__,
                     layer=hasattr(mindcv.models.layers, "HaloAttention"),
                     models_attr=mindcv.models.halonet_50t.__module__)
        done(before=before, after=after)
    """, ), MINDCV_HALONET_DISABLE_AUTOLOAD="1")
    assert res["before"] == {"hook": False, "plugin_imported": False, "h26": False,
                             "h50": "mindcv.models.halonet", "layer": False}
    assert res["after"] == {"h26": True, "h50": "mindcv_halonet.models.halonet", "layer": True,
                            "models_attr": "mindcv_halonet.models.halonet"}
    assert len(_replaced_lines(proc)) == 1, proc.stderr[-3000:]


FAKE_GOOD = '''
from mindspore import nn
from mindcv.models.registry import register_model

default_cfgs = {"fake_tiny_net": {"url": "", "num_classes": 10}}


class TinyLayer(nn.Cell):
    def construct(self, x):
        return x


class OtherDropPath:
    pass


@register_model
def fake_tiny_net(pretrained=False, num_classes=1000, in_channels=3, **kwargs):
    return nn.Dense(in_channels, num_classes)
'''

FAKE_ENTRY_POINTS = """
[mindcv.models]
good = fake_good_plugin
broken = fake_broken_plugin
missing = no_such_module_xyz_123

[mindcv.layers]
TinyLayer = fake_good_plugin:TinyLayer
DropPath = fake_good_plugin:OtherDropPath
NoSuchAttr = fake_good_plugin:NoSuchAttr
"""


@pytest.fixture
def third_party_plugins(tmp_path):
    """A fake distribution on PYTHONPATH with one good and several broken entry points."""
    root = tmp_path / "third_party"
    info = root / "fake_mindcv_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-mindcv-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(FAKE_ENTRY_POINTS)
    (root / "fake_good_plugin.py").write_text(FAKE_GOOD)
    (root / "fake_broken_plugin.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    return root


def test_broken_third_party_entry_points_warn_and_mindcv_still_imports(fresh_python, third_party_plugins):
    res, proc = fresh_python(_child("""
        import mindcv
        from mindcv.models import create_model, is_model, model_entrypoint
        from mindcv.models.layers import DropPath, TinyLayer
        from mindcv_halonet_autoload.loader import plugin_state
        state = plugin_state()
        done(tiny=type(create_model("fake_tiny_net", num_classes=3)).__name__,
             halonet=model_entrypoint("halonet_50t").__module__,
             droppath=DropPath.__module__, tiny_layer=TinyLayer.__module__,
             failed=sorted(k[1] for k in state["failed"]))
    """), PYTHONPATH=os.pathsep.join(filter(None, [str(third_party_plugins), os.environ.get("PYTHONPATH")])))
    assert res["tiny"] == "Dense"
    assert res["halonet"] == "mindcv_halonet.models.halonet"
    assert res["droppath"].startswith("mindcv.models.layers")  # MindCV's own layer is not shadowed
    assert res["tiny_layer"] == "fake_good_plugin"
    assert res["failed"] == ["NoSuchAttr", "broken", "missing"]
    err = proc.stderr
    assert "skipping broken MindCV plugin fake-mindcv-plugins (1 entry point: [mindcv.models] broken = fake_broken_plugin)" in err
    assert err.count("skipping broken MindCV plugin") == 3  # three different causes: one line each
    assert "this plugin is broken on purpose" in err
    assert "no_such_module_xyz_123" in err and "NoSuchAttr" in err
    assert "mindcv.models.layers.DropPath already is" in err
    assert "Traceback" not in err  # one warning line each, no traceback at the default level
