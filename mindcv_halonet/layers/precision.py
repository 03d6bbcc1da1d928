"""Float32Cell: a cell that keeps float32 under MindSpore AMP. The plugin's only private-API use.

MindSpore marks a cell's precision in its C++ part (``mindspore._c_expression.Cell_``) and names the
marks with ``mindspore._c_expression.MixedPrecisionType``. Both are private: a release may rename them.
This module is the one place that imports them, and it does so guarded: if they are missing, the
plugin still imports, :class:`Float32Cell` keeps the documented ``add_flags`` interception (what
``to_float`` uses in MindSpore 2.7-2.10), and one ``RuntimeWarning`` names what is missing.
``PRIVATE_API_MISSING`` then holds the cause (``None`` when everything is there).

:func:`precision_mode_set_by_api` reads, also guarded, the Ascend ``precision_mode`` set through
``mindspore.device_context.ascend.op_precision.precision_mode`` (stored only in a private C++ object, which
CPU builds do not have) and :func:`ascend_soc_version` the chip as MindSpore's own amp code reads it;
``precision_guard`` uses both.
"""
import warnings

import mindspore as ms
from mindspore import nn

__all__ = ["Float32Cell", "PRIVATE_API_MISSING", "ascend_soc_version", "precision_mode_set_by_api"]

try:  # what nn.Cell's precision setters use; private, so guarded
    from mindspore._c_expression import Cell_, MixedPrecisionType
except ImportError as _exc:  # a release that renamed them
    Cell_ = MixedPrecisionType = None
    PRIVATE_API_MISSING = f"{type(_exc).__name__}: {_exc}"
    warnings.warn(
        "mindcv-halonet: mindspore._c_expression.Cell_ / MixedPrecisionType are not available in this "
        f"MindSpore release ({PRIVATE_API_MISSING}); the attention logits and softmax stay float32 through "
        "the documented add_flags path only (what to_float uses in MindSpore 2.7-2.10)",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    PRIVATE_API_MISSING = None


def _float32_instead(mixed_type):
    """``MixedPrecisionType.FP16``/``BF16`` -> ``FP32``; anything else (FP32, NOTSET) unchanged."""
    lowered = {getattr(MixedPrecisionType, name, None) for name in ("FP16", "BF16")} - {None}
    return MixedPrecisionType.FP32 if mixed_type in lowered else mixed_type


class Float32Cell(nn.Cell):
    """A cell that always computes in float32: a request from an enclosing ``to_float(float16)`` /
    ``to_float(bfloat16)`` (MindSpore AMP O2/O3) is turned into float32 for this cell and its children.

    MindSpore marks a cell's precision in its C++ part (``Cell_.set_mixed_precision_type``; Graph
    mode) and, in 2.x, also in the Python attribute ``mixed_precision_type`` (PyNative). How
    ``to_float`` reaches a sub-cell depends on the release:

    * 2.7-2.10 (and recent 2.x): ``to_float`` -> ``add_flags_recursive(fp16=True)`` -> ``add_flags`` on
      every cell -> ``_add_mixed_precision_flag``. Intercepted in :meth:`add_flags` (public API only).
    * older releases (2.0 and around): ``to_float`` and ``add_flags_recursive`` call
      ``_set_mixed_precision_type_recursive(MixedPrecisionType.FP16)``, which sets the C++ mark and
      recurses through the same method of each child, never through ``add_flags``. Intercepted in
      :meth:`_set_mixed_precision_type_recursive` (needs the private names; without them it asks for
      float32 through ``add_flags_recursive``).

    :meth:`to_float` called on this cell itself asks for float32 whatever the argument.
    """

    def add_flags(self, **flags):
        if flags.get("fp16") or flags.get("bf16"):
            flags = dict(flags, fp16=False, bf16=False, fp32=True)
        return super().add_flags(**flags)

    def _set_mixed_precision_type_recursive(self, mixed_type):
        if Cell_ is None or MixedPrecisionType is None:  # cannot read the request: float32 is what we want anyway
            self.add_flags_recursive(fp32=True)
            return
        mixed_type = _float32_instead(mixed_type)
        Cell_.set_mixed_precision_type(self, mixed_type)
        if "mixed_precision_type" in self.__dict__:  # the Python-side mark of 2.x (PyNative reads it)
            self.mixed_precision_type = mixed_type
        for cell in self.cells():
            setter = getattr(cell, "_set_mixed_precision_type_recursive", None)
            if setter is not None:
                setter(mixed_type)
            else:
                cell.add_flags_recursive(fp32=mixed_type == MixedPrecisionType.FP32)

    def to_float(self, dst_type):
        return super().to_float(ms.float32)


def precision_mode_set_by_api():
    """The ``precision_mode`` set with ``mindspore.device_context.ascend.op_precision.precision_mode``, or
    ``None`` (not set, or this build has no ``AscendOpPrecisionConf``: CPU/GPU builds, other releases)."""
    try:
        from mindspore._c_expression import AscendOpPrecisionConf

        conf = AscendOpPrecisionConf.get_instance()
        return conf.precision_mode() if conf.is_precision_mode_configured() else None
    except Exception:  # private API: absent or changed means "cannot tell"
        return None


def ascend_soc_version():
    """MindSpore's name of the Ascend chip (``'ascend910'`` = 910A, ``'ascend910b'``, ``'ascend910_93'``, ...;
    what ``mindspore.amp`` and ``TrainOneStepWithLossScaleCell`` read), or ``None`` if unavailable."""
    try:
        from mindspore._c_expression import MSContext

        return MSContext.get_instance().get_ascend_soc_version() or None
    except Exception:  # private API: absent or changed means "cannot tell"
        return None
