"""Start-up hook that makes MindCV load its plugins (entry points) when ``mindcv.models`` is imported.

Installed as ``mindcv_halonet_autoload.pth`` (Python < 3.15: its single ``import`` line calls
:func:`install`) and ``mindcv_halonet_autoload.start`` (Python >= 3.15, PEP 829: the entry point
``mindcv_halonet_autoload:install``). At interpreter start-up :func:`install` only puts a small
finder at the front of ``sys.meta_path``; it imports nothing but ``os`` and ``sys`` (both already
loaded), so mindspore and mindcv stay unloaded until the program itself imports mindcv.

When ``mindcv.models`` has finished executing, the finder's loader calls
:func:`mindcv_halonet_autoload.loader.load_plugins`, which imports every entry point of the
groups ``mindcv.layers`` and ``mindcv.models``.

The same finder also waits for MindOCR's vendored copy of MindCV's registry
(``mindocr.models.backbones.mindcv_models.registry``, which MindOCR's ``mindcv.<name>`` backbones are
looked up in): when that module has executed, :func:`mindcv_halonet_autoload.mindocr.register_models`
adds this plugin's models to it. Each target fires once; the finder removes itself when both did.

The hook is hand-written rather than taken from ``wrapt.register_post_import_hook``: importing
``wrapt`` (2.x) imports its whole package, asyncio and importlib.metadata included, measured at
~75-105 ms added to *every* Python process (pip, msrun workers, ...), while this module adds well
under a millisecond. The technique is the same (wrap the loader's ``exec_module``).

Set ``MINDCV_HALONET_DISABLE_AUTOLOAD=1`` to switch the hook off; ``import mindcv_halonet`` still
registers the plugin explicitly.
"""
import os
import sys

__all__ = [
    "install", "uninstall", "is_installed", "autoload_disabled", "ENV_DISABLE", "TARGET_MODULE", "MINDOCR_REGISTRY",
]

ENV_DISABLE = "MINDCV_HALONET_DISABLE_AUTOLOAD"
TARGET_MODULE = "mindcv.models"
MINDOCR_REGISTRY = "mindocr.models.backbones.mindcv_models.registry"

_DISABLE_VALUES = ("1", "true", "yes", "on")
_ENABLE_VALUES = ("", "0", "false", "no", "off")


def autoload_disabled(environ=None) -> bool:
    """True if ``MINDCV_HALONET_DISABLE_AUTOLOAD`` asks to switch automatic loading off.

    ``1/true/yes/on`` disable, ``0/false/no/off`` or unset enable (case-insensitive). Any other
    value disables too, with a message on stderr naming the variable, the value and what is
    accepted (it is read at interpreter start-up, where raising would break every Python process).
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_DISABLE, "")
    value = raw.strip().lower()
    if value in _ENABLE_VALUES:
        return False
    if value not in _DISABLE_VALUES:
        sys.stderr.write(
            f"mindcv_halonet_autoload: {ENV_DISABLE}={raw!r} is not recognised; accepted: "
            f"{'/'.join(_DISABLE_VALUES)} (disable) or {'/'.join(v for v in _ENABLE_VALUES if v)}/unset "
            "(enable). Treating it as 'disable'.\n"
        )
    return True


class _CallbackLoader:
    """Wraps the real loader of the target module; runs ``callback(module)`` after it executed."""

    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def __getattr__(self, name):  # get_code, is_package, get_resource_reader, ...
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # Make the module look as if we had never been there.
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        self._callback(module)


class _PostImportFinder:
    """Meta-path finder that answers only for ``target`` (and the names in ``more``, a dict
    {module name: callback}) by asking the other finders for its spec and wrapping that spec's
    loader. Costs one dict lookup for every other import."""

    mindcv_halonet_autoload = True  # marker, survives reloads of this module

    def __init__(self, target, callback, more=None):
        self.target = target
        self.callback = callback
        self.pending = {target: callback, **(more or {})}

    def find_spec(self, fullname, path=None, target=None):
        callback = self.pending.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or getattr(finder, "mindcv_halonet_autoload", False):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _CallbackLoader(spec.loader, callback)
        return spec


def _our_finders():
    return [f for f in sys.meta_path if getattr(f, "mindcv_halonet_autoload", False)]


def is_installed() -> bool:
    """True while the start-up hook waits for ``mindcv.models`` (or MindOCR's registry) to be imported."""
    return bool(_our_finders())


def _done(name) -> None:
    """``name`` was imported: stop waiting for it (and remove the finder once it waits for nothing)."""
    for finder in _our_finders():
        pending = getattr(finder, "pending", {})
        pending.pop(name, None)
        if not pending:
            try:
                sys.meta_path.remove(finder)
            except ValueError:
                pass


def uninstall() -> None:
    """Remove the hook from ``sys.meta_path`` (no-op if it is not there)."""
    for finder in _our_finders():
        try:
            sys.meta_path.remove(finder)
        except ValueError:
            pass


def _on_target_imported(module) -> None:
    _done(TARGET_MODULE)
    try:
        from mindcv_halonet_autoload.loader import load_plugins

        load_plugins()
    except Exception:  # never let a plugin problem break `import mindcv`
        import logging

        logging.getLogger("mindcv_halonet_autoload").warning(
            "mindcv-halonet: loading MindCV plugins after importing %s failed; MindCV works without them",
            TARGET_MODULE,
            exc_info=True,
        )


def _on_mindocr_registry_imported(module) -> None:
    _done(MINDOCR_REGISTRY)
    try:
        from mindcv_halonet_autoload.mindocr import register_models

        register_models(module)
    except Exception:  # never let a plugin problem break `import mindocr`
        import logging

        logging.getLogger("mindcv_halonet_autoload").warning(
            "mindcv-halonet: registering the HaloNets into %s failed; MindOCR works without them",
            MINDOCR_REGISTRY,
            exc_info=True,
        )


def install() -> bool:
    """Arrange for MindCV plugins to be loaded right after ``mindcv.models`` is imported (and for
    the HaloNets to be added to MindOCR's vendored registry right after it is imported).

    Called at start-up by the ``.pth``/``.start`` file. Idempotent. A target that is already
    imported is handled at once. Returns False if disabled by the environment.
    """
    if autoload_disabled():
        return False
    if is_installed():
        return True
    more = {MINDOCR_REGISTRY: _on_mindocr_registry_imported}
    finder = _PostImportFinder(TARGET_MODULE, _on_target_imported, more)
    sys.meta_path.insert(0, finder)
    for name, callback in list(finder.pending.items()):  # already imported: run now
        if name in sys.modules:
            callback(sys.modules[name])
    return True
