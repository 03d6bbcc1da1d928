"""Load MindCV plugins declared as entry points, once per process.

Groups (any installed distribution may declare them):

* ``mindcv.layers``: ``Name = package.module:object``. The object is loaded and exported as
  ``mindcv.models.layers.Name`` (and appended to that module's ``__all__``), unless MindCV
  already has a different object under that name (then a warning is logged and it is skipped).
* ``mindcv.models``: ``name = package.module``. The module is imported; its ``@register_model``
  functions put the models into MindCV's registry.

After loading, every registry entry that replaced one of MindCV's own models is reported with one
warning line (a checkpoint of the built-in model does not load into the plugin's directly), the
``mindcv.models.<name>`` / ``mindcv.<name>`` attributes are pointed at the new function, and the
"has pretrained weights" flag is made to follow the new model's ``default_cfgs`` entry.

A broken entry point is skipped (traceback at DEBUG level); MindCV keeps working. Failures are
logged as one warning per distribution and cause, naming the entry points. Each entry point is attempted once per process, so calling :func:`load_plugins` again is
cheap and logs nothing new. This module imports nothing heavy at import time.
"""
import importlib
import logging
import sys
import threading

__all__ = ["LAYER_GROUP", "MODEL_GROUP", "load_plugins", "plugin_state", "replaced_models"]

LAYER_GROUP = "mindcv.layers"
MODEL_GROUP = "mindcv.models"

_logger = logging.getLogger("mindcv_halonet_autoload")
_lock = threading.RLock()


class _State:
    def __init__(self):
        self.loading = False
        self.attempted = set()  # (group, name, value)
        self.loaded = {}  # (group, name, value) -> distribution name
        self.failed = {}  # (group, name, value) -> "ExcType: message"
        self.baseline = None  # MindCV's registry {model name: function} before any plugin loaded
        self.replaced = {}  # model name -> "module.function" of the replacement


_state = _State()


def plugin_state() -> dict:
    """What the loader did so far (for tests and debugging)."""
    with _lock:
        return {
            "loaded": dict(_state.loaded),
            "failed": dict(_state.failed),
            "replaced": dict(_state.replaced),
        }


def replaced_models() -> dict:
    """``{model name: 'module.function'}`` of MindCV built-ins replaced by a plugin."""
    with _lock:
        return dict(_state.replaced)


