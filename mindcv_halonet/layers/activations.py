"""Activations with a lean backward pass.

``SiLU`` computes timm's / PyTorch's ``x * sigmoid(x)`` and its exact derivative, but its backward
pass needs only the input ``x``: autodiff of ``x * sigmoid(x)`` keeps ``x`` *and* ``sigmoid(x)`` (one
more full-size activation per call) for the whole step, and that is one extra tensor after every
convolution of a SiLU trunk. The backward recomputes ``sigmoid(x)``, an element-wise op that costs
far less than the memory it frees.
"""
from mindspore import Tensor, nn, ops

__all__ = ["SiLU"]


class SiLU(nn.Cell):
    """y = x * sigmoid(x), element-wise, any shape and float dtype; the backward keeps only ``x``."""

    def construct(self, x: Tensor) -> Tensor:
        return x * ops.sigmoid(x)

    def bprop(self, x: Tensor, out: Tensor, dout: Tensor):
        """dy/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s)), s = sigmoid(x), recomputed here."""
        s = ops.sigmoid(x)
        return (dout * (s * (1 + x * (1 - s))),)
