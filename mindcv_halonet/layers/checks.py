"""Input checks for ``construct``: a clear error naming the cell, the input and what it accepts.

Shapes and dtypes are static in Graph mode, so :func:`check_image_input` is a ``constexpr``: in
Graph mode it runs once, while the graph is compiled (the error is raised at compile time and the
compiled graph contains no trace of the check); in PyNative mode it is a plain Python call on the
tensor's shape and dtype (a few microseconds per forward, no device work).

Accepted dtypes: float32, float16 and bfloat16 -- the dtypes MindSpore's mixed precision
(``to_float`` / AMP O1-O3) gives a network. float64 is rejected: the parameters are float32 and
Ascend's Conv2D has no float64 kernel, so a float64 input either fails inside the first
convolution with an unrelated message or silently differs between backends.
"""
import mindspore as ms
from mindspore.ops import constexpr

__all__ = ["ACCEPTED_DTYPES", "check_image_input", "image_input_error"]

# (bfloat16 only where the release has it)
ACCEPTED_DTYPES = tuple(getattr(ms, name) for name in ("float32", "float16", "bfloat16") if hasattr(ms, name))
_ACCEPTED_TEXT = "float32, float16 or bfloat16"


def image_input_error(shape, dtype, owner: str, channels: int, channels_name: str, min_size: int = 1,
                      min_size_reason: str = ""):
    """The error for an input of ``shape``/``dtype`` given to ``owner``, or None if it is accepted.

    ``channels``: the channel count ``owner`` was built for; ``channels_name``: the constructor
    argument that set it (``dim`` for HaloAttention, ``in_channels`` for a network). ``min_size``:
    the smallest H and W ``owner`` can compute (``min_size_reason`` says why)."""
    shape = tuple(shape)
    if len(shape) != 4:
        return ValueError(
            f"{owner}: input has shape {shape} (rank {len(shape)}); expected a 4-D (B, C, H, W) tensor "
            f"with C = {channels_name}={channels}")
    c = shape[1]
    if c >= 0 and c != channels:  # -1: a dynamic axis, unknown until run time
        return ValueError(
            f"{owner}: input has {c} channels (shape {shape}); expected {channels_name}={channels} channels, "
            f"i.e. a (B, {channels}, H, W) tensor")
    if any(0 <= d < 1 for d in shape):
        return ValueError(f"{owner}: input has shape {shape} with an empty axis; expected B, H, W >= 1")
    if any(0 <= d < min_size for d in shape[2:]):
        return ValueError(f"{owner}: input is {shape[2]}x{shape[3]} (shape {shape}); expected H and W >= {min_size}"
                          + (f" ({min_size_reason})" if min_size_reason else ""))
    if dtype not in ACCEPTED_DTYPES:
        return TypeError(f"{owner}: input has dtype {dtype}; expected {_ACCEPTED_TEXT}")
    return None


@constexpr
def check_image_input(shape, dtype, owner: str, channels: int, channels_name: str, min_size: int = 1,
                      min_size_reason: str = "") -> bool:
    """Raise (ValueError for rank/channels/empty axes, TypeError for the dtype) unless the input fits.

    Call it first thing in ``construct``: ``check_image_input(x.shape, x.dtype, name, dim, "dim")``.
    """
    error = image_input_error(shape, dtype, owner, channels, channels_name, min_size, min_size_reason)
    if error is not None:
        raise error
    return True
