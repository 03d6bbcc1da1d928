"""Every variant runs forward (batch 1) at 224x224 and 256x256 in PyNative and in Graph mode."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mindcv_halonet.models import halonet

VARIANTS = sorted(halonet.model_specs)


@pytest.fixture
def restore_mode():
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_224_and_256_pynative_and_graph(name, restore_mode):
    net = getattr(halonet, name)(num_classes=10)
    net.set_train(False)
    rng = np.random.default_rng(0)
    for mode in (ms.PYNATIVE_MODE, ms.GRAPH_MODE):
        ms.set_context(mode=mode)
        for size in (224, 256):
            x = Tensor(rng.standard_normal((1, 3, size, size)).astype(np.float32))
            y = net(x).asnumpy()
            assert y.shape == (1, 10), (name, mode, size)
            assert np.isfinite(y).all(), (name, mode, size)
