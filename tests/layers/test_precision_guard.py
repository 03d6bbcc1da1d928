"""The Ascend precision-mode guard, on CPU: what it reads (device, chip, configured mode) is substituted."""
import warnings

import pytest

from mindcv_halonet.layers import HaloAttention
from mindcv_halonet.layers import precision_guard as guard


@pytest.fixture
def reads(monkeypatch):
    """``reads(device, chip, mode)`` makes the guard see these, with its once-per-process flag reset."""
    monkeypatch.delenv(guard.ENV_NO_WARNING, raising=False)

    def set_reads(device="Ascend", chip=None, mode=None):
        monkeypatch.setattr(guard, "_warned", False)
        monkeypatch.setattr(guard, "_device_target", lambda: device)
        monkeypatch.setattr(guard, "_chip_name", lambda: chip)
        monkeypatch.setattr(guard, "_configured_precision_mode", lambda: mode)

    return set_reads


def _build_layer_and_collect():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HaloAttention(dim=16, num_heads=2, block_size=4, halo_size=1)
        HaloAttention(dim=16, num_heads=2, block_size=4, halo_size=1)  # a second build: no second warning
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "precision_mode" in str(w.message)]


@pytest.mark.parametrize("chip, mode, named", [
    ("ascend910", None, "'force_fp16', the default on this chip (ascend910)"),  # 910A default
    ("Ascend910ProB", None, "'force_fp16', the default on this chip"),
    ("ascend910b", "allow_fp32_to_fp16", "set to 'allow_fp32_to_fp16'"),  # 910B, set globally by a project
    ("ascend910_93", "force_fp16", "set to 'force_fp16'"),
    ("ascend910b", "allow_mix_precision", "set to 'allow_mix_precision'"),
    (None, "allow_fp32_to_bf16", "set to 'allow_fp32_to_bf16'"),
])
def test_warns_once_when_building_the_layer_with_a_lowering_mode(reads, chip, mode, named):
    reads(chip=chip, mode=mode)
    messages = _build_layer_and_collect()
    assert len(messages) == 1, messages
    text = messages[0]
    assert named in text
    assert "logits" in text and "softmax" in text  # what it does to this layer
    assert "must_keep_origin_dtype" in text  # what to set instead
    assert guard.ENV_NO_WARNING in text


@pytest.mark.parametrize("device, chip, mode", [
    ("Ascend", "ascend910b", None),  # A2 default must_keep_origin_dtype
    ("Ascend", "ascend910_93", None),
    ("Ascend", "ascend910", "must_keep_origin_dtype"),  # 910A with the recommended setting
    ("Ascend", "ascend910b", "force_fp32"),
    ("Ascend", None, None),  # chip unknown, nothing configured: cannot tell, stays quiet
    ("CPU", "ascend910", "force_fp16"),  # only Ascend is checked
    ("GPU", None, "force_fp16"),
])
def test_quiet_when_float32_holds_or_not_ascend(reads, device, chip, mode):
    reads(device=device, chip=chip, mode=mode)
    assert _build_layer_and_collect() == []


def test_environment_variable_switches_it_off(reads, monkeypatch):
    reads(chip="ascend910", mode=None)
    monkeypatch.setenv(guard.ENV_NO_WARNING, "1")
    assert _build_layer_and_collect() == []
    monkeypatch.setenv(guard.ENV_NO_WARNING, "0")
    assert len(_build_layer_and_collect()) == 1


def test_real_readers_on_this_cpu_machine():
    """Unsubstituted: the device is CPU, so nothing is read beyond it and nothing is said."""
    assert guard._device_target() == "CPU"
    assert guard.check_precision_mode() is None
