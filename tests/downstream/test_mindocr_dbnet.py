"""``mindcv.halonet_26t`` as the backbone of MindOCR's DBNet, through MindOCR's own code (mindocr 0.5.0
from PyPI, nothing edited; the plugin's start-up hook registers the HaloNets into MindOCR's vendored
MindCV registry).

Runs where ``import mindocr`` works: mindspore 2.7.0 (0.5.0 imports ``mindspore.parallel._transformer``,
gone in 2.8.0) with ``huggingface_hub<1`` and requirements/mindocr.txt installed ``--no-deps``.
scripts/test_versions.sh runs it in the matrix's 2.7.0 environment; scripts/test.sh does not collect
it in the 2.8.0 suite (and says so).

* DBNet (DBFPN + DBHead) on halonet_26t from a config dict with MindOCR's ``build_model``; two training
  steps with ``DBLoss`` on generated 160 px images with ICDAR-format polygon labels, through MindOCR's
  transforms (DecodeImage, DetLabelEncode, RandomCropWithBBox to 128 px, ValidatePolygons, ShrinkBinaryMap, BorderMap,
  NormalizeImage, ToCHWImage); then one evaluation pass (DetResize, DBPostprocess, DetMetric).
  The loss is finite; at the second step every halo-attention parameter has a nonzero gradient (at the
  first step the zero-initialised last BatchNorm of each residual branch -- timm's scheme, and MindOCR's
  wrapper cannot pass ``zero_init_last`` -- blocks every gradient inside the branches).
* ``ckpt_path`` through MindOCR's ``MindCVBackboneWrapper``: a checkpoint written by
  ``save_mindocr_checkpoint`` fills every parameter (counted: 0 left at their initial value); the plain
  model's checkpoint, whose names the wrapper has renamed, fills none (the caveat, measured).
"""
import json
import re

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn

try:
    import mindocr  # noqa: F401
except Exception as exc:  # a collection error that says why, never a skip
    pytest.fail(f"tests/downstream needs mindocr 0.5.0 (mindspore 2.7.0, huggingface_hub<1, requirements/"
                f"mindocr.txt --no-deps); run it through scripts/test_versions.sh. import mindocr: "
                f"{type(exc).__name__}: {exc}", pytrace=False)

import cv2  # noqa: E402  (installed with mindocr's requirements)

from mindcv.models import create_model  # noqa: E402
from mindocr.data.transforms import create_transforms, run_transforms  # noqa: E402
from mindocr.losses import build_loss  # noqa: E402
from mindocr.metrics import build_metric  # noqa: E402
from mindocr.models import build_model  # noqa: E402
from mindocr.models.backbones.mindcv_models import registry as mindocr_registry  # noqa: E402
from mindocr.models.backbones.mindcv_wrapper import MindCVBackboneWrapper  # noqa: E402
from mindocr.postprocess import build_postprocess  # noqa: E402

from mindcv_halonet_autoload.mindocr import save_mindocr_checkpoint, to_mindocr_names  # noqa: E402

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
TRAIN_PIPELINE = [
    {"DecodeImage": {"img_mode": "RGB", "to_float32": False}},
    {"DetLabelEncode": None},
    {"RandomCropWithBBox": {"max_tries": 10, "min_crop_ratio": 0.5, "crop_size": (128, 128), "p": 1.0}},
    {"ValidatePolygons": None},
    {"ShrinkBinaryMap": {"min_text_size": 8, "shrink_ratio": 0.4}},
    {"BorderMap": {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7}},
    {"NormalizeImage": {"bgr_to_rgb": False, "is_hwc": True, "mean": MEAN, "std": STD}},
    {"ToCHWImage": None},
]
TRAIN_COLUMNS = ["image", "binary_map", "mask", "thresh_map", "thresh_mask"]
EVAL_PIPELINE = [
    {"DecodeImage": {"img_mode": "RGB", "to_float32": False}},
    {"DetLabelEncode": None},
    {"DetResize": {"target_size": [128, 128], "keep_ratio": False, "limit_type": "none", "divisor": 32}},
    {"NormalizeImage": {"bgr_to_rgb": False, "is_hwc": True, "mean": MEAN, "std": STD}},
    {"ToCHWImage": None},
]
DBNET_CONFIG = {
    "type": "det",
    "transform": None,
    "backbone": {"name": "mindcv.halonet_26t", "features_only": True, "out_indices": [1, 2, 3, 4],
                 "pretrained": False},
    "neck": {"name": "DBFPN", "out_channels": 64, "bias": False},
    "head": {"name": "DBHead", "k": 50, "bias": False, "adaptive": True},
}
# halonet_26t (timm halonet26t): halo attention in stages.2.1, stages.3.0, stages.3.1
ATTENTION_BLOCKS = ["stages_2.1", "stages_3.0", "stages_3.1"]


