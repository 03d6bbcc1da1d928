"""The one error type of the converter: a ``ValueError`` that lists what did not match."""
from typing import Iterable, Sequence, Tuple

# how many keys of each kind an error message spells out before summarising the rest
_MAX_LISTED = 40


def _listing(title: str, lines: Sequence[str]) -> str:
    if not lines:
        return ""
    shown = list(lines[:_MAX_LISTED])
    if len(lines) > _MAX_LISTED:
        shown.append(f"... and {len(lines) - _MAX_LISTED} more")
    return f"\n  {title} ({len(lines)}):\n    " + "\n    ".join(shown)


class ConversionError(ValueError):
    """Raised when a state dict cannot be mapped one-to-one onto a target network.

    Attributes:
        missing: target names that no source tensor fills.
        unexpected: source names (after renaming) that no target parameter takes.
        mis_shaped: ``(name, source_shape, target_shape)`` for names present on both sides.
    """

    def __init__(self, summary: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 mis_shaped: Iterable[Tuple[str, tuple, tuple]] = ()):
        self.summary = summary
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mis_shaped = sorted(mis_shaped)
        message = summary
        message += _listing("missing: target parameters no source tensor fills", self.missing)
        message += _listing("unexpected: source tensors no target parameter takes", self.unexpected)
        message += _listing(
            "mis-shaped: name, source shape -> target shape",
            [f"{name}: {tuple(src)} -> {tuple(dst)}" for name, src, dst in self.mis_shaped])
        super().__init__(message)


class InputFileError(ValueError):
    """An input weights file that exists but cannot be read: truncated, corrupt or of another format.

    The message names the file, its format and what the reading library reported."""
