"""Train like MindCV's ``train.py``: the same factories, called in the same order, from a recipe.

MindCV's ``train.py`` is not part of its PyPI package, so this script re-traces its path with the
installed ``mindcv``: ``create_dataset`` -> ``create_transforms`` -> ``create_loader`` ->
``create_model`` (by name) -> ``create_loss`` -> ``create_scheduler`` -> ``create_optimizer`` ->
``get_metrics`` -> ``create_trainer`` -> ``StateMonitor`` (MindCV's checkpoint callback) ->
``trainer.train``. It never imports ``mindcv_halonet``: the model comes from MindCV's registry,
filled by the plugin's start-up hook.

One deliberate difference: with ``distribute=True`` the sample count is all-reduced as float32.
``train.py`` all-reduces an int32 tensor, which MindSpore's CPU backend cannot do (no int32
AllReduce kernel), so ``train.py`` under ``msrun`` fails on CPU before training; it works on
Ascend/GPU.

Beyond ``train.py`` it records the loss per step, the time per epoch, and evaluates the trained
network (loss, top-1) on the train and val splits with the evaluation transforms, before and after
training. Usage::

    python scripts/factory_train.py -c configs/halonet/halonet_h0_ascend.yaml \
        --set device_target=CPU --set distribute=False ... [--result-json out.json] [--dump-weights DIR]

On Ascend, ``--ascend-precision-mode MODE`` sets CANN's ``precision_mode`` (``ascend_config``), which
MindCV's ``train.py`` has no option for; ``must_keep_origin_dtype`` keeps HaloAttention's float32 logits
and softmax on every chip (docs/ascend.md). The recipes' loss scale cannot run on CPU: set
``--set loss_scale_type=fixed --set drop_overflow_update=False`` there (``--set`` values are YAML, so
``False`` is False, unlike MindCV's ``config.py``, which reads ``--drop_overflow_update False`` as True).
"""
import argparse
import json
import logging
import os
import sys
import time

# the scripts import each other: `python scripts/factory_train.py` puts this directory first on sys.path
from atomic import atomic_write  # noqa: E402
from mindcv_args import load_args, parse_override  # noqa: E402

logger = logging.getLogger("mindcv.train")

# CANN precision modes MindSpore accepts in ascend_config (mindspore/context.py, 2.8)
ASCEND_PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "allow_mix_precision", "must_keep_origin_dtype",
                          "force_fp32", "allow_fp32_to_bf16", "allow_mix_precision_fp16", "allow_mix_precision_bf16")


def check_ascend_precision_mode(mode, device_target) -> None:
    """Bad input before any work: the mode must be one MindSpore accepts, and only Ascend has it."""
    if mode is None:
        return
    if mode not in ASCEND_PRECISION_MODES:
        raise ValueError(f"--ascend-precision-mode={mode!r} is invalid; accepted: {', '.join(ASCEND_PRECISION_MODES)}")
    if device_target != "Ascend":
        raise ValueError(f"--ascend-precision-mode={mode!r} needs device_target='Ascend' (got {device_target!r}); "
                         "CPU and GPU have no CANN precision mode")


def set_ascend_precision_mode(mode) -> None:
    """Call after ``set_context(device_target=...)`` and before any network is built."""
    if mode is not None:
        import mindspore as ms

        ms.set_context(ascend_config={"precision_mode": mode})


def write_json_atomic(path, data) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)

    atomic_write(path, write)


def make_step_recorder():
    from mindspore.train import Callback

    class StepRecorder(Callback):
        """Loss after every (sink) step and the duration of every epoch."""

        def __init__(self):
            super().__init__()
            self.losses, self.epoch_times, self._t0 = [], [], None

        def on_train_epoch_begin(self, run_context):
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, run_context):
            self.epoch_times.append(time.perf_counter() - self._t0)

        def on_train_step_end(self, run_context):
            out = run_context.original_args().net_outputs
            loss = out[0] if isinstance(out, (tuple, list)) else out
            self.losses.append(float(loss.asnumpy().mean()))

    return StepRecorder()


class _NullSummary:
    """Stands in for MindSpore's ``SummaryRecord`` when summaries are off (records nothing)."""

    def add_value(self, *args, **kwargs):
        pass

    def record(self, *args, **kwargs):
        pass

    def close(self):
        pass


