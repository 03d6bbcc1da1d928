"""A tiny progress counter printed to stderr (no third-party dependency)."""
import sys
from typing import Optional, TextIO


class Progress:
    """``progress(done, total)`` prints ``label: done/total (p%)`` about every ``step_percent`` percent.

    Usable directly as the ``progress`` callback of :func:`readers.read_state` and of the
    converter loops. ``enabled=False`` makes every call a no-op.
    """

    def __init__(self, label: str, enabled: bool = True, stream: Optional[TextIO] = None, step_percent: int = 10):
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.step = max(1, int(step_percent))
        self._next_percent = self.step

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        percent = 100 * done // total
        if percent >= self._next_percent or done == total:
            self.stream.write(f"{self.label}: {done}/{total} ({percent}%)\n")
            self.stream.flush()
            self._next_percent = (percent // self.step + 1) * self.step
