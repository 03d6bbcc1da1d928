"""Two-worker data-parallel training on CPU under ``msrun``, through MindCV's factories.

MindCV's own train.py cannot do this on CPU (it all-reduces an int32 sample count; MindSpore's CPU
AllReduce takes floats only), so ``scripts/factory_train.py`` all-reduces it as float32 and is
otherwise the train.py path. Both ranks must end with identical trainable weights.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import CONFIG_DIR, SCRIPTS_DIR, subprocess_env
from tests.train.tiny_setup import CPU, MODEL, NO_HEAVY_AUG, NUM_CLASSES, TINY, TRAIN_PER_CLASS, sets

WORKERS = 2


def _msrun():
    local = os.path.join(os.path.dirname(sys.executable), "msrun")
    return local if os.path.exists(local) else shutil.which("msrun")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_end_with_identical_weights(tmp_path, tiny_data):
    # msrun is installed with the pinned mindspore: a missing one is a broken install, not a skip
    assert _msrun() is not None, f"msrun not found beside {sys.executable} nor on PATH (installed with mindspore)"
    overrides = {**CPU, **TINY, **NO_HEAVY_AUG, "distribute": True, "num_parallel_workers": 1, "batch_size": 8,
                 "data_dir": str(tiny_data), "mode": 0, "epoch_size": 2, "decay_epochs": 1,
                 "val_while_train": False, "ckpt_save_dir": str(tmp_path / "ckpt")}
    cmd = [_msrun(), "--worker_num", str(WORKERS), "--local_worker_num", str(WORKERS), "--master_port",
           str(_free_port()), "--join", "True", "--log_dir", str(tmp_path / "msrun_log"),
           str(SCRIPTS_DIR / "factory_train.py"), "-c", str(CONFIG_DIR / f"{MODEL}_ascend.yaml"), *sets(overrides),
           "--result-json", str(tmp_path / "result_{rank}.json"), "--dump-weights", str(tmp_path / "weights")]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=subprocess_env(), capture_output=True, text=True, timeout=1200)
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in sorted((tmp_path / "msrun_log").glob("*.log")))
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{logs}"

    results = [json.loads((tmp_path / f"result_{r}.json").read_text()) for r in range(WORKERS)]
    assert sorted(r["rank_id"] for r in results) == list(range(WORKERS))
    for r in results:
        assert r["device_num"] == WORKERS
        assert r["train_count"] == NUM_CLASSES * TRAIN_PER_CLASS  # float all-reduce of the shard sizes
        assert r["network_class"].startswith("mindcv_halonet.")
    # each rank saw its own shard ...
    assert results[0]["step_losses"] != results[1]["step_losses"]
    # ... and the averaged gradients kept the trainable weights identical
    w0, w1 = (np.load(r["weights_file"]) for r in results)
    trainable = results[0]["trainable_names"]
    assert trainable and set(trainable) <= set(w0.files)
    start = results[0]["train_eval_before"]
    assert start == results[1]["train_eval_before"]  # same seed -> same initial weights on both ranks
    for name in trainable:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)
