"""Fixtures of the train-path tests."""
import pytest

from tests.train.tiny_setup import make_tiny_data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The tiny class-separable ImageFolder set (generated once per test session)."""
    return make_tiny_data(tmp_path_factory.mktemp("tiny_imagefolder") / "data")
