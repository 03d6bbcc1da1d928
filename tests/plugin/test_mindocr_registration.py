"""The MindOCR side of the start-up hook, without MindOCR (runs on every MindSpore; the real mindocr
0.5.0 test is tests/downstream, in the version matrix's 2.7.0 environment).

* A stand-in package ``mindocr.models.backbones.mindcv_models.registry`` (the vendored registry's
  ``register_model`` / ``_model_entrypoints`` contract) is imported in a fresh interpreter: the hook
  registers all 12 variants into it, and nothing heavy was imported before that module was.
* ``to_mindocr_names`` gives exactly the parameter names a ``flatten_sequential`` feature wrapper
  produces (MindCV's ``FeatureExtractWrapper``, whose naming MindOCR's vendored copy shares).
"""
import textwrap

import pytest

from tests.conftest import RESULT_MARK

FAKE_REGISTRY = """
_model_entrypoints = {}
def register_model(fn):
    _model_entrypoints[fn.__name__] = fn
    return fn
"""


@pytest.fixture
def fake_mindocr(tmp_path):
    root = tmp_path / "site"
    pkg = root / "mindocr" / "models" / "backbones" / "mindcv_models"
    pkg.mkdir(parents=True)
    for d in (root / "mindocr", root / "mindocr" / "models", root / "mindocr" / "models" / "backbones", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "registry.py").write_text(FAKE_REGISTRY)
    return root


def test_hook_registers_the_halonets_into_mindocrs_registry(fresh_python, fake_mindocr):
    import os

    code = textwrap.dedent(f"""
        import json, sys
        heavy = sorted(m for m in ("mindspore", "mindcv", "mindcv_halonet") if m in sys.modules)
        from mindocr.models.backbones.mindcv_models import registry
        fn = registry._model_entrypoints["halonet_26t"]
        print({RESULT_MARK!r} + json.dumps(dict(
            heavy_before=heavy, names=sorted(registry._model_entrypoints), module=fn.__module__,
            hook_left=any(getattr(f, "mindcv_halonet_autoload", False) for f in sys.meta_path))))
    """)
    pythonpath = os.pathsep.join(p for p in (str(fake_mindocr), os.environ.get("PYTHONPATH", "")) if p)
    res, _ = fresh_python(code, PYTHONPATH=pythonpath)
    assert res["heavy_before"] == []
    assert res["names"] == sorted([
        "halonet_50t", "halonet_26t", "sehalonet_33ts", "eca_halonext_26ts", "halonet_h0", "halonet_h1",
        "halonet_h2", "halonet_h3", "halonet_h4", "halonet_h5", "halonet_h6", "halonet_h7"])
    assert res["module"] == "mindcv_halonet_autoload.mindocr"
    assert res["hook_left"] is False  # both targets fired: the finder removed itself


def test_to_mindocr_names_matches_the_feature_wrappers_names():  # builds only, runs nothing
    from mindcv.models import create_model
    from mindcv.models.features import FeatureExtractWrapper

    from mindcv_halonet_autoload.mindocr import to_mindocr_names

    net = create_model("halonet_26t")
    plain = {p.name: p for p in net.get_parameters()}
    wrapped = FeatureExtractWrapper(net, out_indices=[1, 2, 3, 4])
    renamed = to_mindocr_names(plain)
    wrapped_names = {p.name for p in wrapped.get_parameters()}
    assert wrapped_names <= set(renamed)
    assert set(renamed) - wrapped_names == {"head.fc.weight", "head.fc.bias"}
    assert all(renamed[p.name] is p for p in wrapped.get_parameters())  # the same tensors, renamed

