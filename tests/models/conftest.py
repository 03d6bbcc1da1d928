import mindspore as ms
import pytest


@pytest.fixture
def pynative():
    """Run the test in PyNative mode and restore the previous execution mode afterwards."""
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=mode)
