"""``mindcv-halonet-export``: a (trained) network -> a MINDIR or ONNX file for deployment.

Examples::

    mindcv-halonet-export --model halonet_26t --ckpt runs/demo/ckpt/halonet_26t-8_44.ckpt \\
        --image-size 32 --format MINDIR -o halonet_26t_digits.mindir
    python -m mindcv_halonet.commands.export --model halonet_50t --ckpt h50t.ckpt --image-size 224 --batch 1 \\
        --format ONNX -o halonet_50t_224.onnx

* MINDIR: MindSpore's graph format, for MindSpore Lite (``converter_lite``), MindSpore Serving and
  ``mindspore.load`` + ``nn.GraphCell``.
* ONNX: for onnxruntime, TensorRT, OpenVINO and other ONNX runtimes.

Every argument is checked before the network is built: the model name against MindCV's registry,
sizes > 0, the checkpoint file (it must then fill every parameter and BatchNorm statistic of the
network exactly; optimizer state saved by MindCV's training callback is ignored), the output path
(extension of the format, an existing writable directory, no existing file unless ``--overwrite``).
The network is exported in eval mode (``set_train(False)``) with a static input of
``batch x in_channels x H x W`` (float32). The file is written atomically: MindSpore writes into a
temporary directory beside the target, which is then moved into place; after a failure nothing is
left on disk and an existing target is untouched.
"""
import argparse
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple, Union

from mindcv_halonet.arguments import check_count
from mindcv_halonet.models.halonet import default_cfgs
from mindcv_halonet.weights.files import atomic_write, check_output_path
from mindcv_halonet.weights.mapping import load_into
from mindcv_halonet.weights.readers import head_classes, read_checkpoint

from .common import build_network, error_exit, registered_models

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx"}

__all__ = ["FORMATS", "check_export_args", "export_model", "main", "parse_image_size"]


def parse_image_size(value) -> Tuple[int, int]:
    """``224``, ``"224"``, ``"320x256"`` (H x W) or ``(320, 256)`` -> ``(H, W)``; both must be >= 1."""
    hw = None
    if isinstance(value, str):
        parts = value.lower().replace("*", "x").split("x")
        if 1 <= len(parts) <= 2 and all(p.strip().isdigit() for p in parts):
            hw = tuple(int(p) for p in parts)
    elif isinstance(value, int) and not isinstance(value, bool):
        hw = (value,)
    elif isinstance(value, (tuple, list)) and 1 <= len(value) <= 2:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            hw = tuple(value)
    if hw is None or min(hw) < 1:
        raise ValueError(f"image_size={value!r} is invalid; expected an integer >= 1 (e.g. 224) or HxW (e.g. 320x256)")
    return (hw[0], hw[-1])


def check_export_args(model, output, ckpt=None, num_classes=None, image_size=None, batch=1, file_format="MINDIR",
                      overwrite=False, in_channels=3) -> dict:
    """Validate every argument (raises ``ValueError`` naming it) without building anything; returns them
    normalised: ``image_size`` as ``(H, W)``, ``file_format`` upper-case, ``output`` absolute."""
    fmt = file_format.upper() if isinstance(file_format, str) else file_format
    if fmt not in FORMATS:
        raise ValueError(f"file_format={file_format!r} is invalid; expected one of {', '.join(FORMATS)}")
    names = registered_models()
    if model not in names:
        halo = [n for n in names if "halo" in n]
        raise ValueError(f"model={model!r} is not in MindCV's model registry; HaloNet variants: {', '.join(halo)} "
                         f"(any name of mindcv.models.list_models() is accepted)")
    if image_size is None:
        image_size = tuple(default_cfgs[model]["input_size"][1:]) if model in default_cfgs else (224, 224)
    hw = parse_image_size(image_size)
    check_count("batch", batch, 1)
    check_count("in_channels", in_channels, 1)
    if num_classes is not None:
        check_count("num_classes", num_classes, 0, "(0 = pooled features)")
    if ckpt is not None:
        if not isinstance(ckpt, str) or not ckpt.lower().endswith(".ckpt"):
            ext = os.path.splitext(ckpt)[1] if isinstance(ckpt, str) else ""
            raise ValueError(f"ckpt={ckpt!r} has extension {ext or '(none)'!r}; expected a MindSpore checkpoint "
                             f"(.ckpt; convert timm weights with mindcv-halonet-convert first)")
        if not os.path.isfile(ckpt):
            raise ValueError(f"ckpt={ckpt!r} does not exist or is not a file; expected an existing .ckpt file")
    out = check_output_path(output, FORMATS[fmt], overwrite, context=f" for format {fmt}")
    return dict(model=model, output=out, ckpt=ckpt, num_classes=num_classes, image_size=hw, batch=batch,
                file_format=fmt, overwrite=overwrite, in_channels=in_channels)


