"""minidl.backend.numpy: the fast paths of Conv2D, MaxPool2D, BatchNorm2D, ReLU and the training loop agree
with the loop-based oracles in minidl.backend.reference, for random shapes, both dtypes, every memory layout,
and every special case. Every test here runs under each backend (the fast one's kernels agree with the
oracles too)."""

import functools
import importlib.util
import pathlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import minidl.backend.numpy as nb
from helpers import built
from minidl import Sequential, set_num_threads
from minidl.backend import available_backends, set_backend
from minidl.callbacks import Callback
from minidl.guard import NonFiniteLossError
from minidl.layers import BatchNorm2D, Conv2D, Dense, Flatten, Layer, MaxPool2D, Parameter, ReLU, SoftmaxCE
from minidl.backend.numpy import matmul_nt, matmul_wide
from minidl.layers.conv import resolve_padding
from minidl.optim import SGD
from minidl.testing import MEMORY_LAYOUTS, stored_as
from reference import (batchnorm2d_reference, conv2d_backward_reference, conv2d_reference, maxpool2d_backward_reference,
                       maxpool2d_reference)

DTYPES = ["float32", "float64"]


#: Tests of the NumPy backend's own machinery (its reused arrays) or of the benchmark scripts: numpy only.
NUMPY_ONLY = {"test_layers_reused_arrays_are_replaced_when_they_come_back_read_only", "test_benchmark_quick_mode_runs",
              "test_layer_times_prints_every_layer_and_the_sums", "test_layer_times_opens_the_residual_blocks"}


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ not in NUMPY_ONLY:
        metafunc.parametrize("backend_under_test", available_backends(), indirect=True)


@pytest.fixture(autouse=True)
def backend_under_test(request, monkeypatch):
    """Each test under each backend (see ``pytest_generate_tests``); the fast one with its compiled kernels even
    for the tiny shapes here."""
    name = getattr(request, "param", "numpy")
    if name == "fast":
        import minidl.backend.fast as fast

        monkeypatch.setattr(fast, "PARALLEL_MIN_SIZE", 0)
    set_backend(name)
    yield name
    set_backend(None)
TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-10, atol=1e-12)}


#: NCHW; batch-innermost (C, H, W, N), what Conv2D hands to the next layer; channels-major (C, N, H, W).
LAYOUTS = [functools.partial(stored_as, order=order) for order in MEMORY_LAYOUTS.values()]


@st.composite
def conv_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.just("same"), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    pads = resolve_padding(padding, size, kernel, stride)
    assume(all(kernel[a] <= size[a] + sum(pads[a]) for a in range(2)))
    return dict(batch=draw(st.integers(1, 4)), channels=draw(st.integers(1, 3)), filters=draw(st.integers(1, 4)),
                kernel=kernel, stride=stride, padding=padding, pads=pads, size=size,
                dtype=draw(st.sampled_from(DTYPES)), layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 99)))


@pytest.mark.parametrize("min_channels", [1, 10**9], ids=["input-grad-as-convolution", "input-grad-by-col2im"])
@given(case=conv_cases())
def test_conv2d_forward_and_backward_match_the_loop_reference(case, min_channels):
    original = nb.TRANSPOSED_MIN_CHANNELS
    nb.TRANSPOSED_MIN_CHANNELS = min_channels  # force one input-gradient path or the other
    try:
        layer = built(Conv2D(case["filters"], case["kernel"], stride=case["stride"], padding=case["padding"]),
                      (case["channels"], *case["size"]), dtype=case["dtype"], seed=case["seed"])
        rng = np.random.default_rng(case["seed"])
        x = case["layout"](rng.standard_normal((case["batch"], case["channels"], *case["size"])).astype(case["dtype"]))
        out = layer.forward(x, training=True)
        assert out.dtype == np.dtype(case["dtype"])
        w, b = layer.weight.data, layer.bias.data
        np.testing.assert_allclose(out, conv2d_reference(x, w, b, case["stride"], case["pads"]), **TOL[case["dtype"]])
        g = rng.standard_normal(out.shape).astype(case["dtype"])
        dx = layer.backward(g)
        ref_dx, ref_dw, ref_db = conv2d_backward_reference(x, w, g, case["stride"], case["pads"])
        np.testing.assert_allclose(dx, ref_dx, **TOL[case["dtype"]])
        np.testing.assert_allclose(layer.weight.grad, ref_dw, **TOL[case["dtype"]])
        np.testing.assert_allclose(layer.bias.grad, ref_db, **TOL[case["dtype"]])
    finally:
        nb.TRANSPOSED_MIN_CHANNELS = original


