"""The recipes' loss-scale setting cannot write inf/NaN into the weights (issue 14).

Two halves, because MindSpore's overflow-checking train step cannot run on CPU (its probe is
``NPUGetFloatStatusV2`` on Ascend, ``FloatStatus`` on GPU; neither has a CPU kernel):

* Construction: what MindCV 0.3.0's ``create_trainer`` (-> ``mindspore.Model`` -> ``build_train_network``)
  builds from each recipe's keys when the device reads as Ascend: ``TrainOneStepWithLossScaleCell`` whose
  scale sense is a ``DynamicLossScaleUpdateCell`` starting at the recipe's scale. The old setting (fixed 1024,
  no overflow skip) builds a plain ``TrainOneStepCell``, which the same assertions reject.
* Behaviour on CPU: the same cell with only the overflow probe replaced (``isfinite`` over the gradients),
  fed a step whose float16 gradients overflow (amp O3, as the recipes): weights stay finite and unchanged,
  the scale halves. The plain ``TrainOneStepCell`` (old setting) fed the same step writes non-finite weights.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from tests.configs.test_mindcv_args import mindcv_args
from tests.configs.test_recipes import CONFIG_DIR, RECIPES, load

# What every recipe had before issue 14 (and MindCV's own halonet recipe still has).
OLD_SETTING = {"loss_scale_type": "fixed", "loss_scale": 1024, "drop_overflow_update": False}
SETTINGS = {"recipe": {}, "old": OLD_SETTING}


def _tiny_net(in_features=8, num_classes=4):
    ms.set_seed(0)
    return nn.SequentialCell([nn.Dense(in_features, 16), nn.ReLU(), nn.Dense(16, num_classes)])


def _recipe_args(path, setting):
    return mindcv_args.load_args(str(path), {**setting, "num_classes": 4})


def _optimizer(net, args):
    """MindCV's optimizer as train.py creates it (the scale goes into the optimizer only for fixed/no-skip)."""
    from mindcv.optim import create_optimizer

    fixed_no_skip = args.loss_scale_type == "fixed" and args.drop_overflow_update is False
    return create_optimizer(net.trainable_params(), opt=args.opt, lr=1e-3, weight_decay=args.weight_decay,
                            loss_scale=args.loss_scale if fixed_no_skip else 1.0)


@pytest.fixture
def device_reads_ascend(monkeypatch):
    """``get_context('device_target')`` answers 'Ascend' (what MindCV's and MindSpore's factories check);
    nothing is compiled or run, so no Ascend is needed."""
    from mindspore import context

    real = context.get_context

    def get_context(attr_key):
        return "Ascend" if attr_key == "device_target" else real(attr_key)

    monkeypatch.setattr(context, "get_context", get_context)
    monkeypatch.setattr(ms, "get_context", get_context)


def _built_train_step(path, setting):
    from mindcv.loss import create_loss
    from mindcv.utils import create_trainer

    args = _recipe_args(path, setting)
    net = _tiny_net()
    model = create_trainer(
        net, create_loss(name=args.loss, label_smoothing=args.label_smoothing), _optimizer(net, args),
        metrics=None, amp_level=args.amp_level, amp_cast_list=args.amp_cast_list,
        loss_scale_type=args.loss_scale_type, loss_scale=args.loss_scale,
        drop_overflow_update=args.drop_overflow_update, ema=args.ema, ema_decay=args.ema_decay,
        clip_grad=args.clip_grad, clip_value=args.clip_value,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
    )
    return model._train_network, args


def overflow_checking_problems(train_step, args) -> list:
    """What keeps ``train_step`` from skipping an overflowing step and adapting its scale ([] = none)."""
    problems = []
    if not isinstance(train_step, nn.TrainOneStepWithLossScaleCell):
        problems.append(f"{type(train_step).__name__} does not check for overflow")
        return problems
    manager = train_step.loss_scaling_manager
    if not isinstance(manager, nn.DynamicLossScaleUpdateCell):
        problems.append(f"scale sense {type(manager).__name__} does not adapt the scale")
    elif float(train_step.scale_sense.asnumpy()) != float(args.loss_scale):
        problems.append(f"initial scale {train_step.scale_sense.asnumpy()} != recipe's {args.loss_scale}")
    return problems


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_mindcv_builds_an_overflow_checking_step_from_the_recipe(path, device_reads_ascend):
    train_step, args = _built_train_step(path, {})
    assert overflow_checking_problems(train_step, args) == []
    assert args.amp_level == "O3"