def without_summary(state_monitor_cls):
    """``StateMonitor`` that writes no MindInsight summary: MindSpore's ``SummaryRecord`` starts a writer
    process that polls its queue without sleeping (``mindspore/train/summary/_writer_pool.py``), which
    takes one of the two cores of a small CPU machine for the whole run."""

    class StateMonitorWithoutSummary(state_monitor_cls):
        def __enter__(self):
            self.summary_record = _NullSummary()
            return self

        def __exit__(self, *exc_args):
            pass

    return StateMonitorWithoutSummary


def make_eval_loader(args, split, shuffle=False, num_shards=None, shard_id=None):
    """The evaluation data path of ``validate.py`` (and of ``train.py``'s ``val_while_train``, which
    shards it per worker and keeps ``create_dataset``'s default ``shuffle=True``)."""
    from mindcv.data import create_dataset, create_loader, create_transforms

    dataset = create_dataset(
        name=args.dataset, root=args.data_dir, split=split, num_parallel_workers=args.num_parallel_workers,
        download=args.dataset_download, shuffle=shuffle, num_shards=num_shards, shard_id=shard_id,
    )
    transforms = create_transforms(
        dataset_name=args.dataset, is_training=False, image_resize=args.image_resize, crop_pct=args.crop_pct,
        interpolation=args.interpolation, mean=args.mean, std=args.std,
    )
    loader = create_loader(
        dataset=dataset, batch_size=args.batch_size, drop_remainder=False, is_training=False,
        transform=transforms, num_parallel_workers=args.num_parallel_workers,
    )
    return loader


def read_epoch_log(ckpt_save_dir) -> list:
    """The rows of MindCV's per-epoch ``result.log`` (written by ``StateMonitor``): one dict per epoch,
    e.g. ``{"Epoch": 1, "TrainLoss": 2.1, "Top_1_Accuracy": 0.42, ...}`` (accuracies as fractions; they
    are 0 for epochs without validation)."""
    path = os.path.join(ckpt_save_dir, "result.log")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f if line.strip()]
    header, rows = lines[0], []
    for fields in lines[1:]:
        row = {}
        for key, text in zip(header, fields):
            row[key] = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        row["Epoch"] = int(row["Epoch"])
        rows.append(row)
    return rows


def eval_metrics():
    from mindspore import nn

    return {"Top_1_Accuracy": nn.Top1CategoricalAccuracy(), "loss": nn.Loss()}


def optimizer_and_trainer(network, loss, args, lr, metrics=None, opt_ckpt_path=""):
    """``train.py``'s ``create_optimizer`` + ``create_trainer`` calls: the optimizer carries the loss scale
    only for a fixed scale without overflow skip (otherwise the train step divides it out)."""
    from mindcv.optim import create_optimizer
    from mindcv.utils import create_trainer, require_customized_train_step

    customized = require_customized_train_step(
        args.ema, args.clip_grad, args.gradient_accumulation_steps, args.amp_cast_list
    )
    if args.loss_scale_type == "fixed" and args.drop_overflow_update is False and not customized:
        optimizer_loss_scale = args.loss_scale
    else:
        optimizer_loss_scale = 1.0
    optimizer = create_optimizer(
        network, opt=args.opt, lr=lr, weight_decay=args.weight_decay, momentum=args.momentum,
        nesterov=args.use_nesterov, weight_decay_filter=args.weight_decay_filter, layer_decay=args.layer_decay,
        loss_scale=optimizer_loss_scale, checkpoint_path=opt_ckpt_path, eps=args.eps,
    )
    trainer = create_trainer(
        network, loss, optimizer, metrics, amp_level=args.amp_level, amp_cast_list=args.amp_cast_list,
        loss_scale_type=args.loss_scale_type, loss_scale=args.loss_scale,
        drop_overflow_update=args.drop_overflow_update, ema=args.ema, ema_decay=args.ema_decay,
        clip_grad=args.clip_grad, clip_value=args.clip_value,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
    )
    return optimizer, trainer


