"""HaloNet for MindCV: blocked local self-attention with halos, as a MindCV plugin.

Installing the distribution is enough: its start-up hook (see :mod:`mindcv_halonet_autoload`)
registers the models into MindCV's registry when ``mindcv.models`` is imported. Importing this
package is the explicit fallback (e.g. with ``MINDCV_HALONET_DISABLE_AUTOLOAD=1``); it runs the
same idempotent loader.
"""
__version__ = "0.1.0"

# Order matters: MindCV first (if the start-up hook is installed it loads every plugin, this one
# included, right here), then the loader records MindCV's built-in models before our own modules
# register theirs, so a replaced built-in is reported even without installed entry points.
import mindcv.models  # noqa: E402,F401  isort: skip
from mindcv_halonet_autoload.loader import load_plugins  # noqa: E402  isort: skip

load_plugins()

from . import layers, models  # noqa: E402
from .layers import HaloAttention, RelPosEmbed  # noqa: E402

load_plugins()

__all__ = ["__version__", "HaloAttention", "RelPosEmbed", "layers", "models", "load_plugins"]
