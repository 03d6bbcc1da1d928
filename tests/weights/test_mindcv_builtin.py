"""MindCV's built-in halonet_50t checkpoint -> ours: every tensor accounted for, and what the function is.

The built-in model (``mindcv.models.halonet``) is built with random weights and non-trivial
BatchNorm statistics, saved with ``mindspore.save_checkpoint`` (plus two training-loop entries),
and converted with the command line.

Its forward cannot run on CPU as shipped (``nn.Unfold`` has no CPU kernel; MindCV 0.3.0 also calls
``ops.pad(..., paddings=...)``, which MindSpore 2.8 rejects). For the functional checks the test
swaps in stand-ins, leaving the rest of MindCV's code as is:

* ``ops.pad`` accepting the old ``paddings=`` form (same padding);
* the k/v unfold, in one of two channel orders:
  - ``channel_major=True`` -- PyTorch ``unfold``'s order (channel, window row, window column),
    which MindCV's reshape assumes;
  - ``channel_major=False`` -- ExtractImagePatches' order (window row, window column, channel),
    as read from MindSpore's GPU kernel (NCHW -> NHWC, TensorFlow-style patch extraction with the
    channel fastest, -> NCHW); the Ascend kernel could not be run here;
* for "timm semantics", the stem's zero-pad + valid max-pool by a max-pool whose padding never wins.

Tolerance for "same function": max |diff| <= 1e-4 * max |reference| on the logits (float32).
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

import mindcv.models.halonet as halonet_module  # part of the pinned mindcv 0.3.0: a missing one fails

from mindcv_halonet.commands.common import build_network
from mindcv_halonet.commands.convert import main as convert_main
from tests.weights.helpers import load_into, max_errors

SIZE = 256
REL_TOL = 1e-4


class _OpsWithOldPad:
    """``mindspore.ops`` whose ``pad`` also takes MindCV 0.3.0's ``paddings=((before, after), ...)`` form."""

    def __getattr__(self, name):
        return getattr(ops, name)

    @staticmethod
    def pad(x, padding=None, paddings=None, **kwargs):
        if paddings is not None:
            padding = tuple(v for pair in reversed(paddings) for v in pair)
        return ops.pad(x, padding, **kwargs)


class UnfoldStandIn(nn.Cell):
    """(B, C, H, W) -> (B, C*win*win, nh, nw) windows of ``win`` every ``stride`` pixels, in a chosen order."""

    def __init__(self, win: int, stride: int, channel_major: bool):
        super().__init__()
        self.win, self.stride, self.channel_major = win, stride, channel_major

    def construct(self, x):
        b, c, h, w = x.shape
        nh = (h - self.win) // self.stride + 1
        nw = (w - self.win) // self.stride + 1
        taps = [x[:, :, i:i + self.stride * (nh - 1) + 1:self.stride, j:j + self.stride * (nw - 1) + 1:self.stride]
                for i in range(self.win) for j in range(self.win)]
        axis = 2 if self.channel_major else 1  # (B, C, taps, ..) or (B, taps, C, ..)
        return ops.stack(taps, axis=axis).reshape(b, c * self.win * self.win, nh, nw)


def _attention_cells(net):
    return [cell for _, cell in net.cells_and_names() if hasattr(cell, "kv_unfold")]


def _set_semantics(net, timm_like: bool, originals):
    for cell in _attention_cells(net):
        cell.kv_unfold = UnfoldStandIn(cell.win_size, cell.block_size, channel_major=timm_like)
    if timm_like:
        net.stem.pad = nn.Identity()
        net.stem.pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
    else:
        net.stem.pad, net.stem.pool = originals


def _randomize(net, x, seed=1):
    """Random gamma/beta/relative tables; BN statistics from ``x`` (mean square as variance, perturbed)."""
    rng = np.random.default_rng(seed)

    def calibrate(cell, inputs):
        a = inputs[0].asnumpy().astype(np.float64)
        mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
        n = mean.shape[0]
        cell.moving_mean.set_data(ms.Tensor((mean + 0.1 * np.sqrt(var) * rng.standard_normal(n)).astype(np.float32)))
        cell.moving_variance.set_data(ms.Tensor(((var + mean ** 2) * rng.uniform(0.8, 1.25, n)).astype(np.float32)))

    handles = []
    for name, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            n = cell.gamma.shape[0]
            cell.gamma.set_data(ms.Tensor(rng.uniform(0.5, 1.5, n).astype(np.float32)))
            cell.beta.set_data(ms.Tensor((0.2 * rng.standard_normal(n)).astype(np.float32)))
            handles.append(cell.register_forward_pre_hook(calibrate))
    for name, param in net.parameters_and_names():
        if "pos_embed" in name:
            param.set_data(ms.Tensor((0.2 * rng.standard_normal(param.shape)).astype(np.float32)))
    net(ms.Tensor(x))  # PyNative: each hook sets its BN's statistics just before that BN runs
    for handle in handles:
        handle.remove()