def train(args, dump_weights_dir=None, summary=True, ascend_precision_mode=None) -> dict:
    """``summary=False``: MindCV's ``StateMonitor`` without its MindInsight summary (see ``without_summary``);
    everything else (logging, ``result.log``, checkpoints, val_while_train) is unchanged.
    ``ascend_precision_mode``: CANN's ``precision_mode`` (Ascend only), set before the network is built."""
    check_ascend_precision_mode(ascend_precision_mode, args.device_target)
    import mindspore as ms
    from mindspore import Tensor
    from mindspore.communication import get_group_size, get_rank, init

    from mindcv.data import create_dataset, create_loader, create_transforms
    from mindcv.loss import create_loss
    from mindcv.models import create_model
    from mindcv.scheduler import create_scheduler
    from mindcv.utils import AllReduceSum, StateMonitor, get_metrics, set_logger, set_seed

    ms.set_context(mode=args.mode, device_target=args.device_target)
    if args.mode == ms.GRAPH_MODE:
        ms.set_context(jit_config={"jit_level": "O2"})
    set_ascend_precision_mode(ascend_precision_mode)
    if args.distribute:
        init()
        rank_id, device_num = get_rank(), get_group_size()
        ms.set_auto_parallel_context(device_num=device_num, parallel_mode="data_parallel", gradients_mean=True)
        all_reduce = AllReduceSum()
    else:
        rank_id, device_num, all_reduce = None, None, None

    set_seed(args.seed)
    set_logger(name="mindcv", output_dir=args.ckpt_save_dir, rank=rank_id, color=False)

    dataset_train = create_dataset(
        name=args.dataset, root=args.data_dir, split=args.train_split, shuffle=args.shuffle,
        num_samples=args.num_samples, num_shards=device_num, shard_id=rank_id,
        num_parallel_workers=args.num_parallel_workers, download=args.dataset_download,
        num_aug_repeats=args.aug_repeats,
    )
    num_classes = dataset_train.num_classes() if args.num_classes is None else args.num_classes

    num_aug_splits = args.aug_splits if args.aug_splits > 0 else 0
    transform_list = create_transforms(
        dataset_name=args.dataset, is_training=True, image_resize=args.image_resize, scale=args.scale,
        ratio=args.ratio, hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter,
        interpolation=args.interpolation, auto_augment=args.auto_augment, mean=args.mean, std=args.std,
        re_prob=args.re_prob, re_scale=args.re_scale, re_ratio=args.re_ratio, re_value=args.re_value,
        re_max_attempts=args.re_max_attempts, separate=num_aug_splits > 0,
    )
    loader_train = create_loader(
        dataset=dataset_train, batch_size=args.batch_size, drop_remainder=args.drop_remainder, is_training=True,
        mixup=args.mixup, cutmix=args.cutmix, cutmix_prob=args.cutmix_prob, num_classes=num_classes,
        transform=transform_list, num_parallel_workers=args.num_parallel_workers, separate=num_aug_splits > 0,
    )
    num_batches = loader_train.get_dataset_size()
    train_count = dataset_train.get_dataset_size()
    if args.distribute:  # float32: the CPU backend has no int32 AllReduce (train.py uses int32)
        train_count = int(all_reduce(Tensor(train_count, ms.float32)).asnumpy())

    loader_eval = None
    if args.val_while_train:
        loader_eval = make_eval_loader(args, args.val_split, shuffle=True, num_shards=device_num, shard_id=rank_id)

    network = create_model(
        model_name=args.model, num_classes=num_classes, in_channels=args.in_channels, drop_rate=args.drop_rate,
        drop_path_rate=args.drop_path_rate, pretrained=args.pretrained, checkpoint_path=args.ckpt_path, ema=args.ema,
    )
    num_params = sum(p.size for p in network.get_parameters())
    loss = create_loss(
        name=args.loss, reduction=args.reduction, label_smoothing=args.label_smoothing, aux_factor=args.aux_factor
    )
    lr_scheduler = create_scheduler(
        num_batches, scheduler=args.scheduler, lr=args.lr, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs,
        warmup_factor=args.warmup_factor, decay_epochs=args.decay_epochs, decay_rate=args.decay_rate,
        milestones=args.multi_step_decay_milestones, num_epochs=args.epoch_size, num_cycles=args.num_cycles,
        cycle_decay=args.cycle_decay, lr_epoch_stair=args.lr_epoch_stair,
    )
    opt_ckpt_path = ""
    if args.ckpt_path != "" and args.resume_opt:
        opt_ckpt_path = os.path.join(args.ckpt_save_dir, f"optim_{args.model}.ckpt")
    metrics = get_metrics(num_classes)
    optimizer, trainer = optimizer_and_trainer(network, loss, args, lr_scheduler, metrics, opt_ckpt_path)
    monitor_cls = StateMonitor if summary else without_summary(StateMonitor)
    state_cb = monitor_cls(
        trainer, model_name=args.model, model_ema=args.ema, last_epoch=0, dataset_sink_mode=args.dataset_sink_mode,
        dataset_val=loader_eval, metric_name=list(metrics.keys()), val_interval=args.val_interval,
        ckpt_save_dir=args.ckpt_save_dir, ckpt_save_interval=args.ckpt_save_interval,
        ckpt_save_policy=args.ckpt_save_policy, ckpt_keep_max=args.keep_checkpoint_max,
        summary_dir=f"{args.ckpt_save_dir}/summary", log_interval=args.log_interval, rank_id=rank_id,
        device_num=device_num,
    )
    recorder = make_step_recorder()

    # not in train.py: evaluate on the train split (eval transforms) before and after training
    from mindspore import Model

    evaluator = Model(network, loss_fn=loss, metrics=eval_metrics())
    eval_train_loader = make_eval_loader(args, args.train_split)
    before = evaluator.eval(eval_train_loader, dataset_sink_mode=False)

    logger.info(
        f"Model: {args.model}, parameters: {num_params}, classes: {num_classes}, train samples: {train_count}, "
        f"batches per epoch: {num_batches}, mode: {args.mode}, devices: {device_num or 1}. Start training"
    )
    t0 = time.perf_counter()
    # the recorder first: its epoch time then ends before StateMonitor's val_while_train evaluation
    trainer.train(args.epoch_size, loader_train, callbacks=[recorder, state_cb], dataset_sink_mode=args.dataset_sink_mode)
    train_seconds = time.perf_counter() - t0

    after_train = evaluator.eval(eval_train_loader, dataset_sink_mode=False)
    after_val = evaluator.eval(make_eval_loader(args, args.val_split), dataset_sink_mode=False)

    images_per_epoch = num_batches * args.batch_size * (device_num or 1)
    steady = recorder.epoch_times[1:] or recorder.epoch_times
    result = {
        "model": args.model, "network_class": f"{type(network).__module__}.{type(network).__name__}",
        "mindcv_halonet_in_sys_modules": "mindcv_halonet" in sys.modules, "num_params": int(num_params),
        "args": vars(args), "num_classes": int(num_classes), "mode": args.mode,
        "rank_id": rank_id, "device_num": device_num or 1, "train_count": int(train_count),
        "num_batches": num_batches, "epochs": args.epoch_size, "step_losses": recorder.losses,
        "epoch_seconds": recorder.epoch_times, "train_seconds": train_seconds,
        "epoch_log": read_epoch_log(args.ckpt_save_dir),
        "images_per_second": images_per_epoch / (sum(steady) / len(steady)),
        "throughput_excludes_first_epoch": len(recorder.epoch_times) > 1,
        "train_eval_before": before, "train_eval_after": after_train, "val_eval": after_val,
        "checkpoint": os.path.abspath(
            os.path.join(args.ckpt_save_dir, f"{args.model}-{args.epoch_size}_{num_batches}.ckpt")
        ),
    }
    if dump_weights_dir:
        import numpy as np

        os.makedirs(dump_weights_dir, exist_ok=True)
        arrays = {p.name: p.asnumpy() for p in network.get_parameters()}
        trainable = sorted(p.name for p in network.trainable_params())
        path = os.path.join(dump_weights_dir, f"rank_{rank_id or 0}.npz")
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        result["weights_file"], result["trainable_names"] = path, trainable
    return result


