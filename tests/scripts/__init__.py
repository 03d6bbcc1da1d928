import importlib.util
import sys

from tests.conftest import SCRIPTS_DIR


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (its sibling scripts importable while it loads)."""
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", SCRIPTS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS_DIR))
    return module