def test_old_setting_builds_a_step_without_overflow_check(device_reads_ascend):
    """Negative control: the same construction from the old setting is rejected by the same check."""
    train_step, args = _built_train_step(CONFIG_DIR / "halonet_50t_ascend.yaml", OLD_SETTING)
    assert type(train_step) is nn.TrainOneStepCell
    assert overflow_checking_problems(train_step, args) == ["TrainOneStepCell does not check for overflow"]


def test_on_cpu_mindspore_refuses_the_overflow_checking_step():
    """Why the behaviour half below replaces the probe (and why the CPU overrides set a fixed scale)."""
    with pytest.raises(ValueError, match="supported on device `CPU`"):
        _built_train_step(CONFIG_DIR / "halonet_50t_ascend.yaml", {})


class CpuProbeLossScaleStep(nn.TrainOneStepWithLossScaleCell):
    """``TrainOneStepWithLossScaleCell`` with only the overflow probe replaced by CPU ops: overflow means
    some gradient element is not finite (what the device's float-status registers report)."""

    def get_overflow_status(self, status, compute_output):
        finite = [ops.isfinite(g).all() for g in compute_output]
        return ops.logical_not(ops.stack(finite).all())


def _train_step_for(args, net_with_loss, optimizer):
    """The cell MindSpore builds from these keys (build_train_network), the probe swapped for CPU."""
    manager = (ms.amp.DynamicLossScaleManager(init_loss_scale=args.loss_scale, scale_factor=2, scale_window=2000)
               if args.loss_scale_type == "dynamic"
               else ms.amp.FixedLossScaleManager(args.loss_scale, drop_overflow_update=args.drop_overflow_update))
    update_cell = manager.get_update_cell()
    if update_cell is None:
        return nn.TrainOneStepCell(net_with_loss, optimizer, sens=float(args.loss_scale))
    return CpuProbeLossScaleStep(net_with_loss, optimizer, scale_sense=update_cell)


def _run_overflowing_step(setting):
    """One step whose float16 gradients overflow (inputs 1e5 ~ float16's max 65504), under the recipe's O3."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    args = _recipe_args(CONFIG_DIR / "halonet_50t_ascend.yaml", setting)
    net = _tiny_net()
    params = net.trainable_params()  # collected before wrapping (wrapping can rename parameters)
    before = [p.asnumpy().copy() for p in params]
    amp_net = ms.amp.auto_mixed_precision(net, args.amp_level)  # O3: float16 cells, float32 output
    net_with_loss = nn.WithLossCell(amp_net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = _train_step_for(args, net_with_loss, _optimizer(net, args))
    x = Tensor(np.full((2, 8), 1e5, np.float32))
    y = Tensor(np.array([0, 1], np.int32))
    out = step(x, y)
    after = [p.asnumpy() for p in params]
    scale = float(step.scale_sense.asnumpy()) if isinstance(step, nn.TrainOneStepWithLossScaleCell) else None
    return before, after, out, scale, args


def weight_problems(before, after) -> list:
    """An overflowing step must leave every weight finite and unchanged."""
    problems = [f"weight {i}: not finite" for i, a in enumerate(after) if not np.all(np.isfinite(a))]
    problems += [f"weight {i}: changed" for i, a in enumerate(after)
                 if np.all(np.isfinite(a)) and not np.array_equal(a, before[i])]
    return problems


def test_recipe_setting_skips_the_overflowing_step_and_halves_the_scale():
    before, after, out, scale, args = _run_overflowing_step(SETTINGS["recipe"])
    assert args.loss_scale_type == "dynamic" and args.drop_overflow_update is True
    assert bool(out[1].asnumpy()) is True, "the step did not overflow: the test proves nothing"
    assert weight_problems(before, after) == []
    assert scale == args.loss_scale / 2


def test_old_setting_writes_non_finite_weights():
    """Negative control: the old setting, the same overflowing step: the weights turn inf/NaN."""
    before, after, _, _, args = _run_overflowing_step(SETTINGS["old"])
    assert args.loss_scale_type == "fixed" and args.drop_overflow_update is False
    problems = weight_problems(before, after)
    assert any(p.endswith("not finite") for p in problems), problems


def test_recipe_setting_still_trains_on_a_finite_step():
    """The CPU probe does not report overflow where there is none: a normal step updates the weights."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    args = _recipe_args(CONFIG_DIR / "halonet_50t_ascend.yaml", {})
    net = _tiny_net()
    before = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    net_with_loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    step = _train_step_for(args, net_with_loss, _optimizer(net, args))
    _, overflow, _ = step(Tensor(np.ones((2, 8), np.float32)), Tensor(np.array([0, 1], np.int32)))
    assert bool(overflow.asnumpy()) is False
    assert float(step.scale_sense.asnumpy()) == args.loss_scale
    assert all(not np.array_equal(p.asnumpy(), before[p.name]) for p in net.trainable_params())
