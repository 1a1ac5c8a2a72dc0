"""minidl.backend.fast: every op equals the numpy backend's (float64 to 1e-12, float32 to 1e-5 relative) in
every memory layout, gives the same bits at any thread count, and is safe when two Python threads call in."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from helpers import built  # noqa: E402

import minidl  # noqa: E402
import minidl.backend.fast as fast  # noqa: E402
import minidl.backend.numpy as numpy_backend  # noqa: E402
from minidl.backend import set_backend  # noqa: E402
from minidl.backend.fast import FastBackend  # noqa: E402
from minidl.backend.numpy import NumpyBackend  # noqa: E402
from minidl.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE  # noqa: E402
from minidl.testing import MEMORY_LAYOUTS, stored_as  # noqa: E402

TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}
DTYPES = ["float32", "float64"]
ORDERS = {name.split(" (")[0]: order for name, order in MEMORY_LAYOUTS.items()}
LAYOUTS = list(ORDERS)  # NCHW, batch-innermost, channels-major
FAST, NUMPY = FastBackend(), NumpyBackend()


@pytest.fixture(autouse=True)
def small_inputs_too(monkeypatch):
    monkeypatch.setattr(fast, "PARALLEL_MIN_SIZE", 0)  # the compiled kernels even for the tiny shapes here
    monkeypatch.setattr(numpy_backend, "SMALL_INPUT", 0)  # and the pooling path they take over
    yield
    minidl.set_num_threads(None)


def images(shape, dtype, layout, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, shape) if ties else rng.standard_normal(shape) * 3 + 1
    return stored_as(x.astype(dtype), ORDERS[layout])


def assert_close(a, b, dtype):
    assert a.dtype == np.dtype(dtype) and a.shape == b.shape
    np.testing.assert_allclose(a, b, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("g_layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm2d_equals_the_numpy_backend(dtype, layout, g_layout, training):
    x = images((5, 3, 4, 6), dtype, layout)
    g = images((5, 3, 4, 6), dtype, g_layout, seed=1)
    rng = np.random.default_rng(2)
    weight, bias = rng.uniform(0.5, 2, 3).astype(dtype), rng.standard_normal(3).astype(dtype)
    stats = None if training else (rng.standard_normal(3).astype(dtype), rng.uniform(0.5, 2, 3).astype(dtype))
    y, mean, var, ctx = FAST.batch_norm2d(x, weight, bias, 1e-5, stats)
    y_ref, mean_ref, var_ref, ctx_ref = NUMPY.batch_norm2d(x, weight, bias, 1e-5, stats)
    assert y.strides == x.strides  # the layout goes through
    for a, b in ((y, y_ref), (mean, mean_ref), (var, var_ref)):
        assert_close(a, b, dtype)
    for a, b in zip(FAST.batch_norm2d_backward(ctx, g), NUMPY.batch_norm2d_backward(ctx_ref, g), strict=True):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("g_layout", ["NCHW", "batch-innermost"])
@pytest.mark.parametrize("pool, size", [((2, 2), (6, 8)), ((2, 2), (7, 9)), ((3, 2), (6, 4)), ((1, 1), (3, 3))])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2d_equals_the_numpy_backend(dtype, layout, g_layout, pool, size, ties):
    x = images((3, 2, *size), dtype, layout, ties=ties)
    y, ctx = FAST.max_pool2d(x, pool, pool, (0, 0))
    y_ref, ctx_ref = NUMPY.max_pool2d(x, pool, pool, (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    g = images(y.shape, dtype, g_layout, seed=3)
    dx = FAST.max_pool2d_backward(ctx, g)
    np.testing.assert_array_equal(dx, NUMPY.max_pool2d_backward(ctx_ref, g))  # the first maximum gets it, as NumPy
    assert dx.dtype == np.dtype(dtype)


@pytest.mark.parametrize("stride, padding", [((1, 1), (0, 0)), ((2, 2), (1, 1))])
def test_max_pool2d_of_overlapping_or_padded_windows_is_the_numpy_backends(stride, padding):
    x = images((2, 3, 7, 7), "float64", "batch-innermost")
    y, ctx = FAST.max_pool2d(x, (3, 3), stride, padding)
    y_ref, ctx_ref = NUMPY.max_pool2d(x, (3, 3), stride, padding)
    np.testing.assert_array_equal(y, y_ref)
    g = np.ones_like(y)
    np.testing.assert_array_equal(FAST.max_pool2d_backward(ctx, g), NUMPY.max_pool2d_backward(ctx_ref, g))


def test_a_nan_in_a_window_is_the_windows_max_as_in_numpy():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 1] = np.nan
    y, _ = FAST.max_pool2d(x, (2, 2), (2, 2), (0, 0))
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0
    r, _ = FAST.relu(x)
    assert np.isnan(r[0, 0, 1, 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("g_layout", LAYOUTS)
def test_relu_equals_the_numpy_backend(dtype, layout, g_layout):
    x = images((3, 2, 4, 5), dtype, layout)
    y, ctx = FAST.relu(x)
    y_ref, ctx_ref = NUMPY.relu(x)
    np.testing.assert_array_equal(y, y_ref)
    assert y.strides == x.strides
    g = images(x.shape, dtype, g_layout, seed=4)
    np.testing.assert_array_equal(FAST.relu_backward(ctx, g), NUMPY.relu_backward(ctx_ref, g))


def test_relu_of_a_strided_view_takes_numpys_way():
    x = np.random.default_rng(0).standard_normal((4, 6))[:, ::2]
    y, ctx = FAST.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(FAST.relu_backward(ctx, np.ones_like(y)), x > 0)


def vgg_like(seed=0):
    return minidl.Sequential([Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2),
                              Conv2D(6, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(), Dense(3),
                              SoftmaxCE()], input_shape=(2, 8, 8), seed=seed, dtype="float64")


def train(backend: str, threads: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    X, y = rng.random((24, 2, 8, 8)), rng.integers(0, 3, 24)
    set_backend(backend)
    try:
        minidl.set_num_threads(threads)
        model = vgg_like(seed)
        model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        return model.state_dict()
    finally:
        set_backend(None)


def test_training_gives_the_same_bits_at_any_thread_count_and_the_numpy_backends_values():
    one, two = train("fast", 1), train("fast", 2)
    reference = train("numpy", 1)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])
        np.testing.assert_allclose(one[name], reference[name], rtol=1e-9, atol=1e-10)


@pytest.mark.filterwarnings("ignore:minidl. BLAS kept")  # fit outside the main thread cannot pin OpenBLAS
def test_two_python_threads_may_train_at_once():
    # The kernels are serial and release the GIL, without a lock: both threads are in them at once, each on its own
    # arrays (Numba's workqueue layer, which aborts on concurrent entry, is not involved).
    results: dict = {}
    expected = {seed: train("fast", 2, seed) for seed in (0, 1)}
    set_backend("fast")
    try:
        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            X, y = rng.random((24, 2, 8, 8)), rng.integers(0, 3, 24)
            model = vgg_like(seed)
            for _ in range(3):  # many entries into the kernels from both threads
                model.load_state_dict(vgg_like(seed).state_dict())
                model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
            results[seed] = model.state_dict()

        workers = [threading.Thread(target=work, args=(seed,)) for seed in (0, 1)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=600)
    finally:
        set_backend(None)
    assert sorted(results) == [0, 1]
    for seed in (0, 1):
        for name, value in expected[seed].items():
            np.testing.assert_array_equal(results[seed][name], value)


def test_layers_built_under_one_backend_compute_under_the_other():
    layer = built(BatchNorm2D(), (3, 4, 4))
    x = images((4, 3, 4, 4), "float64", "batch-innermost")
    set_backend("numpy")
    try:
        y_numpy = layer.forward(x, training=True)
        dx_numpy = layer.backward(np.ones_like(y_numpy))
        set_backend("fast")
        y_fast = layer.forward(x, training=True)  # the numpy context is replaced, not misread
        dx_fast = layer.backward(np.ones_like(y_fast))
    finally:
        set_backend(None)
    np.testing.assert_allclose(y_fast, y_numpy, **TOL["float64"])
    np.testing.assert_allclose(dx_fast, dx_numpy, **TOL["float64"])


@pytest.mark.parametrize("block", [1, 7, 50])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_kernels_split_into_many_blocks_give_the_same_bits_at_any_thread_count(monkeypatch, block, layout):
    # BLOCK_ELEMENTS this small cuts even these shapes into many blocks (single channels, rows of windows, runs of
    # elements): every item is computed, by one block, whichever thread takes it.
    monkeypatch.setattr(fast, "BLOCK_ELEMENTS", block)
    monkeypatch.setattr(fast, "RELU_MIN_SIZE_FACTOR", 0)
    x = images((5, 3, 6, 4), "float64", layout)
    g = images(x.shape, "float64", layout, seed=2)
    weight, bias = np.linspace(0.5, 2.0, 3), np.linspace(-1.0, 1.0, 3)
    results = []
    for threads in (1, 2):
        minidl.set_num_threads(threads)
        y, _, _, ctx = FAST.batch_norm2d(x, weight, bias, 1e-5)
        r, r_ctx = FAST.relu(y)
        p, p_ctx = FAST.max_pool2d(r, (2, 2), (2, 2), (0, 0))
        dr = FAST.max_pool2d_backward(p_ctx, np.ones_like(p))
        assert isinstance(ctx, fast._FastBatchNorm) and isinstance(r_ctx, fast._FastReLU) and p_ctx.path == "tiled"
        results.append([y, *FAST.batch_norm2d_backward(ctx, g), r, FAST.relu_backward(r_ctx, g), dr])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    y, _, _, ctx = NUMPY.batch_norm2d(x, weight, bias, 1e-5)
    r, r_ctx = NUMPY.relu(y)
    p, p_ctx = NUMPY.max_pool2d(r, (2, 2), (2, 2), (0, 0))
    expected = [y, *NUMPY.batch_norm2d_backward(ctx, g), r, NUMPY.relu_backward(r_ctx, g),
                NUMPY.max_pool2d_backward(p_ctx, np.ones_like(p))]
    for a, b in zip(results[0], expected, strict=True):
        assert_close(a, b, "float64")


@settings(max_examples=25, deadline=None)
@given(size=st.one_of(st.just(1), st.integers(1, 40)), dtype=st.sampled_from(DTYPES), amsgrad=st.booleans(),
       threads=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**16))
def test_adam_update_is_the_numpy_backends_bit_for_bit_at_any_thread_count(size, dtype, amsgrad, threads, seed):
    # blocks of 8 from 16 entries on (the real ones: ADAM_BLOCK from ADAM_SPLIT_SIZE): lengths 1 to 40 are one
    # block, a few, and ragged ends; every entry from one thread or another
    with pytest.MonkeyPatch.context() as patch, np.errstate(invalid="ignore", over="ignore"):
        patch.setattr(fast, "PARALLEL_MIN_SIZE", 0)
        patch.setattr(fast, "ADAM_SPLIT_SIZE", 16)
        patch.setattr(fast, "ADAM_BLOCK", 8)
        minidl.set_num_threads(threads)
        rng = np.random.default_rng(seed)
        grads = (rng.standard_normal((4, size)) * rng.choice([1e-6, 1.0, 1e3], (4, size))).astype(dtype)
        grads[rng.random(grads.shape) < 0.05] = rng.choice([np.nan, np.inf])  # the running maximum keeps NaN
        runs = []
        for backend in (NUMPY, FAST):
            moments = [np.zeros(size, dtype) for _ in range(3 if amsgrad else 2)]
            steps = []
            for t, g in enumerate(grads, 1):
                out = np.empty(size, dtype)
                backend.adam_update(g, moments[0], moments[1], moments[2] if amsgrad else None, out, 3e-3,
                                    (0.8, 0.99), 1e-8, t)
                steps.append(out)
            runs.append(moments + steps)
        for a, b in zip(*runs, strict=True):
            assert a.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_adam_under_the_fast_backend_is_the_per_parameter_loop_bit_for_bit(amsgrad, decoupled, dtype):
    from minidl.optim import Adam

    def run(backend: str, fused: bool, threads: int, lr: float) -> list[np.ndarray]:
        set_backend(backend)
        try:
            minidl.set_num_threads(threads)
            model = minidl.Sequential([Dense(20), Dense(3)], input_shape=(6,), seed=0, dtype=dtype)
            opt = Adam(model.parameters(), lr=0.01, amsgrad=amsgrad, weight_decay=0.1 if decoupled else 0.0,
                       decoupled_weight_decay=True, fused=fused)
            opt.lr = lr
            rng = np.random.default_rng(0)
            for k in range(4):
                for p in model.parameters():
                    p.grad[...] = rng.standard_normal(p.grad.shape)
                opt.step()
                if k == 1:
                    opt.load_state_dict(opt.state_dict())
            return [p.data.copy() for p in model.parameters()]
        finally:
            set_backend(None)

    reference, strong = run("numpy", False, 1, 0.01), run("numpy", True, 1, np.float64(0.01))
    for threads in (1, 2):
        for a, b in zip(reference, run("fast", True, threads, 0.01), strict=True):
            np.testing.assert_array_equal(a, b)
    # a NumPy float64 learning rate makes NumPy compute float32 steps in float64: the kernel steps aside
    for a, b in zip(strong, run("fast", True, 1, np.float64(0.01)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert dtype == "float64" or any(not np.array_equal(a, b) for a, b in zip(reference, strong, strict=True))
