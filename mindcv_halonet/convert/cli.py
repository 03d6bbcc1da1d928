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

``mindcv-halonet-convert --check CKPT --model NAME [--num-classes N]`` instead checks an existing
checkpoint against a variant (:mod:`.check`): exit 0 only on an exact match.
"""
import argparse
import sys
from typing import List, Optional

from .errors import ConversionError
from .mindcv_builtin import FUNCTION_DIFFERENCES
from .pipeline import SOURCES, convert_state, resolve_variant, supported_pairings
from .progress import Progress
from .readers import EXTENSIONS, check_input_path, read_state, split_training_state
from .writer import check_output_path, save_checkpoint_atomic

_EPILOG = (
    "supported conversions (--model takes the source name or ours):\n  "
    + "\n  ".join(supported_pairings())
    + "\n\ninput formats:\n  "
    + "\n  ".join(f"--from {s}: {', '.join(exts)}" + ("  (.pth/.pt/.bin need torch)" if s == "timm" else "")
                   for s, exts in EXTENSIONS.items())
    + "\n\ncheck a checkpoint before using it (exit 0 only on an exact match):\n  "
    + "mindcv-halonet-convert --check CKPT --model NAME [--num-classes N]"
    + "\n\nMindCV's built-in halonet_50t (--from mindcv) needs --allow-approximate, because:\n"
    + FUNCTION_DIFFERENCES
)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--num-classes={text!r} is invalid; expected an integer >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mindcv-halonet-convert",
        description="Convert timm or MindCV HaloNet weights into a MindSpore checkpoint for mindcv-halonet.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES,
                        help="where the weights come from")
    parser.add_argument("--model", required=True,
                        help="variant: the source's name (e.g. halonet50ts) or ours (e.g. halonet_50t)")
    parser.add_argument("input", help="source weights file")
    parser.add_argument("-o", "--output", required=True, help="output MindSpore checkpoint (.ckpt)")
    parser.add_argument("--num-classes", type=_non_negative_int, default=None,
                        help="re-head for fine-tuning: drop the source classifier and start a new one with this "
                             "many classes (0 = no classifier); default: keep the source classifier")
    parser.add_argument("--allow-approximate", action="store_true",
                        help="allow a conversion whose result only approximates the source network's function "
                             "(MindCV's built-in halonet_50t; see below)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return parser


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
    state = read_state(args.input, args.source, progress=Progress("reading", enabled=show))
    training_state = []
    if args.source == "mindcv":
        state, training_state = split_training_state(state)
    result = convert_state(state, args.source, args.model, num_classes=args.num_classes,
                           allow_approximate=args.allow_approximate)
    if show:
        sys.stderr.write(f"writing {len(result.params)} tensors to {args.output}\n")
    size = save_checkpoint_atomic(result.params, args.output)
    _report(result, args, len(state) + len(training_state), training_state, size)
    return 0


def _wants_check(argv: List[str]) -> bool:
    return any(str(arg) == "--check" or str(arg).startswith("--check=") for arg in argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _wants_check(argv):
        from .check import main as check_main

        return check_main([str(arg) for arg in argv])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConversionError as exc:
        sys.stderr.write(f"mindcv-halonet-convert: error: {exc}\nnothing was written.\n")
        return 2
    except ValueError as exc:
        sys.stderr.write(f"mindcv-halonet-convert: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