@pytest.fixture(scope="module")
def builtin(tmp_path_factory, pynative_module):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(halonet_module, "ops", _OpsWithOldPad())
        ms.set_seed(0)  # MindCV's initialisers draw the conv / dense weights
        net = halonet_module.halonet_50t(num_classes=1000)  # MindCV's own, not the registry's (ours)
        net.set_train(False)
        originals = (net.stem.pad, net.stem.pool)
        x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
        _set_semantics(net, timm_like=True, originals=originals)
        _randomize(net, x)
        logits_timm_like = net(ms.Tensor(x)).asnumpy()
        _set_semantics(net, timm_like=False, originals=originals)
        logits_as_shipped = net(ms.Tensor(x)).asnumpy()
        _set_semantics(net, timm_like=True, originals=originals)
        logits_timm_like_again = net(ms.Tensor(x)).asnumpy()
    np.testing.assert_array_equal(logits_timm_like, logits_timm_like_again)  # stand-ins swap cleanly

    directory = tmp_path_factory.mktemp("mindcv_builtin")
    ckpt = directory / "halonet_50t_builtin.ckpt"
    ms.save_checkpoint(net, str(ckpt), append_dict={"epoch_num": 7, "step_num": 700})
    source = {name: p.asnumpy().copy() for name, p in net.parameters_and_names()}
    return dict(dir=directory, ckpt=ckpt, x=x, source=source,
                logits_timm_like=logits_timm_like, logits_as_shipped=logits_as_shipped)


def _convert(builtin, name, *extra):
    out = builtin["dir"] / name
    code = convert_main(["--from", "mindcv", "--model", "halonet_50t", str(builtin["ckpt"]), "-o", str(out),
                         "--quiet", *extra])
    return code, out


def test_conversion_refuses_without_allow_approximate(builtin, capsys):
    code, out = _convert(builtin, "refused.ckpt")
    err = capsys.readouterr().err
    assert code == 2
    assert "--allow-approximate" in err and "ExtractImagePatches" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def converted(builtin):
    code, out = _convert(builtin, "converted.ckpt", "--allow-approximate")
    assert code == 0
    return {name: p.asnumpy() for name, p in ms.load_checkpoint(str(out)).items()}


def test_every_tensor_arrives_where_it_belongs(builtin, converted, capsys):
    source = builtin["source"]
    assert len(source) == len(converted) == 292

    # value by value: every source tensor is in the output exactly once, unchanged (values are random,
    # so equal content identifies the tensor), and nothing else is
    by_content = {}
    for name, value in converted.items():
        by_content.setdefault((value.shape, value.tobytes()), []).append(name)
    destination = {}
    for name, value in source.items():
        hits = by_content.get((value.shape, value.tobytes()), [])
        assert len(hits) == 1, (name, hits)
        destination[name] = hits[0]
    assert sorted(destination.values()) == sorted(converted)

    # where they went, spelled out independently of the converter's rule table
    expected = {
        "stem.conv1.conv.weight": "stem.conv1.conv.weight",
        "stem.conv3.bn.moving_variance": "stem.conv3.bn.moving_variance",
        "stage1.blocks.0.creat_shortcut.conv.weight": "stages.0.0.shortcut.conv.weight",
        "stage1.blocks.0.creat_shortcut.bn.moving_mean": "stages.0.0.shortcut.bn.moving_mean",
        "stage1.blocks.2.conv2_kxk.bn.gamma": "stages.0.2.conv2_kxk.bn.gamma",
        "stage2.blocks.3.self_attn.q.weight": "stages.1.3.self_attn.q.weight",
        "stage2.blocks.3.self_attn.kv.weight": "stages.1.3.self_attn.kv.weight",
        "stage2.blocks.3.self_attn.pos_embed.rel_height": "stages.1.3.self_attn.pos_embed.height_rel",
        "stage2.blocks.3.self_attn.pos_embed.rel_width": "stages.1.3.self_attn.pos_embed.width_rel",
        "stage2.blocks.3.post_attn.bn.gamma": "stages.1.3.post_attn.gamma",
        "stage2.blocks.3.post_attn.bn.moving_variance": "stages.1.3.post_attn.moving_variance",
        "stage3.blocks.5.conv3_1x1.bn.beta": "stages.2.5.conv3_1x1.bn.beta",
        "stage4.blocks.1.self_attn.kv.weight": "stages.3.1.self_attn.kv.weight",
        "stage4.blocks.2.conv1_1x1.conv.weight": "stages.3.2.conv1_1x1.conv.weight",
        "classifier.1.weight": "head.fc.weight",
        "classifier.1.bias": "head.fc.bias",
    }
    for src, dst in expected.items():
        assert destination[src] == dst, (src, destination[src], dst)


def test_training_loop_entries_are_reported_not_converted(builtin, converted, capsys):
    code, out = _convert(builtin, "again.ckpt", "--allow-approximate")
    stdout = capsys.readouterr().out
    assert code == 0
    assert "ignored 2 optimizer/training-loop entries" in stdout and "epoch_num" in stdout
    assert "WARNING: approximate conversion" in stdout
    assert "epoch_num" not in converted and "step_num" not in converted


def test_converted_network_equals_the_builtin_with_timm_semantics(builtin, converted):
    """Everything but the two documented differences is the same function: only names changed."""
    net = build_network("halonet_50t", 1000)
    load_into(net, converted)
    net.set_train(False)
    ours = net(ms.Tensor(builtin["x"])).asnumpy()
    abs_err, rel_err = max_errors(ours, builtin["logits_timm_like"])
    print(f"\nours vs MindCV built-in with timm semantics: logits max abs {abs_err:.2e}, max rel {rel_err:.2e}")
    assert rel_err <= REL_TOL

    shipped_abs, shipped_rel = max_errors(ours, builtin["logits_as_shipped"])
    print(f"ours vs MindCV built-in as shipped (ExtractImagePatches order, zero-padded pool): "
          f"logits max abs {shipped_abs:.2e}, max rel {shipped_rel:.2e}")
    # the documented difference is real and large, not rounding
    assert shipped_rel > 100 * REL_TOL