@given(conv_cases())
def test_conv2d_in_row_blocks_matches_the_loop_reference(case):
    original = nb.CONV_BLOCK, nb.COL2IM_BLOCK, nb.PARALLEL_MIN_FLOPS
    nb.CONV_BLOCK = nb.COL2IM_BLOCK = 1  # one output row per block: the smallest blocks there are
    nb.PARALLEL_MIN_FLOPS = 0  # and on the pool's threads however small
    try:
        layer = built(Conv2D(case["filters"], case["kernel"], stride=case["stride"], padding=case["padding"]),
                      (case["channels"], *case["size"]), dtype=case["dtype"], seed=case["seed"])
        rng = np.random.default_rng(case["seed"])
        x = case["layout"](rng.standard_normal((case["batch"], case["channels"], *case["size"])).astype(case["dtype"]))
        w, b = layer.weight.data, layer.bias.data
        out = layer.forward(x, training=False)
        np.testing.assert_allclose(out, conv2d_reference(x, w, b, case["stride"], case["pads"]), **TOL[case["dtype"]])
        g = rng.standard_normal(out.shape).astype(case["dtype"])
        dx = layer.backward(g)  # after an inference forward, backward rebuilds what it needs
        ref_dx, ref_dw, _ = conv2d_backward_reference(x, w, g, case["stride"], case["pads"])
        np.testing.assert_allclose(dx, ref_dx, **TOL[case["dtype"]])
        np.testing.assert_allclose(layer.weight.grad, ref_dw, **TOL[case["dtype"]])
    finally:
        nb.CONV_BLOCK, nb.COL2IM_BLOCK, nb.PARALLEL_MIN_FLOPS = original


def test_conv2d_padding_buffer_is_reused_without_stale_values():
    layer = built(Conv2D(2, 3, padding=1), (1, 4, 4))
    rng = np.random.default_rng(0)
    for batch in (3, 3, 1, 3):  # same batch reuses the buffer, a new batch size replaces it
        x = rng.standard_normal((batch, 1, 4, 4))
        ref = conv2d_reference(x, layer.weight.data, layer.bias.data, (1, 1), ((1, 1), (1, 1)))
        np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-12, atol=1e-12)


def test_conv2d_backward_params_gives_the_same_parameter_grads_and_no_input_grad():
    layer = built(Conv2D(3, 2, stride=2), (2, 6, 5))
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 5))
    g = np.random.default_rng(2).standard_normal((2, 3, 3, 2))
    layer.forward(x, training=True)
    assert layer.backward(g).shape == x.shape
    dw, db = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer.weight.grad[...] = 0
    layer.bias.grad[...] = 0
    assert layer.backward_params(g) is None
    np.testing.assert_array_equal(layer.weight.grad, dw)
    np.testing.assert_array_equal(layer.bias.grad, db)
    assert layer.backward(g).shape == x.shape  # nothing was switched off


def test_backward_params_defaults_to_backward():
    layer = built(Dense(3), (4,))
    x = np.random.default_rng(1).standard_normal((2, 4))
    g = np.random.default_rng(2).standard_normal((2, 3))
    layer.forward(x, training=True)
    layer.backward(g)
    dw = layer.weight.grad.copy()
    layer.weight.grad[...] = 0
    assert layer.backward_params(g) is None
    np.testing.assert_array_equal(layer.weight.grad, dw)


