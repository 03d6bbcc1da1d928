"""Reference generator that runs **timm** (PyTorch), outside the MindSpore test process.

This script is executed by an interpreter that can ``import timm`` (which needs torch and
torchvision). It is never imported by the MindSpore tests; they call it in a subprocess
and only read the files it writes, so the test environment itself stays free of torch.

Sub-commands
------------
``keys OUT_DIR [--models ...]``
    Write ``OUT_DIR/<timm_name>.json`` with every ``state_dict`` key of the timm model, its
    shape and dtype, in timm's order. This is how ``tests/data/timm_keys/`` was produced
    (once, with timm 1.0.31 / torch 2.14.1); the files are committed test data.

``reference OUT_NPZ --model NAME [--seed S] [--size HW] [--batch N] [--output-stride 32|16|8]``
    Build the timm model with seeded random weights, replace every BatchNorm's weight, bias,
    running mean and running variance by seeded non-trivial values (timm's own init sets them
    to 1/0/0/1 and zero-inits the last BN of each residual branch, which would hide a wrong
    mapping; see ``randomize_batchnorm``), run it in eval mode on a seeded random input and
    write to ``OUT_NPZ``:

    * ``state/<key>``  every state_dict tensor (float32; integer counters kept as int64),
    * ``input``        the NCHW input batch,
    * ``logits``       the classifier output,
    * ``stage0`` .. ``stage3``  the outputs of ``model.stages[0..3]``;
    * with ``--float64``: ``logits_float64``, ``stage0_float64`` .. (the same network in float64).

    The file is written atomically (temporary file in the same directory, then rename).
"""
import argparse
import json
import os
import sys
import tempfile

TIMM_MODELS = ("halonet50ts", "halonet26t", "sehalonet33ts", "eca_halonext26ts", "halonet_h1")


def _atomic_write(path, write_fn, suffix):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def dump_keys(out_dir, models):
    import timm
    import torch

    os.makedirs(out_dir, exist_ok=True)
    for name in models:
        model = timm.create_model(name, pretrained=False)
        entries = [
            {"key": key, "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
            for key, value in model.state_dict().items()
        ]
        doc = {
            "timm_model": name,
            "generated_with": {"timm": timm.__version__, "torch": torch.__version__},
            "num_tensors": len(entries),
            "state_dict": entries,
        }

        def write(tmp, doc=doc):
            # one tensor per line: readable and diff-friendly
            head = {k: v for k, v in doc.items() if k != "state_dict"}
            lines = [json.dumps(e) for e in doc["state_dict"]]
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(head)[:-1] + ', "state_dict": [\n  ')
                f.write(",\n  ".join(lines))
                f.write("\n]}\n")

        path = os.path.join(out_dir, name + ".json")
        _atomic_write(path, write, ".json")
        print(f"{name}: {len(entries)} tensors -> {path}")


def randomize_batchnorm(model, calibration_input, generator):
    """Give every BatchNorm non-trivial affine parameters and running statistics, well conditioned.

    1. weight ~ U[0.5, 1.5), bias ~ 0.2 N(0, 1);
    2. input statistics measured on ``calibration_input`` -- the batch the reference is computed
       on -- by one train-mode pass with cumulative averaging (every BN sees inputs normalised by
       the BNs before it);
    3. running_var = (measured var + measured mean^2) * U[0.8, 1.25), i.e. the input's mean square
       (not its variance), and running_mean = measured mean + 0.1 std N(0, 1).

    Why not plain random statistics: they are unrelated to the activations, which then grow to
    hundreds by stage 4. Why the mean square in 3: with random weights the attention is nearly
    uniform, so some attention-output channels vary very little around a large mean; dividing
    by their tiny std amplifies float32 rounding by orders of magnitude (timm float32 vs float64
    then differ by 0.04 % .. 3 % on the logits, which makes a 1e-4 comparison meaningless).
    With 1-3, halonet50ts' float32 logits stay within ~1e-6 of float64 while every BN still has
    distinct, non-0/1 statistics, so a swapped or misplaced tensor shows up immediately.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_(0.5 + torch.rand(n, generator=generator))
            bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over the calibration pass
        model.train()
        model(calibration_input)
        model.eval()
        for bn in bns:
            n = bn.num_features
            mean, var = bn.running_mean.clone(), bn.running_var.clone()
            # divide by the RMS (not the std) of the measured input: no cancellation when a
            # channel's spatial variation is tiny next to its mean (near-uniform random attention)
            bn.running_var.copy_((var + mean * mean) * (0.8 + 0.45 * torch.rand(n, generator=generator)))
            bn.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(n, generator=generator))
            bn.momentum = 0.1
            bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=generator)))


def make_reference(out_npz, name, seed, size, batch, float64=False, output_stride=32):
    import numpy as np
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, output_stride=output_stride)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 2))
    randomize_batchnorm(model, x, torch.Generator().manual_seed(seed + 1))

    captured = {}
    for idx, stage in enumerate(model.stages):
        stage.register_forward_hook(
            lambda _m, _inp, out, idx=idx: captured.__setitem__(f"stage{idx}", out.detach().numpy().copy()))

    with torch.no_grad():
        logits = model(x)

    arrays = {"input": x.numpy(), "logits": logits.numpy()}
    arrays.update(captured)
    if float64:
        # timm's own float32 rounding, for context: the same network evaluated in float64
        with torch.no_grad():
            logits64 = model.double()(x.double())
        arrays["logits_float64"] = logits64.numpy()
        for idx in range(len(model.stages)):
            arrays[f"stage{idx}_float64"] = captured.pop(f"stage{idx}")
        model.float()
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        arrays["state/" + key] = value.numpy() if value.is_floating_point() else value.numpy().astype(np.int64)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(out_npz, write, ".npz")
    print(f"{name}: logits {tuple(logits.shape)}, {len(model.stages)} stages -> {out_npz}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_keys = sub.add_parser("keys", help="dump timm state_dict keys and shapes as JSON")
    p_keys.add_argument("out_dir")
    p_keys.add_argument("--models", nargs="+", default=list(TIMM_MODELS), choices=TIMM_MODELS)
    p_ref = sub.add_parser("reference", help="dump random weights, input, logits and stage outputs as .npz")
    p_ref.add_argument("out_npz")
    p_ref.add_argument("--model", required=True, choices=TIMM_MODELS)
    p_ref.add_argument("--seed", type=int, default=0)
    p_ref.add_argument("--size", type=int, default=256)
    p_ref.add_argument("--batch", type=int, default=2)
    p_ref.add_argument("--threads", type=int, default=1)
    p_ref.add_argument("--float64", action="store_true",
                       help="also store logits_float64 / stageN_float64 (same network run in float64)")
    p_ref.add_argument("--output-stride", type=int, default=32, choices=(8, 16, 32),
                       help="timm's output_stride (dilated last stages below 32)")
    args = parser.parse_args(argv)

    if args.command == "keys":
        dump_keys(args.out_dir, args.models)
    else:
        import torch

        torch.set_num_threads(args.threads)
        make_reference(args.out_npz, args.model, args.seed, args.size, args.batch, args.float64, args.output_stride)
    return 0


if __name__ == "__main__":
    sys.exit(main())
