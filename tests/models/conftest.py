import mindspore as ms
import pytest


@pytest.fixture
def pynative(set_mode):
    """Run the test in PyNative mode; ``set_mode`` (tests/conftest.py) restores the previous mode."""
    set_mode(ms.PYNATIVE_MODE)