@pytest.mark.parametrize("length", [1, 1024, 1025, 5000, 8192, 8193, 20001])
def test_chunked_weight_gradient_gemm_matches_one_matmul(length):
    rng = np.random.default_rng(length)
    a, b = rng.standard_normal((3, length)), rng.standard_normal((4, length))
    out = np.empty((3, 4))
    np.testing.assert_allclose(matmul_nt(a, b, out=out, chunk=4096), a @ b.T, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_conv_products_give_the_bits_of_the_one_thread_loop_at_any_thread_count(monkeypatch, n, dtype):
    from threadpoolctl import threadpool_limits

    from minidl import set_num_threads, threads

    c, f, (kh, kw), (oh, ow), batch = 8, 6, (3, 3), (10, 10), 64
    monkeypatch.setattr(nb, "CONV_BLOCK", c * kh * kw * ow * batch * 2)  # 2 output rows a block: 5 blocks
    monkeypatch.setattr(nb, "PARALLEL_MIN_FLOPS", 0)
    rng = np.random.default_rng(0)
    x_pad = rng.standard_normal((c, oh + kh - 1, ow + kw - 1, batch)).astype(dtype)
    weight = rng.standard_normal((f, c * kh * kw)).astype(dtype)
    grad = rng.standard_normal((f, oh * ow * batch)).astype(dtype)
    width = ow * batch
    # The loop nb.py ran before the thread pool: one block after the other, with one BLAS thread,
    # summing the weight gradient as it goes.
    forward, dw, part = np.empty((f, oh * width), dtype), np.empty((f, c * kh * kw), dtype), None
    with threadpool_limits(1):
        for i in range(0, oh, 2):
            cols = nb.im2col(x_pad, (kh, kw), (1, 1), (2, ow), first_row=i)
            matmul_wide(weight, cols, out=forward[:, i * width:(i + 2) * width])
            g = grad[:, i * width:(i + 2) * width]
            if i == 0:
                matmul_nt(g, cols, out=dw)
            else:
                part = matmul_nt(g, cols, out=np.empty_like(dw) if part is None else part)
                dw += part
    set_num_threads(n)
    try:
        with threads.blas_threads():
            buffers: dict = {}
            assert np.array_equal(nb.conv_forward(x_pad, weight, (kh, kw), (1, 1), (oh, ow), buffers), forward)
            out = np.empty_like(dw)
            nb.conv_weight_grad(x_pad, grad, (kh, kw), (1, 1), (oh, ow), out, buffers)
            assert np.array_equal(out, dw)
    finally:
        set_num_threads(None)


@st.composite
def pool_cases(draw):
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["tiles", "stride>pool", "stride<pool", "padding"]))
    stride = {"tiles": None,
              "stride>pool": (pool[0] + draw(st.integers(1, 2)), pool[1] + draw(st.integers(0, 2))),
              "stride<pool": (draw(st.integers(1, pool[0])), draw(st.integers(1, pool[1]))),
              "padding": (draw(st.integers(1, 3)), draw(st.integers(1, 3)))}[kind]
    padding = (pool[0] // 2, pool[1] // 2) if kind == "padding" else (0, 0)
    if kind == "tiles" and draw(st.booleans()):  # whole windows cover the input, or edges are dropped
        size = (pool[0] * draw(st.integers(1, 4)), pool[1] * draw(st.integers(1, 4)))
    else:
        size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    assume(pool[0] <= size[0] + 2 * padding[0] and pool[1] <= size[1] + 2 * padding[1])
    return dict(batch=draw(st.integers(1, 3)), channels=draw(st.integers(1, 3)), pool=pool, stride=stride,
                padding=padding, size=size, dtype=draw(st.sampled_from(DTYPES)),
                ties=draw(st.booleans()), layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 99)))


@pytest.mark.parametrize("small_input", [0, 10**9], ids=["strided-views", "small-argmax"])
@given(case=pool_cases())
@example(case=dict(batch=2, channels=2, pool=(2, 2), stride=None, padding=(0, 0), size=(4, 6), dtype="float64",
                   ties=True, layout=LAYOUTS[0], seed=0))
@example(case=dict(batch=2, channels=2, pool=(2, 3), stride=None, padding=(0, 0), size=(5, 7), dtype="float32",
                   ties=True, layout=LAYOUTS[1], seed=1))
