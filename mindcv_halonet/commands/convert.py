"""``mindcv-halonet-convert``: timm or MindCV HaloNet weights -> a checkpoint for this plugin.

Examples::

    mindcv-halonet-convert --from timm --model halonet50ts model.safetensors -o halonet_50t_timm.ckpt
    mindcv-halonet-convert --from timm --model halonet_26t halonet26t_a1h_256-3083328c.pth -o h26t.ckpt
    mindcv-halonet-convert --from timm --model halonet_50t w.safetensors -o h50t_10cls.ckpt --num-classes 10
    mindcv-halonet-convert --from mindcv --model halonet_50t halonet_50t-533da6be.ckpt -o h50t.ckpt --allow-approximate

Every argument is checked before anything is read; the conversion is strict (every source
tensor used, every target parameter and BatchNorm statistic filled, shapes equal) and on any
mismatch the error lists the missing, unexpected and mis-shaped names and no file is written.
The output is written atomically (temporary file + rename).

Checking an existing checkpoint against a variant is its own command, ``mindcv-halonet-check CKPT
--model NAME [--num-classes N]`` (:mod:`.check`); ``mindcv-halonet-convert --check CKPT --model NAME``
is the same command (an option of this parser, kept for the command lines already in use).
"""
import argparse
import sys
from typing import List, Optional

from mindcv_halonet.arguments import count_option
from mindcv_halonet.weights import pipeline
from mindcv_halonet.weights.errors import ConversionError
from mindcv_halonet.weights.files import check_output_path, save_checkpoint_atomic
from mindcv_halonet.weights.mindcv_builtin import FUNCTION_DIFFERENCES
from mindcv_halonet.weights.pipeline import SOURCES, resolve_variant, supported_pairings
from mindcv_halonet.weights.progress import Progress
from mindcv_halonet.weights.readers import EXTENSIONS, check_input_path, read_checkpoint, read_state

from . import check
from .common import build_network, error_exit

PROG = "mindcv-halonet-convert"

_EPILOG = (
    "supported conversions (--model takes the source name or ours):\n  "
    + "\n  ".join(supported_pairings())
    + "\n\ninput formats:\n  "
    + "\n  ".join(f"--from {s}: {', '.join(exts)}" + ("  (.pth/.pt/.bin need torch)" if s == "timm" else "")
                   for s, exts in EXTENSIONS.items())
    + "\n\ncheck a checkpoint before using it (exit 0 only on an exact match):\n  "
    + "mindcv-halonet-check CKPT --model NAME [--num-classes N]   (or: mindcv-halonet-convert --check CKPT ...)"
    + "\n\nMindCV's built-in halonet_50t (--from mindcv) needs --allow-approximate, because:\n"
    + FUNCTION_DIFFERENCES
)


