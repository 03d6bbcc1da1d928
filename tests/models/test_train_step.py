"""A compiled (Graph mode) training loop of halonet_26t must not hang and must learn.

Runs in a child interpreter with a timeout: the CPU op-library hang seen with ``ops.pad`` backward
(see the project's MindSpore CPU facts note) shows up only after several steps of a compiled
train step, and a hung test must fail instead of blocking the suite.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 12
TIMEOUT_S = 420

CHILD = textwrap.dedent(
    f"""
    import json, numpy as np, mindspore as ms
    from mindspore import Tensor, nn
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    from mindcv_halonet.models import halonet

    net = halonet.halonet_26t(num_classes=4, drop_path_rate=0.05)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.02, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), opt)
    step.set_train(True)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
    y = Tensor(np.array([1, 3], np.int32))
    losses = [float(step(x, y).asnumpy()) for _ in range({STEPS})]
    print("@@LOSSES@@" + json.dumps(losses))
    """
)


def test_graph_train_step_does_not_hang_and_loss_decreases():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("GLOG_v", "3")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=str(REPO), env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("@@LOSSES@@")][-1]
    losses = json.loads(line[len("@@LOSSES@@"):])
    assert len(losses) == STEPS and all(l == l for l in losses)  # no NaN
    assert np_mean(losses[-3:]) < 0.5 * losses[0], losses


def np_mean(values):
    return sum(values) / len(values)
