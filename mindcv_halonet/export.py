"""``mindcv-halonet-export``: a (trained) network -> a MINDIR or ONNX file for deployment.

Examples::

    mindcv-halonet-export --model halonet_26t --ckpt runs/demo/ckpt/halonet_26t-8_44.ckpt \\
        --image-size 32 --format MINDIR -o halonet_26t_digits.mindir
    python -m mindcv_halonet.export --model halonet_50t --ckpt h50t.ckpt --image-size 224 --batch 1 \\
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
import shutil
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple, Union

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


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= 1")
    return value


def _check_output(output: str, file_format: str, overwrite: bool) -> str:
    ext = FORMATS[file_format]
    if not isinstance(output, str) or not output.lower().endswith(ext):
        raise ValueError(f"output={output!r} is not accepted for format {file_format}; expected a path ending in {ext}")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ValueError(f"output={output!r}: directory {directory!r} does not exist; expected an existing directory")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"output={output!r}: directory {directory!r} is not writable")
    if os.path.isdir(output):
        raise ValueError(f"output={output!r} is a directory; expected a file path ending in {ext}")
    if os.path.exists(output) and not overwrite:
        raise ValueError(f"output={output!r} already exists (pass --overwrite / overwrite=True to replace it)")
    return os.path.abspath(output)


def _registered_models() -> List[str]:
    import mindcv_halonet  # noqa: F401  makes sure the HaloNets are in MindCV's registry
    from mindcv.models import list_models

    return list_models()


def check_export_args(model, output, ckpt=None, num_classes=None, image_size=None, batch=1, file_format="MINDIR",
                      overwrite=False, in_channels=3) -> dict:
    """Validate every argument (raises ``ValueError`` naming it) without building anything; returns them
    normalised: ``image_size`` as ``(H, W)``, ``file_format`` upper-case, ``output`` absolute."""
    fmt = file_format.upper() if isinstance(file_format, str) else file_format
    if fmt not in FORMATS:
        raise ValueError(f"file_format={file_format!r} is invalid; expected one of {', '.join(FORMATS)}")
    names = _registered_models()
    if model not in names:
        halo = [n for n in names if "halo" in n]
        raise ValueError(f"model={model!r} is not in MindCV's model registry; HaloNet variants: {', '.join(halo)} "
                         f"(any name of mindcv.models.list_models() is accepted)")
    if image_size is None:
        from mindcv_halonet.models.halonet import default_cfgs

        image_size = tuple(default_cfgs[model]["input_size"][1:]) if model in default_cfgs else (224, 224)
    hw = parse_image_size(image_size)
    _positive_int("batch", batch)
    _positive_int("in_channels", in_channels)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 0):
        raise ValueError(f"num_classes={num_classes!r} is invalid; expected an integer >= 0 (0 = pooled features)")
    if ckpt is not None:
        if not isinstance(ckpt, str) or not ckpt.lower().endswith(".ckpt"):
            ext = os.path.splitext(ckpt)[1] if isinstance(ckpt, str) else ""
            raise ValueError(f"ckpt={ckpt!r} has extension {ext or '(none)'!r}; expected a MindSpore checkpoint "
                             f"(.ckpt; convert timm weights with mindcv-halonet-convert first)")
        if not os.path.isfile(ckpt):
            raise ValueError(f"ckpt={ckpt!r} does not exist or is not a file; expected an existing .ckpt file")
    out = _check_output(output, fmt, overwrite)
    return dict(model=model, output=out, ckpt=ckpt, num_classes=num_classes, image_size=hw, batch=batch,
                file_format=fmt, overwrite=overwrite, in_channels=in_channels)


def _read_checkpoint(path: str):
    """Network tensors of a MindSpore checkpoint (optimizer / loop state of a training checkpoint dropped)."""
    from mindcv_halonet.convert.pipeline import head_classes
    from mindcv_halonet.convert.readers import read_state, split_training_state

    state, _ = split_training_state(read_state(path, "mindcv"))
    return state, head_classes(state)


def build_for_export(model: str, num_classes: int, in_channels: int = 3, state=None, ckpt: str = ""):
    """``create_model`` + strict checkpoint load + eval mode."""
    import mindspore as ms
    from mindcv.models import create_model

    from mindcv_halonet.convert.mapping import match_to_target
    from mindcv_halonet.convert.pipeline import network_spec

    net = create_model(model, num_classes=num_classes, in_channels=in_channels, pretrained=False)
    if state is not None:
        params, _ = match_to_target(state, network_spec(net), description=f"checkpoint {ckpt}")
        not_loaded, _ = ms.load_param_into_net(
            net, {name: ms.Parameter(ms.Tensor(value), name=name) for name, value in params.items()}, strict_load=True)
        if not_loaded:  # cannot happen after match_to_target; kept as a guard against silent partial loads
            raise ValueError(f"ckpt={ckpt!r}: parameters not loaded: {not_loaded}")
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
            state, ckpt_classes = _read_checkpoint(a["ckpt"])
            if num is None:
                num = ckpt_classes if ckpt_classes is not None else 1000
        num = 1000 if num is None else num
        net = build_for_export(a["model"], num, a["in_channels"], state, a["ckpt"] or "")
    net.set_train(False)
    shape = (a["batch"], a["in_channels"], *a["image_size"])
    dummy = ms.Tensor(np.zeros(shape, dtype=np.float32))

    directory = os.path.dirname(a["output"])
    tmp = tempfile.mkdtemp(prefix=".export-" + os.path.basename(a["output"]) + "-", dir=directory)
    try:
        stem = os.path.join(tmp, "net")
        ms.export(net, dummy, file_name=stem, file_format=a["file_format"])
        produced = stem + FORMATS[a["file_format"]]
        if not os.path.isfile(produced):
            raise RuntimeError(f"mindspore.export wrote {sorted(os.listdir(tmp))} in {tmp}, not {produced}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(produced, 0o666 & ~umask)  # MindSpore writes 0400/0600; give the file the usual permissions
        os.replace(produced, a["output"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
        sys.stderr.write(f"mindcv-halonet-export: error: {exc}\nnothing was written.\n")
        return 2
    n, c, h, w = info["input_shape"]
    print(f"exported {info['model']} ({info['num_classes']} classes, "
          f"{'weights of ' + info['ckpt'] if info['ckpt'] else 'random weights'}) -> {info['path']} "
          f"({info['format']}, input {n}x{c}x{h}x{w} float32, {info['bytes'] / 2**20:.1f} MiB, {info['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
