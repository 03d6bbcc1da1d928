"""Evaluate a checkpoint like MindCV's ``validate.py``: the same factories, in the same order.

``create_dataset`` (val split) -> ``create_transforms`` (eval) -> ``create_loader`` ->
``create_model(name, checkpoint_path=...)`` -> ``auto_mixed_precision(val_amp_level)`` ->
``create_loss`` -> ``Model.eval``. It never imports ``mindcv_halonet``. Beyond ``validate.py`` the result
also holds the confusion matrix of the split (rows: true class, columns: predicted class). Usage::

    python scripts/factory_validate.py -c RECIPE --set ckpt_path=PATH --set device_target=CPU ... \
        [--result-json out.json]
"""
import sys

# `python scripts/factory_validate.py` puts this directory first on sys.path
from factory_train import check_ascend_precision_mode, cli_args, set_ascend_precision_mode, write_json_atomic


def divisor_batch_size(num_samples: int, batch_size: int) -> int:
    """Largest batch size <= ``batch_size`` dividing ``num_samples`` (what validate.py picks)."""
    for bs in range(batch_size, 0, -1):
        if num_samples % bs == 0:
            return bs
    return 1


def validate(args, ascend_precision_mode=None) -> dict:
    check_ascend_precision_mode(ascend_precision_mode, args.device_target)
    import mindspore as ms
    from mindspore import Model, nn

    from mindcv.data import create_dataset, create_loader, create_transforms
    from mindcv.loss import create_loss
    from mindcv.models import create_model

    ms.set_context(device_target=args.device_target)
    ms.set_context(mode=args.mode)
    if args.mode == ms.GRAPH_MODE:
        ms.set_context(jit_config={"jit_level": "O2"})
    set_ascend_precision_mode(ascend_precision_mode)

    dataset_eval = create_dataset(
        name=args.dataset, root=args.data_dir, split=args.val_split, num_parallel_workers=args.num_parallel_workers,
        download=args.dataset_download, shuffle=args.eval_shuffle,
    )
    transform_list = create_transforms(
        dataset_name=args.dataset, is_training=False, image_resize=args.image_resize, crop_pct=args.crop_pct,
        interpolation=args.interpolation, mean=args.mean, std=args.std,
    )
    num_classes = dataset_eval.num_classes() if args.num_classes is None else args.num_classes
    batch_size = divisor_batch_size(dataset_eval.get_dataset_size(), args.batch_size)
    loader_eval = create_loader(
        dataset=dataset_eval, batch_size=batch_size, drop_remainder=False, is_training=False,
        transform=transform_list, num_parallel_workers=args.num_parallel_workers,
    )
    network = create_model(
        model_name=args.model, num_classes=num_classes, drop_rate=args.drop_rate,
        drop_path_rate=args.drop_path_rate, pretrained=args.pretrained, checkpoint_path=args.ckpt_path, ema=args.ema,
    )
    network.set_train(False)
    ms.amp.auto_mixed_precision(network, amp_level=args.val_amp_level)
    loss = create_loss(
        name=args.loss, reduction=args.reduction, label_smoothing=args.label_smoothing, aux_factor=args.aux_factor
    )
    metrics = {"Top_1_Accuracy": nn.Top1CategoricalAccuracy(), "loss": nn.metrics.Loss()}
    if num_classes >= 5:
        metrics["Top_5_Accuracy"] = nn.Top5CategoricalAccuracy()
    metrics["confusion_matrix"] = ms.train.ConfusionMatrix(num_classes=num_classes, normalize="no_norm")
    result = Model(network, loss_fn=loss, metrics=metrics).eval(loader_eval, dataset_sink_mode=False)
    confusion = result.pop("confusion_matrix")
    return {
        "confusion_matrix": [[int(round(x)) for x in row] for row in confusion],
        "model": args.model, "checkpoint": args.ckpt_path, "network_class": f"{type(network).__module__}.{type(network).__name__}",
        "num_samples": dataset_eval.get_dataset_size(), "batch_size": batch_size, "metrics": result,
        "mindcv_halonet_in_sys_modules": "mindcv_halonet" in sys.modules,
    }


def main(argv=None):
    a, args = cli_args(argv, description=__doc__.splitlines()[0])
    if not args.ckpt_path:
        raise ValueError("ckpt_path is empty; pass --set ckpt_path=/path/to/model.ckpt")
    result = validate(args, ascend_precision_mode=a.ascend_precision_mode)
    if a.result_json:
        write_json_atomic(a.result_json, result)
    print(f"Model: {result['model']}  checkpoint: {result['checkpoint']}  {result['metrics']}")


if __name__ == "__main__":
    main()