@pytest.fixture(autouse=True)
def _pynative():
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=mode)


def _write_icdar_samples(directory, count, size=160, seed=0):
    """``count`` images with 1-3 bright text-like quadrilaterals each; ICDAR-style label strings
    (``[{"transcription": ..., "points": [[x, y] x 4]}]``, the format DetLabelEncode reads)."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        img = np.full((size, size, 3), 30, np.uint8)
        boxes = []
        for j in range(int(rng.integers(1, 4))):
            w, h = int(rng.integers(40, 80)), int(rng.integers(14, 24))
            x, y = int(rng.integers(4, size - w - 4)), int(4 + j * (size - 8) // 3)
            pts = np.array([[x, y], [x + w, y + 2], [x + w, y + h + 2], [x, y + h]], np.int32)
            cv2.fillPoly(img, [pts], (230, 230, 230))
            boxes.append({"transcription": f"w{i}{j}", "points": pts.tolist()})
        path = directory / f"img_{i}.png"
        assert cv2.imwrite(str(path), img)
        samples.append({"img_path": str(path), "label": json.dumps(boxes)})
    return samples


def _batch(samples, pipeline, columns):
    transforms = create_transforms(pipeline)
    items = [run_transforms(dict(s), transforms) for s in samples]
    return [np.stack([np.asarray(item[c]) for item in items]) for c in columns]


def test_halonets_are_in_mindocrs_vendored_registry():
    names = mindocr_registry.list_models()
    assert {"halonet_26t", "halonet_50t", "eca_halonext_26ts", "sehalonet_33ts", "halonet_h1"} <= set(names)
    assert mindocr_registry.model_entrypoint("halonet_26t").__module__ == "mindcv_halonet_autoload.mindocr"


def test_dbnet_on_halonet_26t_trains_two_steps_and_evaluates(tmp_path):
    ms.set_seed(0)
    np.random.seed(0)  # MindOCR's random transforms use numpy's global generator
    train = _write_icdar_samples(tmp_path, 2, seed=1)
    net = build_model(DBNET_CONFIG)
    assert net.backbone.out_channels == [256, 512, 1024, 2048]
    loss_fn = build_loss("DBLoss", eps=1e-6, l1_scale=10, bce_scale=5, bce_replace="bceloss")
    params = net.trainable_params()
    opt = nn.Adam(params, learning_rate=1e-3)

    def forward(image, *labels):
        return loss_fn(net(image), *labels)

    grad_fn = ms.value_and_grad(forward, grad_position=None, weights=opt.parameters)
    net.set_train(True)
    losses, attn_grads = [], {}
    for _ in range(2):
        image, *labels = (Tensor(a.astype(np.float32)) for a in _batch(train, TRAIN_PIPELINE, TRAIN_COLUMNS))
        assert tuple(image.shape) == (2, 3, 128, 128)
        loss, grads = grad_fn(image, *labels)
        opt(grads)
        losses.append(float(loss.asnumpy()))
        attn_grads = {p.name: g.asnumpy() for p, g in zip(params, grads) if ".self_attn." in p.name}
    assert all(np.isfinite(losses)) and losses[0] > 0, losses
    blocks = sorted({re.search(r"(stages_\d+\.\d+)\.self_attn\.", n).group(1) for n in attn_grads})
    assert blocks == ATTENTION_BLOCKS, blocks
    zero = [n for n, g in attn_grads.items() if not (np.isfinite(g).all() and np.abs(g).max() > 0)]
    assert not zero, zero

    # one evaluation pass: DetResize -> DBNet (binary map) -> DBPostprocess -> DetMetric
    evaluation = _write_icdar_samples(tmp_path, 1, seed=2)
    image, polys, ignore_tags, shape_list = _batch(
        evaluation, EVAL_PIPELINE, ["image", "polys", "ignore_tags", "shape_list"])
    net.set_train(False)
    pred = net(Tensor(image.astype(np.float32)))
    assert tuple(pred.shape) == (1, 1, 128, 128)
    postprocess = build_postprocess(dict(name="DBPostprocess", box_type="quad", binary_thresh=0.3, box_thresh=0.6,
                                         max_candidates=1000, expand_ratio=1.5))
    result = postprocess(pred, shape_list=shape_list)
    metric = build_metric(dict(name="DetMetric", main_indicator="f-score"))
    metric.clear()
    metric.update(result, (Tensor(polys), Tensor(ignore_tags)))  # as the eval loop passes them
    scores = metric.eval()
    assert set(scores) >= {"recall", "precision", "f-score"}, scores
    assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in scores.values()), scores
    print(f"\nDBNet/halonet_26t losses {losses}, eval {scores}, {len(attn_grads)} attention tensors with gradients")


def _not_loaded(network, expected):
    """Names of ``network``'s parameters whose value differs from ``expected[name]`` (or is missing).
    Nesting in MindOCR's wrapper (after the load) prefixed them with ``network.net.``; the load itself
    saw the names without it."""
    names = [(p, re.sub(r"^network\.net\.", "", p.name)) for p in network.get_parameters()]
    return [n for p, n in names if n not in expected or not np.array_equal(p.asnumpy(), expected[n])]


def test_ckpt_path_through_mindocrs_wrapper_loads_every_parameter(tmp_path):
    # a plain halonet_26t with every tensor (BatchNorm statistics included) set to distinct random values
    plain = create_model("halonet_26t")
    rng = np.random.default_rng(3)
    for p in plain.get_parameters():
        p.set_data(Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
    plain_ckpt, ocr_ckpt = tmp_path / "halonet_26t.ckpt", tmp_path / "halonet_26t_mindocr.ckpt"
    ms.save_checkpoint(plain, str(plain_ckpt))
    values = {p.name: p.asnumpy() for p in plain.get_parameters()}
    assert save_mindocr_checkpoint(str(plain_ckpt), str(ocr_ckpt)) == len(values)
    renamed = to_mindocr_names(values)

    kwargs = dict(pretrained=False, features_only=True, out_indices=[1, 2, 3, 4])
    backbone = MindCVBackboneWrapper("mindcv.halonet_26t", ckpt_path=str(ocr_ckpt), **kwargs)
    net_params = list(backbone.get_parameters())
    assert len(net_params) == len(values) - 2  # everything but the classifier (head.fc weight, bias)
    not_loaded = _not_loaded(backbone, renamed)
    assert not_loaded == [], f"{len(not_loaded)} of {len(net_params)} not loaded: {not_loaded[:5]}"

    # the caveat: the plain checkpoint's names do not exist after MindOCR's feature wrapper renamed them
    backbone = MindCVBackboneWrapper("mindcv.halonet_26t", ckpt_path=str(plain_ckpt), **kwargs)
    assert len(_not_loaded(backbone, renamed)) == len(net_params)
