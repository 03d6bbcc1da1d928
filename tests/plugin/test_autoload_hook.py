"""The start-up hook itself (in-process, no MindSpore): env switch, finder, loader wrapping."""
import sys
import types

import pytest

import mindcv_halonet_autoload as autoload


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " On "])
def test_disable_values(value):
    assert autoload.autoload_disabled({autoload.ENV_DISABLE: value}) is True


@pytest.mark.parametrize("value", [None, "", "0", "false", "No", "off"])
def test_enable_values(value):
    env = {} if value is None else {autoload.ENV_DISABLE: value}
    assert autoload.autoload_disabled(env) is False


def test_unrecognised_value_disables_and_says_why(capsys):
    assert autoload.autoload_disabled({autoload.ENV_DISABLE: "maybe"}) is True
    err = capsys.readouterr().err
    assert autoload.ENV_DISABLE in err and "'maybe'" in err and "accepted" in err


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A throw-away package ``hooktarget_pkg`` with a submodule ``target``."""
    pkg = tmp_path / "hooktarget_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "target.py").write_text("VALUE = 41\nVALUE += 1\n")
    (pkg / "broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "hooktarget_pkg"
    for name in [m for m in sys.modules if m.startswith("hooktarget_pkg")]:
        del sys.modules[name]


def _install_finder(target, calls):
    finder = autoload._PostImportFinder(target, lambda module: calls.append(module))
    sys.meta_path.insert(0, finder)
    return finder


def test_callback_runs_once_after_the_module_executed(fake_package):
    calls = []
    finder = _install_finder(f"{fake_package}.target", calls)
    try:
        import hooktarget_pkg  # noqa: F401  the parent package is not the target

        assert calls == []
        from hooktarget_pkg import target

        assert [m.__name__ for m in calls] == ["hooktarget_pkg.target"]
        assert calls[0].VALUE == 42  # the callback saw the fully executed module
        # the module carries the real loader, not the wrapper
        assert type(target.__loader__).__name__ == "SourceFileLoader"
        assert type(target.__spec__.loader).__name__ == "SourceFileLoader"
        import hooktarget_pkg.target  # noqa: F401  cached: no second call

        assert len(calls) == 1
    finally:
        sys.meta_path.remove(finder)


def test_failed_import_does_not_run_callback(fake_package):
    calls = []
    finder = _install_finder(f"{fake_package}.broken", calls)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            import hooktarget_pkg.broken  # noqa: F401
        assert calls == []
    finally:
        sys.meta_path.remove(finder)


def test_other_modules_are_not_touched(fake_package):
    calls = []
    finder = _install_finder("no_such_module_anywhere", calls)
    try:
        assert finder.find_spec("hooktarget_pkg.target") is None
        from hooktarget_pkg import target

        assert target.VALUE == 42 and calls == []
        assert finder.find_spec("no_such_module_anywhere") is None  # nothing else finds it either
    finally:
        sys.meta_path.remove(finder)


def test_install_is_idempotent_and_respects_the_switch(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not getattr(f, "mindcv_halonet_autoload", 0)])
    saved = sys.modules.pop(autoload.TARGET_MODULE, None)
    try:
        monkeypatch.setenv(autoload.ENV_DISABLE, "1")
        assert autoload.install() is False and not autoload.is_installed()
        monkeypatch.delenv(autoload.ENV_DISABLE)
        assert autoload.install() is True and autoload.install() is True
        assert sum(bool(getattr(f, "mindcv_halonet_autoload", 0)) for f in sys.meta_path) == 1
        assert sys.meta_path[0].target == "mindcv.models"
        autoload.uninstall()
        assert not autoload.is_installed()
    finally:
        if saved is not None:
            sys.modules[autoload.TARGET_MODULE] = saved


def test_hook_module_imports_only_os_and_sys():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(autoload))
    top_level = {
        alias.name
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [types.SimpleNamespace(name=node.module)])
    }
    assert top_level == {"os", "sys"}
