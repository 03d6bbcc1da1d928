"""Check a MindSpore checkpoint against one of this plugin's variants before a long run.

MindCV loads checkpoints leniently: ``create_model(..., checkpoint_path=p)`` skips a path that does
not exist (``if os.path.exists(checkpoint_path):`` with no else branch), and
``mindspore.load_param_into_net`` fills only the parameters whose names it finds, leaving the rest
at their random initial values, without raising. A typo in ``validate.py --ckpt_path`` or the
checkpoint of another variant therefore evaluates (or fine-tunes) a mostly random network.

:func:`check_checkpoint` reads the file, builds the target network (construction only), and
compares names, shapes and dtypes exactly, with the one strict match of the weights layer
(:func:`mindcv_halonet.weights.mapping.match_to_target`). From the command line::

    mindcv-halonet-check halonet_50t-300_2502.ckpt --model halonet_50t [--num-classes 1000]
    mindcv-halonet-convert --check halonet_50t-300_2502.ckpt --model halonet_50t    (the same)

prints the report and exits 0 only on an exact match (1 on a mismatch, 2 when the file cannot be
read or an argument is invalid).
"""
import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from mindcv_halonet.arguments import check_count, count_option
from mindcv_halonet.models.halonet import model_specs
from mindcv_halonet.weights.errors import ConversionError, format_listing
from mindcv_halonet.weights.mapping import match_to_target, network_spec
from mindcv_halonet.weights.readers import head_classes, read_checkpoint

from .common import build_network, error_exit

__all__ = ["CheckReport", "check_checkpoint", "main", "run"]

PROG = "mindcv-halonet-check"


@dataclass
class CheckReport:
    """What :func:`check_checkpoint` found. ``ok`` is True only for an exact match."""

    path: str
    variant: str
    num_classes: int
    num_tensors: int                                  # network tensors in the file
    missing: List[str] = field(default_factory=list)  # network parameters the file lacks
    unexpected: List[str] = field(default_factory=list)  # file tensors the network has no parameter for
    mis_shaped: List[Tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, file, network)
    dtype_mismatched: List[Tuple[str, str, str]] = field(default_factory=list)  # (name, file, network)
    ignored: List[str] = field(default_factory=list)  # optimizer / loop state and ema.* entries

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped or self.dtype_mismatched)

    def format(self) -> str:
        target = f"{self.variant} (num_classes={self.num_classes})"
        if self.ok:
            text = (f"OK: {self.path} matches {target} exactly: {self.num_tensors} parameters and "
                    f"BatchNorm statistics, names, shapes and dtypes")
        else:
            text = (f"MISMATCH: {self.path} does not match {target}: {len(self.missing)} missing, "
                    f"{len(self.unexpected)} unexpected, {len(self.mis_shaped)} mis-shaped, "
                    f"{len(self.dtype_mismatched)} with another dtype; "
                    + ("MindSpore's load_param_into_net would raise on the mis-shaped names"
                       if self.mis_shaped else
                       "MindCV's load_param_into_net would load it partly without an error, leaving the "
                       "missing parameters at their random initial values"))
            text += format_listing("missing: network parameters the checkpoint lacks", self.missing)
            text += format_listing("unexpected: checkpoint tensors the network has no parameter for", self.unexpected)
            text += format_listing("mis-shaped: name, checkpoint shape -> network shape",
                             [f"{n}: {tuple(a)} -> {tuple(b)}" for n, a, b in self.mis_shaped])
            text += format_listing("dtype: name, checkpoint dtype -> network dtype",
                             [f"{n}: {a} -> {b}" for n, a, b in self.dtype_mismatched])
        if self.ignored:
            text += (f"\nignored {len(self.ignored)} optimizer/training-loop/EMA entries "
                     f"(e.g. {', '.join(self.ignored[:3])})")
        return text


def check_checkpoint(path: str, model: str, num_classes: Optional[int] = None) -> CheckReport:
    """Compare the checkpoint at ``path`` with our variant ``model`` (e.g. ``"halonet_50t"``).

    ``num_classes``: the classifier size you will build the network with (as passed to
    ``create_model`` / ``validate.py --num_classes``); None takes it from the checkpoint's
    classifier (``head.fc.weight``; 0 if it has none).

    Returns a :class:`CheckReport` (``report.ok``, ``report.format()``). Raises ``ValueError`` for
    an unknown ``model`` or bad ``num_classes``, for a path that does not exist or is not a
    ``.ckpt``, and (:class:`~mindcv_halonet.weights.errors.InputFileError`) for a truncated or
    corrupt file -- before the network is built.
    """
    if model not in model_specs:
        raise ValueError(f"model={model!r} is not a mindcv-halonet variant; expected one of {', '.join(sorted(model_specs))}")
    if num_classes is not None:
        check_count("num_classes", num_classes, 0, "or None")
    if not str(path).lower().endswith(".ckpt"):
        raise ValueError(f"checkpoint={str(path)!r} is not accepted; expected a MindSpore .ckpt file")
    if not os.path.isfile(path):
        raise ValueError(
            f"checkpoint={str(path)!r} does not exist or is not a file; expected an existing .ckpt file "
            f"(MindCV's create_model(checkpoint_path=...) would skip this path silently and keep random weights)")
    state, ignored = read_checkpoint(str(path))
    if num_classes is None:
        num_classes = head_classes(state) or 0
    spec = network_spec(build_network(model, int(num_classes)))

    report = CheckReport(path=str(path), variant=model, num_classes=int(num_classes), num_tensors=len(state),
                         ignored=ignored)
    try:
        _, reshaped = match_to_target(state, spec, description=str(path))
    except ConversionError as exc:
        report.missing, report.unexpected = exc.missing, exc.unexpected
        report.mis_shaped = list(exc.mis_shaped)
        reshaped = []
    # load_param_into_net needs equal shapes: a difference in length-1 axes (which the converter
    # bridges) is a mismatch here
    report.mis_shaped += [(name, tuple(state[name].shape), tuple(spec[name][0])) for name in reshaped]
    for name, (shape, dtype) in spec.items():
        value = state.get(name)
        if value is not None and tuple(value.shape) == tuple(shape) and np.dtype(value.dtype) != dtype:
            report.dtype_mismatched.append((name, str(np.dtype(value.dtype)), str(dtype)))
    report.mis_shaped.sort()
    return report


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check a MindSpore checkpoint against a mindcv-halonet variant: missing, unexpected, "
                    "mis-shaped and dtype-mismatched parameters. Exit 0 only on an exact match, 1 on a mismatch, "
                    "2 when the file cannot be read or an argument is invalid.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="the checkpoint (.ckpt) to check")
    parser.add_argument("--model", required=True, help="our variant, e.g. halonet_50t")
    parser.add_argument("--num-classes", type=count_option("--num-classes"), default=None,
                        help="classifier size you will use (default: the checkpoint's own)")
    return parser


def run(path: str, model: str, num_classes: Optional[int] = None, prog: str = PROG) -> int:
    """Check and print the report. Exit status: 0 exact match, 1 mismatch, 2 unreadable file / bad argument."""
    try:
        report = check_checkpoint(path, model, num_classes)
    except ValueError as exc:
        return error_exit(prog, exc)
    (sys.stdout if report.ok else sys.stderr).write(report.format() + "\n")
    return 0 if report.ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    """``mindcv-halonet-check CKPT --model NAME [--num-classes N]``."""
    args = build_parser().parse_args(argv)
    return run(args.checkpoint, args.model, args.num_classes)


if __name__ == "__main__":
    sys.exit(main())
