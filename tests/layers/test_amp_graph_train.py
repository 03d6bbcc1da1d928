"""HaloAttention under amp O3 (the recipes' level) in a Graph-mode train step: it must compile and train.

Regression test: the attention cell's custom bprop used to return float32 gradients for its float16 inputs
(a Float32Cell's inputs arrive cast to float32 in Graph mode), which autodiff could not add to
RelPosEmbed's float16 gradient of the same query tensor: "For primitive[AddN], the input type must be
same" when compiling the train step -- every O3 recipe failed before its first step.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mindcv_halonet.layers import HaloAttention


class _Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.attn = HaloAttention(dim=16, num_heads=2, block_size=4, halo_size=1)
        self.fc = nn.Dense(16, 3)

    def construct(self, x):
        return self.fc(ops.mean(self.attn(x), (2, 3)))


@pytest.fixture
def graph_mode():
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE, jit_config={"jit_level": "O2"})
    yield
    ms.set_context(mode=mode)


@pytest.mark.parametrize("amp_level", ["O2", "O3"])
def test_o3_graph_train_step_compiles_and_trains(graph_mode, amp_level):
    ms.set_seed(0)
    net = _Net()
    params = net.trainable_params()
    before = [p.asnumpy().copy() for p in params]
    amp_net = ms.amp.auto_mixed_precision(net, amp_level)
    loss = nn.WithLossCell(amp_net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = nn.TrainOneStepCell(loss, nn.SGD(params, 0.1))
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 16, 8, 8)).astype(np.float32))
    y = Tensor(np.array([0, 2], np.int32))
    losses = [float(step(x, y).asnumpy()) for _ in range(3)]
    assert np.all(np.isfinite(losses))
    after = [p.asnumpy() for p in params]
    assert all(np.all(np.isfinite(a)) for a in after)
    assert not np.array_equal(after[0], before[0])  # the attention's projection was updated