def convert_state(state, source: str, model: str, num_classes: Optional[int] = None,
                  allow_approximate: bool = False, net=None) -> pipeline.ConversionResult:
    """:func:`mindcv_halonet.weights.convert_state` with the target network built through MindCV's
    registry when ``net`` is None (:func:`.common.build_network`, once)."""
    return pipeline.convert_state(state, source, model, num_classes=num_classes, allow_approximate=allow_approximate,
                                  net=net, build_net=build_network)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert timm or MindCV HaloNet weights into a MindSpore checkpoint for mindcv-halonet.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # --from / input / --output are required for a conversion; --check CKPT (the check command) takes none
    # of them, so their presence is checked after parsing (_required)
    parser.add_argument("--from", dest="source", choices=SOURCES, help="where the weights come from")
    parser.add_argument("--model", required=True,
                        help="variant: the source's name (e.g. halonet50ts) or ours (e.g. halonet_50t)")
    parser.add_argument("input", nargs="?", help="source weights file")
    parser.add_argument("-o", "--output", help="output MindSpore checkpoint (.ckpt)")
    parser.add_argument("--check", metavar="CKPT", default=None,
                        help="instead of converting, check CKPT against --model (= mindcv-halonet-check CKPT)")
    parser.add_argument("--num-classes", type=count_option("--num-classes"), default=None,
                        help="re-head for fine-tuning: drop the source classifier and start a new one with this "
                             "many classes (0 = no classifier); default: keep the source classifier")
    parser.add_argument("--allow-approximate", action="store_true",
                        help="allow a conversion whose result only approximates the source network's function "
                             "(MindCV's built-in halonet_50t; see below)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _required(parser: argparse.ArgumentParser, args) -> None:
    """argparse's "required" for the conversion arguments, and none of them beside --check."""
    conversion = {"--from": args.source, "input": args.input, "-o/--output": args.output}
    if args.check is not None:
        given = [name for name, value in conversion.items() if value is not None]
        given += [f"--{name.replace('_', '-')}" for name in ("allow_approximate", "overwrite") if getattr(args, name)]
        if given:
            parser.error(f"--check takes only --model and --num-classes; not {', '.join(given)}")
        return
    missing = [name for name, value in conversion.items() if value is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def _validate(args) -> None:
    """Every cheap check, before any file is read (raises ValueError naming the argument)."""
    try:
        resolve_variant(args.source, args.model)
    except ValueError as exc:
        raise ValueError(f"--model: {exc}") from None
    check_input_path(args.input, args.source)
    check_output_path(args.output, overwrite=args.overwrite)


def _report(result, args, n_source: int, training_state: List[str], size: int) -> None:
    out = sys.stdout
    out.write(f"converted {args.input} ({args.source} {result.source_variant}, {n_source} tensors) -> "
              f"{args.output} (mindcv-halonet {result.variant}, {len(result.params)} parameters and "
              f"BatchNorm statistics, {size / 2**20:.1f} MiB)\n")
    if training_state:
        out.write(f"ignored {len(training_state)} optimizer/training-loop entries of the checkpoint "
                  f"(e.g. {', '.join(training_state[:3])})\n")
    if result.dropped or result.reheaded:
        dropped = (f"dropped the source classifier ({result.source_num_classes} classes: {', '.join(result.dropped)})"
                   if result.dropped else "the source has no classifier")
        if result.reheaded:
            out.write(f"re-headed for {result.num_classes} classes: {dropped}; the new "
                      f"{', '.join(result.reheaded)} keep the network's initial values (train them)\n")
        else:
            out.write(f"{dropped}; the network has no classifier (num_classes=0)\n")
    if result.reshaped:
        out.write(f"reshaped {len(result.reshaped)} tensors by adding/removing length-1 axes only\n")
    if result.approximate:
        out.write("WARNING: approximate conversion (--allow-approximate): the converted network does NOT "
                  "compute the same function as the source; see --help.\n")
    out.write(f"use it with: create_model('{result.variant}', num_classes={result.num_classes}, "
              f"checkpoint_path='{args.output}') or validate.py --model {result.variant} "
              f"--num_classes {result.num_classes} --ckpt_path {args.output}\n")


def run(args) -> int:
    _validate(args)
    show = not args.quiet
    progress = Progress("reading", enabled=show)
    if args.source == "mindcv":  # a MindSpore checkpoint: optimizer / loop / EMA entries split off
        state, training_state = read_checkpoint(args.input, progress=progress)
    else:
        state, training_state = read_state(args.input, args.source, progress=progress), []
    result = convert_state(state, args.source, args.model, num_classes=args.num_classes,
                           allow_approximate=args.allow_approximate)
    if show:
        sys.stderr.write(f"writing {len(result.params)} tensors to {args.output}\n")
    size = save_checkpoint_atomic(result.params, args.output)
    _report(result, args, len(state) + len(training_state), training_state, size)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _required(parser, args)
    if args.check is not None:
        return check.run(args.check, args.model, args.num_classes, prog=PROG)
    try:
        return run(args)
    except ConversionError as exc:
        return error_exit(PROG, exc, written=True)
    except ValueError as exc:
        return error_exit(PROG, exc)


if __name__ == "__main__":
    sys.exit(main())