def test_maxpool2d_paths_match_the_loop_reference(case, small_input):
    original = nb.SMALL_INPUT
    nb.SMALL_INPUT = small_input  # force one path or the other on the same inputs
    try:
        layer = built(MaxPool2D(case["pool"], stride=case["stride"], padding=case["padding"]),
                      (case["channels"], *case["size"]), dtype=case["dtype"])
        rng = np.random.default_rng(case["seed"])
        shape = (case["batch"], case["channels"], *case["size"])
        # ties=True: few distinct values, so most windows hold several equal maxima
        x = (rng.integers(-1, 2, shape) if case["ties"] else rng.standard_normal(shape)).astype(case["dtype"])
        x = case["layout"](x)
        stride = case["stride"] or case["pool"]
        out = layer.forward(x, training=True)
        np.testing.assert_array_equal(out, maxpool2d_reference(x, case["pool"], stride, case["padding"]))
        g = rng.standard_normal(out.shape).astype(case["dtype"])
        ref = maxpool2d_backward_reference(x, g, case["pool"], stride, case["padding"])
        np.testing.assert_allclose(layer.backward(g), ref, **TOL[case["dtype"]])
        tiles = stride == case["pool"] and case["padding"] == (0, 0)
        covered = all(out.shape[2 + a] * case["pool"][a] == case["size"][a] for a in range(2))
        expected_path = "general" if not tiles else "small" if covered and small_input else "tiled"
        assert layer._ctx.path == expected_path
    finally:
        nb.SMALL_INPUT = original


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_relu_matches_where_and_keeps_the_memory_layout(dtype, layout):
    x = layout(np.random.default_rng(0).standard_normal((3, 2, 4, 5)).astype(dtype))
    layer = built(ReLU(), (2, 4, 5), dtype=dtype)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, np.where(x > 0, x, 0))
    assert out.strides == x.strides
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(g), np.where(x > 0, g, 0))


def small_cnn(dtype="float64"):
    return Sequential([Conv2D(3, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(10), SoftmaxCE()],
                      input_shape=(1, 8, 8), seed=0, dtype=dtype)


def test_fit_epoch_matches_a_manual_loop_and_restores_input_grads():
    rng = np.random.default_rng(0)
    X, y = rng.random((50, 1, 8, 8)), rng.integers(0, 10, 50)
    model, manual = small_cnn(), small_cnn()
    logs = model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=1,
                     batch_size=16, shuffle=False, verbose=0).history
    opt = SGD(manual.parameters(), lr=0.1, momentum=0.9)
    total, correct = 0.0, 0
    for s in range(0, 50, 16):
        loss, logits = manual.forward_backward(X[s:s + 16], y[s:s + 16])
        opt.step()
        total += loss * len(logits)
        correct += int((logits.argmax(axis=1) == y[s:s + 16]).sum())
    assert logs["loss"] == [pytest.approx(total / 50, rel=1e-12)]
    assert logs["accuracy"] == [correct / 50]
    for name, p in model.named_parameters().items():
        np.testing.assert_allclose(p.data, manual.named_parameters()[name].data, rtol=1e-12, atol=1e-12)
    assert model.backward(np.ones((2, 10))).shape == (2, 1, 8, 8)


def test_sgd_updates_parameters_in_place():
    model = small_cnn()
    arrays = [p.data for p in model.parameters()]
    model.fit(np.random.default_rng(0).random((8, 1, 8, 8)), np.arange(8), epochs=2, batch_size=4, verbose=0,
              optimizer=SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))


def test_predict_works_in_chunks_of_bounded_memory():
    model = small_cnn("float32")
    X = np.random.default_rng(0).random((20000, 1, 8, 8), dtype=np.float32)
    im2col_all = 9 * X.size * X.itemsize  # Conv2D's unfolded input for all images at once
    model.predict(X[:256])  # a compiled backend loads its kernels (Python objects tracemalloc would count) first
    tracemalloc.start()
    proba = model.predict_proba(X, batch_size=256)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < im2col_all / 4
    np.testing.assert_allclose(proba[:300], model.loss.probabilities(model.forward(X[:300])), rtol=1e-6)


@pytest.mark.slow
def test_benchmark_quick_mode_runs(capsys):
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("minidl_benchmarks", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--scale", "0.01", "--frameworks", "minidl",
                       "--workloads", "digits-b32", "predict-10k"]) == 0
    out = capsys.readouterr().out
    assert "digits-b32" in out and "predict-10k" in out and "GFLOP/s" in out