def cli_args(argv=None, description=None):
    p = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    p.add_argument("-c", "--config", default=None, help="recipe YAML (keys of MindCV's config.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    p.add_argument("--result-json", default=None, help="write the result here (atomically)")
    p.add_argument("--dump-weights", default=None, help="save every parameter to DIR/rank_<id>.npz")
    p.add_argument("--ascend-precision-mode", default=None, choices=ASCEND_PRECISION_MODES, metavar="MODE",
                   help="Ascend only: CANN precision_mode (ascend_config); must_keep_origin_dtype keeps the attention's "
                        f"float32 logits on every chip. One of: {', '.join(ASCEND_PRECISION_MODES)}")
    a = p.parse_args(argv)
    return a, load_args(a.config, dict(parse_override(s) for s in a.set))


def main(argv=None):
    a, args = cli_args(argv)
    result = train(args, dump_weights_dir=a.dump_weights, ascend_precision_mode=a.ascend_precision_mode)
    if a.result_json:
        target = a.result_json.replace("{rank}", str(result["rank_id"] or 0))
        write_json_atomic(target, result)
    print(
        f"train top-1 {result['train_eval_after']['Top_1_Accuracy']:.4f} (before {result['train_eval_before']['Top_1_Accuracy']:.4f}), "
        f"val top-1 {result['val_eval']['Top_1_Accuracy']:.4f}, {result['images_per_second']:.1f} img/s"
    )


if __name__ == "__main__":
    main()
