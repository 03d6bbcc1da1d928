"""A MindSpore release without the private names, and a plugin that cannot load at all.

Simulated in fresh interpreters: mindspore is imported, then ``Cell_`` and ``MixedPrecisionType`` are
deleted from ``mindspore._c_expression`` (what a release that renamed them looks like to the plugin),
then ``mindcv.models`` is imported, which fires the start-up hook.
"""
import pytest

from tests.plugin.test_autoregistration import _child

MISSING_WARNING = "mindspore._c_expression.Cell_ / MixedPrecisionType are not available"

DELETE_PRIVATE_NAMES = """
import mindspore, mindspore._c_expression as _ce
for _name in ("Cell_", "MixedPrecisionType"):
    delattr(_ce, _name)
"""

# A HaloAttention under O3 (every cell float16) fed a large input: float16 logits overflow (inf - inf =
# NaN in the softmax), float32 logits do not. PyNative: there a float16-marked cell casts the inputs of
# every op, so only Float32Cell's interception of add_flags keeps the logits float32.
O3_CHECK = """
import numpy as np
import mindspore as ms
from mindspore import Tensor
from mindcv_halonet.layers import HaloAttention
from mindcv_halonet.layers.precision import PRIVATE_API_MISSING

ms.set_context(mode=ms.PYNATIVE_MODE)

def o3_output(cls):
    ms.set_seed(3)
    layer = cls(dim=32, num_heads=4, block_size=4, halo_size=1)
    layer.set_train(False)
    x = Tensor((np.random.default_rng(5).standard_normal((1, 32, 8, 8)) * 1000).astype(np.float32))
    ref = layer(x).asnumpy()
    layer.to_float(ms.float16)  # what amp_level O3 does to the network (before casting its output back)
    y = layer(x)
    return str(y.dtype), y.asnumpy().astype(np.float64), ref.astype(np.float64)

dtype, y, ref = o3_output(HaloAttention)
rel_err = float(np.abs(y - ref).max() / np.abs(ref).max()) if np.all(np.isfinite(y)) else None

class Unprotected(HaloAttention):  # negative control: the same layer, its Float32Cells made plain
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from mindspore import nn
        for cell in (self.attend,):
            cell.add_flags = nn.Cell.add_flags.__get__(cell)
            cell.to_float = nn.Cell.to_float.__get__(cell)

_, y_plain, _ = o3_output(Unprotected)
"""


def test_private_names_missing_plugin_imports_with_one_warning_and_keeps_float32(fresh_python):
    res, proc = fresh_python(_child(DELETE_PRIVATE_NAMES + """
import warnings
warnings.simplefilter("default")
import mindcv.models
from mindcv.models import create_model
from mindcv_halonet_autoload.loader import plugin_state
halo = create_model("halonet_26t", num_classes=4)
resnet = create_model("resnet18", num_classes=4)
""" + O3_CHECK + """
done(halo=f"{type(halo).__module__}.{type(halo).__name__}", resnet=type(resnet).__name__,
     failed=plugin_state()["failed"], missing=PRIVATE_API_MISSING, dtype=dtype, rel_err=rel_err,
     plain_finite=bool(np.all(np.isfinite(y_plain))))
"""))
    assert res["halo"] == "mindcv_halonet.models.builder.HaloNet"
    assert res["resnet"] == "ResNet"
    assert res["failed"] == {}
    assert "Cell_" in res["missing"]
    assert proc.stderr.count(MISSING_WARNING) == 1, proc.stderr[-3000:]
    assert "skipping broken" not in proc.stderr
    # O3 really ran the layer in float16 ...
    assert res["dtype"] == "Float16"
    assert res["plain_finite"] is False, "negative control: float16 logits did not overflow, the check proves nothing"
    # ... and the logits and softmax stayed float32: finite, close to the float32 forward
    assert res["rel_err"] is not None and res["rel_err"] <= 5e-3, res


def test_with_the_private_names_there_is_no_warning(fresh_python):
    res, proc = fresh_python(_child("""
import mindcv.models
from mindcv_halonet.layers.precision import PRIVATE_API_MISSING, Cell_
from mindcv_halonet.layers.halo_attention import Float32Cell  # the old import path keeps working
from mindcv_halonet.layers import precision
done(missing=PRIVATE_API_MISSING, has_cell=Cell_ is not None, same=Float32Cell is precision.Float32Cell)
"""))
    assert res == {"missing": None, "has_cell": True, "same": True}
    assert MISSING_WARNING not in proc.stderr


@pytest.mark.parametrize("breaker", ["row_gather_missing", "runtime_error"])
def test_plugin_that_cannot_load_gives_one_message_and_mindcv_keeps_working(fresh_python, breaker):
    """Any import failure of the plugin's shared module breaks all its entry points the same way:
    one warning line naming the cause, and MindCV's own models (halonet_50t: its built-in) still build."""
    if breaker == "row_gather_missing":
        prep = 'sys.modules["mindcv_halonet.layers.row_gather"] = None\n'
        cause = "mindcv_halonet.layers.row_gather"
    else:
        prep = (
            "class _Broken:\n"
            "    def __getattr__(self, name):\n"
            "        raise RuntimeError('simulated plugin failure')\n"
            "sys.modules['mindcv_halonet.layers.row_gather'] = _Broken()\n"
        )
        cause = "simulated plugin failure"
    res, proc = fresh_python(_child(prep + """
import mindcv.models
from mindcv.models import create_model, is_model, model_entrypoint
from mindcv_halonet_autoload.loader import plugin_state
from mindcv_halonet_autoload.loader import LAYER_GROUP, MODEL_GROUP, _dist_name, _entry_points
ours = [ep for group in (LAYER_GROUP, MODEL_GROUP) for ep in _entry_points(group) if _dist_name(ep) == "mindcv-halonet"]
net = create_model("resnet18", num_classes=4)
done(resnet=type(net).__name__, halonet_26t=is_model("halonet_26t"), ours=len(ours),
     halonet_50t=model_entrypoint("halonet_50t").__module__, failed=len(plugin_state()["failed"]))
"""))
    assert res["resnet"] == "ResNet"
    assert res["halonet_26t"] is False
    assert res["halonet_50t"].startswith("mindcv.models")  # MindCV's built-in, untouched
    assert res["ours"] >= 3 and res["failed"] == res["ours"]  # every entry point of the plugin failed ...
    lines = [line for line in proc.stderr.splitlines() if "skipping broken MindCV plugin" in line]
    assert len(lines) == 1, proc.stderr[-3000:]  # ... and that is said once, with the cause
    assert f"{res['ours']} entry points" in lines[0] and cause in lines[0] and "mindcv-halonet" in lines[0]