@pytest.mark.slow
def test_layer_times_prints_every_layer_and_the_sums():
    import subprocess
    import sys

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "layer_times.py"
    out = subprocess.run([sys.executable, str(path), "--repeats", "1", "--threads", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line[:2].strip().isdigit()]
    assert [row.split()[1] for row in rows][:4] == ["Conv2D", "BatchNorm2D", "ReLU", "Conv2D"] and len(rows) == 16
    assert any(line.startswith("sum") for line in out.splitlines())


@pytest.mark.slow
def test_layer_times_opens_the_residual_blocks():
    import subprocess
    import sys

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "layer_times.py"
    out = subprocess.run([sys.executable, str(path), "--workload", "resnet-cifar", "--repeats", "1", "--threads", "2",
                          "--backends", "numpy"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line[:2].strip().isdigit()]
    # the stem, then block 3's body (Conv2D BatchNorm2D ReLU Conv2D BatchNorm2D), its shortcut, the add, the ReLU
    assert [(r[1], r[2]) for r in rows[3:12]] == [
        ("Conv2D", "3.0"), ("BatchNorm2D", "3.1"), ("ReLU", "3.2"), ("Conv2D", "3.3"), ("BatchNorm2D", "3.4"),
        ("Conv2D", "3.s0"), ("BatchNorm2D", "3.s1"), ("add", "3"), ("ReLU", "4")]
    assert len(rows) == 32 and [r[1] for r in rows].count("add") == 3
    assert any(line.startswith("whole step") for line in out.splitlines())


@pytest.mark.parametrize("shape", [(6, 25, 50176), (25, 6, 9000), (16, 150, 9000), (3, 4, 8192), (6, 25, 7168)])
def test_chunked_wide_gemm_matches_one_matmul(shape):
    m, k, length = shape
    rng = np.random.default_rng(length)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, length))
    np.testing.assert_allclose(matmul_wide(a, b), a @ b, rtol=1e-12, atol=1e-10)


def test_conv2d_pads_correctly_after_refusing_a_new_input_shape():
    layer = built(Conv2D(2, 3, padding=1), (1, 4, 4))
    rng = np.random.default_rng(0)
    layer.forward(rng.standard_normal((3, 1, 4, 4)))  # fills the pad buffer
    with pytest.raises(ValueError, match=r"already built for input shape \(1, 4, 4\).*\(2, 5, 3\)"):
        built(layer, (2, 5, 3))
    x = rng.standard_normal((3, 1, 4, 4))
    ref = conv2d_reference(x, layer.weight.data, layer.bias.data, (1, 1), ((1, 1), (1, 1)))
    np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-12, atol=1e-12)


