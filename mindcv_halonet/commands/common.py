"""What every command shares: building one of MindCV's registered networks by name, and the error line."""
import sys

__all__ = ["build_network", "error_exit", "registered_models"]


def registered_models():
    from mindcv.models import list_models

    from mindcv_halonet import models  # noqa: F401  the HaloNets are in MindCV's registry from here on

    return list_models()


def build_network(variant: str, num_classes: int, in_channels: int = 3):
    """Construct a network (random init, no forward pass) through MindCV's registry.

    The commands are the only place a network is built by name; the weights layer receives it (or its
    spec) from here, as :data:`mindcv_halonet.weights.pipeline.NetFactory`."""
    from mindcv.models import create_model

    from mindcv_halonet import models  # noqa: F401

    return create_model(variant, num_classes=num_classes, in_channels=in_channels, pretrained=False)


def error_exit(prog: str, exc: BaseException, written: bool = False) -> int:
    """Print ``prog: error: ...`` (and that nothing was written, where a file was to be written); exit status 2."""
    sys.stderr.write(f"{prog}: error: {exc}\n" + ("nothing was written.\n" if written else ""))
    return 2
