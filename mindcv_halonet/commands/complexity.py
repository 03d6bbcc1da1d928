"""``python -m mindcv_halonet.commands.complexity [variant ...]``: Markdown rows of parameters and GMACs
at each variant's default input size (all variants if none given; the large ones take minutes on a CPU).

The counting rules are :func:`mindcv_halonet.models.complexity.count_macs`'s."""
import argparse
import sys
from typing import List, Optional

from mindcv_halonet.models import halonet
from mindcv_halonet.models.complexity import count_macs

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mindcv_halonet.commands.complexity", description=__doc__)
    parser.add_argument("variants", nargs="*", default=sorted(halonet.model_specs))
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in halonet.model_specs]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; expected some of {sorted(halonet.model_specs)}")
    print("| variant | params | GMACs | image size |\n|---|---:|---:|---:|")
    for name in args.variants:
        size = tuple(halonet.default_cfgs[name]["input_size"])
        net = getattr(halonet, name)()
        params = sum(p.size for p in net.trainable_params())
        print(f"| `{name}` | {params:,} | {count_macs(net, size) / 1e9:.2f} | {size[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