def test_conv_relu_pool_hand_each_other_the_batch_innermost_layout():
    model = Sequential([Conv2D(3, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(2, 3), Flatten(), Dense(4), SoftmaxCE()],
                       input_shape=(2, 8, 8), seed=0)
    x = np.random.default_rng(0).random((40, 2, 8, 8), dtype=np.float32)  # big enough for the strided pool path
    for layer in model.layers[:4]:  # the layout the next layer's fast path expects (no transposing copies)
        x = layer.forward(x, training=True)
        assert x.transpose(1, 2, 3, 0).flags.c_contiguous, layer.name


@pytest.mark.parametrize("training", [False, True])
def test_conv2d_takes_an_empty_batch(training):
    layer = built(Conv2D(2, 3, padding=1), (1, 5, 5))
    assert layer.forward(np.zeros((0, 1, 5, 5)), training=training).shape == (0, 2, 5, 5)
    assert layer.backward(np.zeros((0, 2, 5, 5))).shape == (0, 1, 5, 5)
    np.testing.assert_array_equal(layer.weight.grad, 0)


class PoisonableScale(Layer):
    """``y = x ⊙ w`` on feature vectors; from the ``poison_at``-th backward on, its weight gradient is NaN,
    written into ``.grad`` in place or, with ``rebind=True``, as a new array bound to ``.grad``."""

    def __init__(self, poison_at: int = 10**9, rebind: bool = False) -> None:
        super().__init__()
        self.poison_at, self.rebind, self.calls = poison_at, rebind, 0

    def create_parameters(self, input_shape, rng, dtype):
        self.weight = Parameter(np.ones(input_shape, dtype=dtype))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x * self.weight.data

    def backward(self, grad_out):
        self.calls += 1
        grad = (grad_out * self._x).sum(axis=0) * (np.nan if self.calls >= self.poison_at else 1.0)
        if self.rebind:
            self.weight.grad = grad
        else:
            self.weight.grad[...] = grad
        return grad_out * self.weight.data


class GradSnapshots(Callback):
    def on_train_begin(self, logs=None):
        self.weights, self.grads = [self.model.state_dict()], []

    def on_batch_end(self, batch, logs=None):
        self.weights.append(self.model.state_dict())
        self.grads.append([p.grad.copy() for p in self.model.parameters()])


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("rebind", [False, True], ids=["written-in-place", "rebound"])
def test_the_gradient_check_stops_before_the_update_however_a_layer_sets_grad(rebind, fused):
    rng = np.random.default_rng(0)
    X, y = rng.random((12, 1, 8, 8)), np.arange(12) % 3
    poisoned = PoisonableScale(poison_at=3, rebind=rebind)
    model = Sequential([Conv2D(2, 3), ReLU(), Flatten(), poisoned, Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0, dtype="float64")
    snaps = GradSnapshots()
    with pytest.raises(NonFiniteLossError, match=r"gradients became non-finite .* at epoch 1, step 3"):
        model.fit(X, y, epochs=1, batch_size=4, shuffle=False, verbose=0, callbacks=[snaps],
                  optimizer=SGD(model.parameters(), lr=0.01, fused=fused))
    assert len(snaps.weights) == 3  # the start, then steps 1 and 2: step 3's update was not applied
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snaps.weights[-1][name])


def test_fit_leaves_the_gradient_layout_to_the_optimizer():
    rng = np.random.default_rng(1)
    X, y = rng.random((10, 1, 8, 8)), np.arange(10) % 3
    model = Sequential([Conv2D(2, 3), ReLU(), Flatten(), PoisonableScale(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 8, 8), seed=0)
    model.layers[4].bias.trainable = False  # frozen parameters are not fused, and keep their (zero) grad
    before = [p.grad for p in model.parameters()]
    opt = SGD(model.parameters(), lr=0.1, fused=True)
    (flat,) = opt.flat_grads()
    after = [p.grad for p in model.parameters()]
    snaps = GradSnapshots()
    model.fit(X, y, epochs=2, batch_size=4, verbose=0, callbacks=[snaps], optimizer=opt)
    for p, own, view, last in zip(model.parameters(), before, after, snaps.grads[-1], strict=True):
        assert p.grad is view  # neither fit nor the guard rebinds a .grad
        assert (p.grad.base is flat) == p.trainable and (p.grad is own) == (not p.trainable)
        np.testing.assert_array_equal(p.grad, last)
    assert np.any(snaps.grads[-1][0] != 0) and not np.any(model.layers[4].bias.grad)


@pytest.mark.parametrize("layer", [Dense(3), ReLU(), Flatten(), MaxPool2D(2)], ids=lambda l: l.name)
def test_check_input_fast_path_lets_through_only_what_the_full_check_accepts(layer):
    shape = (4,) if isinstance(layer, Dense) else (2, 4, 4)
    layer.build(shape, rng=np.random.default_rng(0), dtype=np.dtype("float32"))
    layer.check_input(np.zeros((3, *shape), dtype=np.float32))
    layer.check_input(np.zeros((0, *shape), dtype=np.float32))
    for bad, error in [(np.zeros((3, *shape)), TypeError), (np.zeros(shape, dtype=np.float32), ValueError),
                       (np.zeros((3, 1, *shape), dtype=np.float32), ValueError),
                       (np.array(0, dtype=np.float32), ValueError),
                       (np.zeros((3, *shape), dtype=np.float32).tolist(), TypeError)]:
        with pytest.raises(error, match=layer.name):
            layer.check_input(bad)


def test_softmax_ce_loss_follows_the_batch_size_when_it_changes():
    rng = np.random.default_rng(2)
    loss = SoftmaxCE()
    loss.build((5,), dtype=np.dtype("float64"))
    for n in (3, 1, 1, 4, 3):
        z, y = rng.standard_normal((n, 5)), rng.integers(0, 5, n)
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        value, grad = loss.loss_and_grad(z, y)
        assert value == pytest.approx(-log_p[np.arange(n), y].mean(), rel=1e-12)
        np.testing.assert_allclose(grad, (np.exp(log_p) - np.eye(5)[y]) / n, rtol=1e-12, atol=1e-15)


def test_a_callback_calling_backward_during_fit_gets_the_input_gradient():
    from minidl.callbacks import Callback
    from minidl.presets import blog_cnn

    shapes = []

    class Saliency(Callback):  # e.g. saliency maps: dL/dx of a batch, in the middle of training
        def on_batch_end(self, batch, logs=None):
            self.model.forward(np.zeros((2, 1, 8, 8), dtype=np.float32), training=True)
            shapes.append(self.model.backward(np.ones((2, 10), dtype=np.float32)).shape)

    model = blog_cnn(seed=0)
    X, y = np.random.default_rng(0).random((8, 1, 8, 8)), np.arange(8) % 10
    model.fit(X, y, epochs=1, batch_size=4, verbose=0, callbacks=[Saliency()])
    assert shapes == [(2, 1, 8, 8)] * 2


@pytest.mark.parametrize("block", [2**17, 2 * 6 * 4 * 5])  # 3 channels in one block, or in blocks of 2 and 1
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm2d_matches_the_per_channel_reference_in_every_layout(dtype, block, monkeypatch):
    monkeypatch.setattr(nb, "CHANNEL_BLOCK", block)
    layer = built(BatchNorm2D(), (3, 4, 5), dtype=dtype)
    rng = np.random.default_rng(0)
    layer.weight.data[...] = rng.uniform(0.5, 2, 3)
    layer.bias.data[...] = rng.standard_normal(3)
    # every pair of layouts for x and grad_out, some twice: the layer's scratch arrays follow the layout
    for x_layout, g_layout in [(a, b) for a in LAYOUTS for b in LAYOUTS] + [(LAYOUTS[1], LAYOUTS[0])]:
        x = x_layout((rng.standard_normal((6, 3, 4, 5)) * 3 + 5).astype(dtype))
        g = g_layout(rng.standard_normal((6, 3, 4, 5)).astype(dtype))
        y_ref, dx_ref, dgamma_ref, dbeta_ref = batchnorm2d_reference(x, layer.weight.data, layer.bias.data, g, layer.eps)
        y = layer.forward(x, training=True)
        assert y.strides == x.strides  # the layout goes through
        np.testing.assert_allclose(y, y_ref, **TOL[dtype])
        np.testing.assert_allclose(layer.backward(g), dx_ref, **TOL[dtype])
        np.testing.assert_allclose(layer.weight.grad, dgamma_ref, **TOL[dtype])
        np.testing.assert_allclose(layer.bias.grad, dbeta_ref, **TOL[dtype])
        layer.forward(x, training=False)
        layer.backward(g)  # inference backward: Σ g·x̂ with the running statistics, in any pair of layouts
        x_hat = (x - layer.running_mean.data[:, None, None]) / np.sqrt(layer.running_var.data + layer.eps)[:, None, None]
        np.testing.assert_allclose(layer.weight.grad, np.einsum("nchw,nchw->c", g, x_hat), **TOL[dtype])


def test_conv2d_reads_a_single_image_sliced_from_a_batch():
    # x[2:3] is C-contiguous, yet its batch axis keeps the batch's stride (any stride is valid for length 1)
    layer = built(Conv2D(2, 3), (1, 8, 8))
    x = np.random.default_rng(0).random((5, 1, 8, 8))[2:3]
    ref = conv2d_reference(x, layer.weight.data, layer.bias.data, (1, 1), ((0, 0), (0, 0)))
    np.testing.assert_allclose(layer.forward(x, training=True), ref, rtol=1e-12, atol=1e-12)


class MemoryOrderSquare(Layer):
    """``y = x²``, written through ``ravel(order="K")``: right for C-contiguous inputs only (a layout bug)."""

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return (x.ravel(order="K") ** 2).reshape(x.shape)

    def backward(self, grad_out):
        return 2 * self._x * grad_out


def test_check_layer_tries_every_memory_layout_the_built_ins_produce():
    from minidl.testing import check_layer

    for layer in (Conv2D(2, 3, padding=1), BatchNorm2D(), MaxPool2D(2), ReLU()):
        report = check_layer(layer, (2, 4, 4), batch=3)
        assert any(c.name == "memory layouts" and c.passed for c in report.checks), layer.name
    report = check_layer(MemoryOrderSquare(), (2, 3, 3), batch=2, raise_on_failure=False)
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["memory layouts"]
    assert "batch-innermost" in failed[0].detail and "output" in failed[0].detail


def test_layers_reused_arrays_are_replaced_when_they_come_back_read_only():
    # e.g. a model unpickled from a read-only memmap (scikit-learn's estimator checks do that)
    conv, bn = built(Conv2D(2, 3, padding=1), (1, 5, 5)), built(BatchNorm2D(), (2, 5, 5))
    x = np.random.default_rng(0).random((3, 1, 5, 5))
    y = bn.forward(conv.forward(x, training=True), training=True)
    bn.backward(np.ones_like(y))
    for layer in (conv, bn):
        for array in layer._ctx.buffers.values():
            array.flags.writeable = False
    np.testing.assert_array_equal(bn.forward(conv.forward(x, training=True), training=True), y)


@pytest.mark.parametrize("padding", [0, 1])
def test_a_one_block_weight_gradient_uses_the_latest_forward_only(padding, monkeypatch):
    # conv_weight_grad takes conv_forward's X_col back when it is one block; after another forward
    # (the padded input's array reused, or a batch of several blocks) it must be that forward's.
    monkeypatch.setattr(nb, "CONV_BLOCK", 1500)  # batch 2: one block; batch 20: several
    rng = np.random.default_rng(0)
    x1, x2, x3 = rng.random((2, 2, 6, 6)), rng.random((2, 2, 6, 6)), rng.random((20, 2, 6, 6))
    layer = built(Conv2D(3, 3, padding=padding), (2, 6, 6))
    fresh = built(Conv2D(3, 3, padding=padding), (2, 6, 6))
    fresh.weight.data[...] = layer.weight.data
    for xs in ([x1, x2], [x1, x3], [x3, x1]):
        for x in xs:
            g = rng.random(layer.forward(x, training=True).shape)
        layer.backward(g)
        fresh.forward(xs[-1], training=True)
        fresh.backward(g)
        np.testing.assert_array_equal(layer.weight.grad, fresh.weight.grad)


@pytest.mark.parametrize("depth", [2, 6])
def test_a_deeper_network_keeps_its_caches_not_a_set_of_temporaries_per_layer(depth):
    # Each Conv2D + BatchNorm2D + ReLU block keeps what its backward needs (the padded input, the
    # centred input, the ReLU output); the unfolded blocks, the padded input gradient and the
    # BatchNorm2D product are temporaries every layer shares (nb.workspace).
    def retained(blocks: int) -> int:
        layers = []
        for _ in range(blocks):
            layers += [Conv2D(8, 3, padding=1), BatchNorm2D(), ReLU()]
        model = built(Sequential([*layers, Flatten(), Dense(10)]), (8, 16, 16))
        x = np.random.default_rng(0).random((32, 8, 16, 16))
        tracemalloc.start()
        out = model.forward(x, training=True)
        model.backward(np.ones_like(out))
        del out
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return held

    image = 8 * 16 * 16 * 32 * 8  # one block's activations, float64
    caches = image * 18 * 18 // (16 * 16) + 2 * image  # padded input, centred input, ReLU output
    set_num_threads(1)  # a pool thread's first block would make its own temporaries at a random moment
    try:
        retained(1)  # this thread's shared temporaries are made here, and counted in neither figure below
        per_block = (retained(depth + 1) - retained(1)) / depth
    finally:
        set_num_threads(None)
    assert per_block < caches + image / 4
