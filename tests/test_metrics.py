"""minidl.metrics: the running means behind fit's and evaluate's figures."""

import numpy as np

from minidl.layers import SoftmaxCE
from minidl.metrics import RunningMetrics


def test_running_metrics_buffer_gives_the_same_means_as_per_batch_metrics():
    head = SoftmaxCE()
    head.build((3,), dtype="float64")
    rng = np.random.default_rng(1)
    batches = [(rng.normal(size=(k, 3)), rng.integers(0, 3, k)) for k in (1, 4, 2, 5, 3, 1)]
    buffered, direct = RunningMetrics(head, capacity=5), RunningMetrics(head, capacity=0)
    for running in (buffered, direct):
        for z, t in batches:
            running.add(head.loss_and_grad(z, t)[0], z, t)
            running.means()  # reading midway must not double-count
    assert buffered.means() == direct.means()
    z = np.concatenate([b[0] for b in batches])
    t = np.concatenate([b[1] for b in batches])
    assert buffered.means()["accuracy"] == np.mean(z.argmax(axis=1) == t)


def test_metrics_with_nan_for_unscored_steps_average_over_the_scored_ones():
    loss = SoftmaxCE()
    loss.build((2, 3), dtype="float64")
    z = np.array([[[5.0, 0, 0], [0, 5.0, 0]], [[5.0, 0, 0], [5.0, 0, 0]]])  # predicts 0 1 / 0 0
    y = np.array([[0, 0], [0, -100]])
    mask = np.array([[True, True], [True, True]])
    for capacity in (0, 4):
        running = RunningMetrics(loss, capacity=capacity)
        running.add(1.0, z[:1], y[:1], mask[:1])
        running.add(1.0, z[1:], y[1:], mask[1:])
        assert running.means()["accuracy"] == 2 / 3  # right, wrong, right; the ignored step not counted
