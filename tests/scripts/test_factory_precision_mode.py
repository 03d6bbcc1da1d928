"""scripts/factory_train.py --ascend-precision-mode: checked before any work, set in ascend_config."""
import pytest

from tests.scripts import load_script


def _factory_train():
    return load_script("factory_train")


def test_mode_is_checked_before_any_work():
    ft = _factory_train()
    ft.check_ascend_precision_mode(None, "CPU")  # not given: nothing to check
    ft.check_ascend_precision_mode("must_keep_origin_dtype", "Ascend")
    with pytest.raises(ValueError, match=r"--ascend-precision-mode='fp8' is invalid; accepted: force_fp16, "):
        ft.check_ascend_precision_mode("fp8", "Ascend")
    with pytest.raises(ValueError, match=r"needs device_target='Ascend' \(got 'CPU'\)"):
        ft.check_ascend_precision_mode("force_fp32", "CPU")


def test_mode_goes_into_ascend_config(monkeypatch):
    import mindspore as ms

    ft = _factory_train()
    calls = []
    monkeypatch.setattr(ms, "set_context", lambda **kw: calls.append(kw))
    ft.set_ascend_precision_mode(None)
    ft.set_ascend_precision_mode("must_keep_origin_dtype")
    assert calls == [{"ascend_config": {"precision_mode": "must_keep_origin_dtype"}}]


def test_command_line_option_and_train_refuses_it_on_cpu():
    ft = _factory_train()
    a, args = ft.cli_args(["--ascend-precision-mode", "must_keep_origin_dtype", "--set", "device_target=CPU"])
    assert a.ascend_precision_mode == "must_keep_origin_dtype"
    with pytest.raises(ValueError, match="needs device_target='Ascend'"):
        ft.train(args, ascend_precision_mode=a.ascend_precision_mode)  # before importing mindcv or building
    with pytest.raises(SystemExit):
        ft.cli_args(["--ascend-precision-mode", "fp8"])
