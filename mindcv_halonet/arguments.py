"""The argument checks every layer shares: one function per kind of argument.

Each raises ``ValueError`` naming the argument, its value and what is accepted. This module imports
nothing from the package, so any layer may use it (layers, weights, models, commands).
"""
import argparse

import numpy as np

__all__ = ["check_count", "check_fraction", "count_option"]


def check_count(name: str, value, minimum: int = 0, note: str = "") -> int:
    """An integer (``bool`` refused) >= ``minimum``; ``note`` is appended to the message (e.g. "(0 = no classifier)")."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}" + (f" {note}" if note else ""))
    return int(value)


def check_fraction(name: str, value) -> float:
    """A real number in [0, 1) (``bool`` and strings refused): dropout and drop-path rates."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r} is invalid; expected a number in [0, 1)")
    return float(value)


def count_option(option: str, minimum: int = 0):
    """An ``argparse`` ``type=`` for an integer option >= ``minimum``; its error names ``option`` and the text."""

    def parse(text: str) -> int:
        try:
            return check_count(option, int(text), minimum)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option}={text!r} is invalid; expected an integer >= {minimum}") from None

    parse.__name__ = f"integer >= {minimum}"
    return parse