def build_for_export(model: str, num_classes: int, in_channels: int = 3, state=None, ckpt: str = ""):
    """Build through MindCV's registry, load ``state`` strictly (every parameter and BatchNorm statistic,
    nothing else), eval mode."""
    net = build_network(model, num_classes, in_channels)
    if state is not None:
        load_into(net, state, description=f"checkpoint {ckpt}")
    net.set_train(False)
    return net


def export_model(model: str, output: str, ckpt: Optional[str] = None, num_classes: Optional[int] = None,
                 image_size: Union[int, str, Sequence[int], None] = None, batch: int = 1, file_format: str = "MINDIR",
                 overwrite: bool = False, in_channels: int = 3, net=None) -> dict:
    """Export ``model`` (weights from ``ckpt``, random initialisation when None) to ``output``.

    ``num_classes`` defaults to the checkpoint's classifier size (1000 without a checkpoint).
    ``net``: export this already-built network instead (its weights as they are; ``model`` and
    ``num_classes`` then only describe it). Returns ``{path, bytes, seconds, input_shape, ...}``.
    """
    a = check_export_args(model, output, ckpt, num_classes, image_size, batch, file_format, overwrite, in_channels)
    import numpy as np

    import mindspore as ms

    t0 = time.perf_counter()
    state, num = None, a["num_classes"]
    if net is None:
        if a["ckpt"] is not None:
            state, _ = read_checkpoint(a["ckpt"])
            ckpt_classes = head_classes(state)
            if num is None:
                num = ckpt_classes if ckpt_classes is not None else 1000
        num = 1000 if num is None else num
        net = build_for_export(a["model"], num, a["in_channels"], state, a["ckpt"] or "")
    net.set_train(False)
    shape = (a["batch"], a["in_channels"], *a["image_size"])
    dummy = ms.Tensor(np.zeros(shape, dtype=np.float32))

    def write(tmp: str) -> None:
        ms.export(net, dummy, file_name=os.path.splitext(tmp)[0], file_format=a["file_format"])

    atomic_write(a["output"], write)
    return {"path": a["output"], "bytes": os.path.getsize(a["output"]), "seconds": time.perf_counter() - t0,
            "input_shape": shape, "num_classes": num, "model": a["model"], "format": a["file_format"],
            "ckpt": a["ckpt"]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mindcv-halonet-export",
        description="Export a MindCV/HaloNet network (random init or a checkpoint) to MINDIR or ONNX.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="a name of MindCV's registry, e.g. halonet_50t")
    p.add_argument("--ckpt", default=None,
                   help="MindSpore checkpoint to export (e.g. from train.py or mindcv-halonet-convert); "
                        "default: random initialisation (a warning says so; for testing a deployment path only)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier size; default: the checkpoint's (1000 without --ckpt)")
    p.add_argument("--image-size", default=None,
                   help="input size, 224 or HxW (320x256); default: the model's default_cfg input size")
    p.add_argument("--batch", type=int, default=1, help="static batch size of the exported graph (default 1)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--format", dest="file_format", default="MINDIR", type=str.upper, choices=sorted(FORMATS),
                   help="MINDIR (MindSpore Lite / Serving / mindspore.load) or ONNX")
    p.add_argument("-o", "--output", required=True, help="output file (.mindir or .onnx, matching --format)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    kwargs = dict(model=args.model, output=args.output, ckpt=args.ckpt, num_classes=args.num_classes,
                  image_size=args.image_size, batch=args.batch, file_format=args.file_format,
                  overwrite=args.overwrite, in_channels=args.in_channels)
    try:
        check_export_args(**kwargs)
        if args.ckpt is None:
            sys.stderr.write("mindcv-halonet-export: WARNING: no --ckpt given: exporting RANDOMLY INITIALISED "
                             "weights (useful only to test a deployment path)\n")
        info = export_model(**kwargs)
    except ValueError as exc:  # ConversionError (strict checkpoint load) is a ValueError too
        return error_exit("mindcv-halonet-export", exc, written=True)
    n, c, h, w = info["input_shape"]
    print(f"exported {info['model']} ({info['num_classes']} classes, "
          f"{'weights of ' + info['ckpt'] if info['ckpt'] else 'random weights'}) -> {info['path']} "
          f"({info['format']}, input {n}x{c}x{h}x{w} float32, {info['bytes'] / 2**20:.1f} MiB, {info['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
