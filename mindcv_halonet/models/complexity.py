"""Multiply-accumulate (MAC) counter for one forward pass of a single image.

Method: run one PyNative forward of a batch-1 input with forward hooks and add up, per layer,

* ``nn.Conv2d``: output elements x (input channels / groups) x kernel height x kernel width;
* ``nn.Dense``: input features x output features;
* ``HaloAttention``: its two batched matmuls and the relative-position matmuls, from the layer's sizes
  and the input size (n = heads x blocks, bq = query block, win = key window):
  content ``n*bq^2*win^2*dqk`` + relative ``2*n*bq^2*win*dqk`` + values ``n*bq^2*win^2*dv``
  (its q / kv projections are ``nn.Conv2d`` cells and are counted as convolutions);
* the ECA channel convolution: channels x kernel size.

Normalisation, activations, pooling, softmax and element-wise ops are not counted (the convention of
fvcore / ``torch.utils.flop_counter``, with which timm's GMAC figures are made).
"""
from typing import Tuple

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn

from mindcv_halonet.layers import HaloAttention

from .blocks import ChannelConv1d

__all__ = ["count_macs", "halo_attention_macs"]


def halo_attention_macs(layer: HaloAttention, height: int, width: int) -> int:
    """MACs of the attention matmuls of ``layer`` for one (height x width) input (projections excluded)."""
    b, bq, win = layer.block_size, layer.block_size_ds, layer.win_size
    blocks = -(-height // b) * -(-width // b)
    n = layer.num_heads * blocks
    content = n * bq * bq * win * win * layer.dim_head_qk
    relative = 2 * n * bq * bq * win * layer.dim_head_qk
    values = n * bq * bq * win * win * layer.dim_head_v
    return content + relative + values


def _cell_macs(cell: nn.Cell, inputs, output) -> int:
    if isinstance(cell, nn.Conv2d):
        kh, kw = cell.kernel_size
        out_elems = int(np.prod(output.shape[1:]))
        return out_elems * (cell.in_channels // cell.group) * kh * kw
    if isinstance(cell, nn.Dense):
        return cell.in_channels * cell.out_channels
    if isinstance(cell, HaloAttention):
        _, _, h, w = inputs[0].shape
        return halo_attention_macs(cell, h, w)
    if isinstance(cell, ChannelConv1d):
        return int(inputs[0].shape[1]) * cell.kernel_size
    return 0


def count_macs(model: nn.Cell, input_size: Tuple[int, int, int]) -> int:
    """MACs of ``model`` for one image of ``input_size`` (C, H, W); see the module docstring for the rules.

    Runs one forward pass in PyNative mode (the previous execution mode is restored) with the model in
    inference mode.
    """
    if len(input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f"input_size={input_size!r} is invalid; expected three positive integers (C, H, W)")
    counted = (nn.Conv2d, nn.Dense, HaloAttention, ChannelConv1d)
    total = [0]

    def hook(cell, inputs, output):
        total[0] += _cell_macs(cell, inputs, output)

    handles = [c.register_forward_hook(hook) for _, c in model.cells_and_names() if isinstance(c, counted)]
    previous_mode = ms.get_context("mode")
    was_training = model.training
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        model.set_train(False)
        model(Tensor(np.zeros((1,) + tuple(input_size), np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        model.set_train(was_training)
        ms.set_context(mode=previous_mode)
    return total[0]
