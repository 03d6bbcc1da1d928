"""The commands, on top of everything else (they may import the models, the weights and the layers):

* ``mindcv-halonet-convert`` -- :mod:`.convert` (timm / MindCV weights -> a checkpoint);
* ``mindcv-halonet-check`` -- :mod:`.check` (a checkpoint against a variant, exactly);
* ``mindcv-halonet-export`` -- :mod:`.export` (MINDIR / ONNX);
* ``python -m mindcv_halonet.commands.complexity`` -- :mod:`.complexity` (parameters and GMACs).

Nothing below this package imports it. Importing it does not import the commands (they load MindSpore).
"""