def _entry_points(group):
    from importlib import metadata

    try:
        eps = metadata.entry_points(group=group)
    except TypeError:  # Python 3.9
        eps = metadata.entry_points().get(group, ())
    unique, seen = [], set()
    for ep in eps:  # the same distribution may be visible twice (e.g. an egg-info in the cwd)
        key = (group, ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "unknown distribution"


def _load_group(group, failures):
    """Load the group's entry points not attempted yet; failures go to ``failures``
    (``{(distribution, cause): [entry point, ...]}``), reported by :func:`_report_failures`."""
    loaded = []
    for ep in _entry_points(group):
        key = (group, ep.name, ep.value)
        if key in _state.attempted:
            continue
        _state.attempted.add(key)
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break MindCV
            _state.failed[key] = f"{type(exc).__name__}: {exc}"
            failures.setdefault((_dist_name(ep), _state.failed[key]), []).append(f"[{group}] {ep.name} = {ep.value}")
            _logger.debug("traceback of the failed entry point %s", ep.value, exc_info=True)
            continue
        _state.loaded[key] = _dist_name(ep)
        loaded.append((ep, obj))
    return loaded


def _report_failures(failures) -> None:
    """One warning per distribution and cause: a plugin whose shared module fails to import breaks
    all its entry points the same way, and its user needs the cause once, not once per entry point."""
    for (dist, cause), entry_points in failures.items():
        _logger.warning(
            "mindcv-halonet: skipping broken MindCV plugin %s (%d entry point%s: %s): %s; MindCV's own models "
            "are unaffected",
            dist, len(entry_points), "" if len(entry_points) == 1 else "s", ", ".join(entry_points), cause,
        )


def _export_layer(layers_module, ep, obj) -> None:
    missing = object()
    existing = getattr(layers_module, ep.name, missing)
    if existing is not missing and existing is not obj:
        _logger.warning(
            "mindcv-halonet: layer entry point %s = %s (from %s) not exported: mindcv.models.layers.%s "
            "already is %r",
            ep.name, ep.value, _dist_name(ep), ep.name, existing,
        )
        return
    setattr(layers_module, ep.name, obj)
    names = getattr(layers_module, "__all__", None)
    if isinstance(names, list) and ep.name not in names:
        names.append(ep.name)


def _qualname(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"


def _set_public_attr(module, name, new, only_if_is=None) -> None:
    """Set ``module.name = new`` (and list it in ``__all__``): if ``only_if_is`` is given, only
    when the attribute currently is that object, else only when the attribute does not exist."""
    if module is None:
        return
    current = getattr(module, name, None)
    if (current is not only_if_is) if only_if_is is not None else (current is not None):
        return
    setattr(module, name, new)
    names = getattr(module, "__all__", None)
    if isinstance(names, list) and name not in names:
        names.append(name)


def _sync_pretrained_flag(registry, name, fn) -> None:
    """After a replacement the registry still holds the built-in's config (and its URL)."""
    cfgs = getattr(sys.modules.get(fn.__module__), "default_cfgs", None) or {}
    cfg = cfgs.get(name)
    pretrained_cfgs = getattr(registry, "_model_pretrained_cfgs", None)
    has_pretrained = getattr(registry, "_model_has_pretrained", None)
    if isinstance(pretrained_cfgs, dict):
        if cfg is None:
            pretrained_cfgs.pop(name, None)
        else:
            pretrained_cfgs[name] = cfg
    if isinstance(has_pretrained, set):
        if cfg is not None and cfg.get("url"):
            has_pretrained.add(name)
        else:
            has_pretrained.discard(name)


def _reconcile_models(registry) -> None:
    entrypoints = getattr(registry, "_model_entrypoints", None)
    if not isinstance(entrypoints, dict) or _state.baseline is None:
        return
    models_pkg = sys.modules.get("mindcv.models")
    mindcv_pkg = sys.modules.get("mindcv")
    for name, fn in list(entrypoints.items()):
        old = _state.baseline.get(name)
        if old is None:  # a new model: expose it like MindCV's own (`mindcv.models.<name>`)
            _set_public_attr(models_pkg, name, fn)
            continue
        if fn is old or name in _state.replaced:
            continue
        _state.replaced[name] = _qualname(fn)
        _logger.warning(
            "mindcv-halonet: model '%s' from %s replaces MindCV's built-in %s in the model registry "
            "(checkpoints of the built-in model do not load into it directly)",
            name, fn.__module__, _qualname(old),
        )
        _set_public_attr(models_pkg, name, fn, only_if_is=old)
        _set_public_attr(mindcv_pkg, name, fn, only_if_is=old)
        _sync_pretrained_flag(registry, name, fn)


def load_plugins() -> dict:
    """Import every ``mindcv.layers`` and ``mindcv.models`` entry point (once per process).

    Imports ``mindcv.models`` first if needed. Re-entrant calls (a plugin importing
    ``mindcv_halonet`` while it is being loaded) return at once. Returns :func:`plugin_state`.
    """
    importlib.import_module("mindcv.models")  # may itself fire the start-up hook
    registry = importlib.import_module("mindcv.models.registry")
    layers_module = importlib.import_module("mindcv.models.layers")
    with _lock:
        if _state.loading:
            return plugin_state()
        if _state.baseline is None:
            _state.baseline = dict(getattr(registry, "_model_entrypoints", {}))
        _state.loading = True
        try:
            failures = {}
            for ep, obj in _load_group(LAYER_GROUP, failures):
                _export_layer(layers_module, ep, obj)
            _load_group(MODEL_GROUP, failures)
        finally:
            _state.loading = False
        _report_failures(failures)
        _reconcile_models(registry)
        return plugin_state()
