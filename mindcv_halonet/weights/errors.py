"""The error types of the weights layer, and the one way their messages list names.

* :class:`ConversionError` -- a state does not map one-to-one onto a target (missing / unexpected /
  mis-shaped names, all listed);
* :class:`InputFileError` -- a weights file exists but cannot be read;
* :class:`PretrainedWeightsError` -- ``pretrained=True`` could not provide weights (nothing cached);
* :class:`HubDownloadError` / :class:`HubUnreachableError` -- a Hub file could not be fetched or verified.

The first two are ``ValueError``\\ s (bad input); the others are ``RuntimeError``\\ s.
"""
from typing import Iterable, Sequence, Tuple

#: how many names of each kind a message spells out before summarising the rest
MAX_LISTED = 40


def format_listing(title: str, lines: Sequence[str]) -> str:
    """``"\\n  title (n):\\n    line\\n    ..."`` with at most :data:`MAX_LISTED` lines; "" for no lines."""
    if not lines:
        return ""
    shown = list(lines[:MAX_LISTED])
    if len(lines) > MAX_LISTED:
        shown.append(f"... and {len(lines) - MAX_LISTED} more")
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
        message += format_listing("missing: target parameters no source tensor fills", self.missing)
        message += format_listing("unexpected: source tensors no target parameter takes", self.unexpected)
        message += format_listing(
            "mis-shaped: name, source shape -> target shape",
            [f"{name}: {tuple(src)} -> {tuple(dst)}" for name, src, dst in self.mis_shaped])
        super().__init__(message)


class InputFileError(ValueError):
    """An input weights file that exists but cannot be read: truncated, corrupt or of another format.

    The message names the file, its format and what the reading library reported."""


class PretrainedWeightsError(RuntimeError):
    """``pretrained=True`` could not provide weights; nothing was cached."""


class HubDownloadError(RuntimeError):
    """The file could not be fetched or did not verify; nothing was cached."""


class HubUnreachableError(HubDownloadError):
    """No network use allowed (HF_HUB_OFFLINE) or the endpoint could not be reached."""
