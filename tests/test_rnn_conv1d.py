"""Sequence layers on (N, T, C): Conv1D, the 1-D pools, SimpleRNN/LSTM/GRU and Bidirectional.

Each is checked against the layer contract and finite differences over Hypothesis-drawn shapes, with
masks where it takes them, and against its PyTorch twin in float64 (outputs, input gradients and every
parameter gradient to 1e-9). PyTorch's convolution and pooling take (N, C, T): the twins transpose.
"""

from functools import partial

import numpy as np
import pytest
from helpers import built
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch_twin import assert_close as assert_arrays_close

from minidl import Sequential
from minidl.layers import (
    GRU,
    LSTM,
    Bidirectional,
    Conv1D,
    Dense,
    GlobalAvgPool1D,
    GlobalMaxPool1D,
    Layer,
    MaxPool1D,
    SimpleRNN,
    SoftmaxCE,
)
from minidl.layers.conv1d import padding_1d
from minidl.layers.recurrent import reversal_index
from minidl.optim import Adam
from minidl.testing import check_layer, check_layer_gradients, tie_free_input

RNNS = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}
few = settings(max_examples=12, deadline=None)


def with_mask(layer: Layer, mask: np.ndarray) -> Layer:
    """``layer``, its ``forward`` bound to ``mask``: for the gradient checkers, which call ``forward(x, training)``."""
    layer.forward = partial(type(layer).forward, layer, mask=mask)
    return layer


def right_padded(lengths, steps: int) -> np.ndarray:
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def run(layer: Layer, x: np.ndarray, seed: int = 1, mask=None):
    """Output, a fixed random output gradient, the input gradient and every parameter gradient."""
    y = layer.forward(x, mask=mask) if mask is not None else layer.forward(x)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    dx = layer.backward(g)
    return y, g, dx, {k: p.grad.copy() for k, p in layer.named_parameters().items()}


def assert_close(ours: np.ndarray, theirs, what: str) -> None:
    """``torch_twin.assert_close`` (1e-9) for a tensor or an array of the same shape."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, PyTorch's {theirs.shape}"
    assert_arrays_close(ours, theirs, what)


@pytest.fixture(autouse=True, scope="module")
def torch_one_thread():
    """PyTorch on one thread for these tiny tensors: its two threads' hand-offs on a busy machine cost more
    (0.1 s a convolution) than the work."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


sequences = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 3))  # N, T, C


# -- Conv1D ------------------------------------------------------------------------------------------------


conv_args = st.fixed_dictionaries({
    "filters": st.integers(1, 3), "kernel_size": st.integers(1, 3), "stride": st.integers(1, 3),
    "padding": st.sampled_from(["valid", "same", 0, 1, 2]), "dilation": st.integers(1, 2), "use_bias": st.booleans(),
})


def conv_fits(args, steps) -> bool:
    span = (args["kernel_size"] - 1) * args["dilation"] + 1
    return span <= steps + sum(padding_1d(args["padding"], steps, span, args["stride"]))


@few
@given(sequences, conv_args, st.integers(0, 2**32 - 1))
def test_conv1d_matches_torch(shape, args, seed):
    torch = pytest.importorskip("torch")
    n, t, c = shape
    assume(conv_fits(args, t))
    conv = built(Conv1D(**args), (t, c), seed=seed)
    x = np.random.default_rng(seed).standard_normal(shape)
    y, g, dx, grads = run(conv, x)
    left, right = padding_1d(args["padding"], t, (args["kernel_size"] - 1) * args["dilation"] + 1, args["stride"])
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(conv.weight.data, requires_grad=True)
    tb = torch.tensor(conv.bias.data, requires_grad=True) if args["use_bias"] else None
    ty = torch.nn.functional.conv1d(torch.nn.functional.pad(tx.transpose(1, 2), (left, right)), tw, tb,
                                    stride=args["stride"], dilation=args["dilation"]).transpose(1, 2)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "output")
    assert_close(dx, tx.grad, "input gradient")
    assert_close(grads["weight"], tw.grad, "weight gradient")
    if args["use_bias"]:
        assert_close(grads["bias"], tb.grad, "bias gradient")


def test_conv1d_same_padding_is_torchs_for_stride_1():
    torch = pytest.importorskip("torch")
    conv = built(Conv1D(2, 4, padding="same", dilation=2), (7, 3))
    x = np.random.default_rng(0).standard_normal((2, 7, 3))
    theirs = torch.nn.functional.conv1d(torch.tensor(x).transpose(1, 2), torch.tensor(conv.weight.data),
                                        torch.tensor(conv.bias.data), padding="same", dilation=2).transpose(1, 2)
    assert_close(conv.forward(x), theirs, "output")


@few
@given(sequences, conv_args)
def test_conv1d_passes_check_layer(shape, args):
    n, t, c = shape
    assume(conv_fits(args, t))
    report = check_layer(Conv1D(**args), (t, c), batch=n)
    span = (args["kernel_size"] - 1) * args["dilation"] + 1
    steps = (t + sum(padding_1d(args["padding"], t, span, args["stride"])) - span) // args["stride"] + 1
    assert report.output_shape == (steps, args["filters"])


def test_conv1d_edge_cases():
    # one step, batch of one: a kernel of 1, and "same" padding around a single step
    for conv in (Conv1D(3, 1), Conv1D(3, 3, padding="same")):
        assert check_layer(conv, (1, 2), batch=1).output_shape == (1, 3)
    assert built(Conv1D(2, 3, padding="same", stride=2), (5, 1)).output_shape == (3, 2)  # ceil(5 / 2)


def test_conv1d_refuses_a_mask():
    conv = built(Conv1D(2, 3), (5, 2))
    x, mask = np.zeros((1, 5, 2)), np.ones((1, 5), bool)
    with pytest.raises(ValueError, match="Conv1D cannot take a sequence mask"):
        conv.forward(x, mask=mask)
    with pytest.raises(ValueError, match="mixes neighbouring steps"):
        conv.compute_mask(x, mask)
    assert conv.compute_mask(x, None) is None and conv.forward(x).shape == (1, 3, 2)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"filters": 0, "kernel_size": 3}, ValueError, "filters must be >= 1, got 0"),
    ({"filters": 2, "kernel_size": 2.5}, TypeError, "kernel_size must be an int"),
    ({"filters": 2, "kernel_size": 3, "padding": "full"}, ValueError, "padding must be"),
    ({"filters": 2, "kernel_size": 3, "padding": -1}, ValueError, "padding must be >= 0"),
    ({"filters": 2, "kernel_size": 3, "dilation": 0}, ValueError, "dilation must be >= 1"),
    ({"filters": 2, "kernel_size": 3, "use_bias": "yes"}, TypeError, "use_bias must be a bool"),
])
def test_conv1d_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv1D(**kwargs)


def test_conv1d_bad_input_shapes():
    with pytest.raises(ValueError, match=r"a window spans 5 steps .* more than the 4 steps"):
        built(Conv1D(2, 3, dilation=2), (4, 1))
    with pytest.raises(ValueError, match=r"expects sequences \(N, T, C\), got per-sample shape \(1, 4, 4\)"):
        built(Conv1D(2, 3), (1, 4, 4))


# -- MaxPool1D and the global pools ---------------------------------------------------------------------


@few
@given(sequences, st.integers(1, 3), st.sampled_from([None, 1, 2, 3]), st.sampled_from(["valid", "same", 0, 1]),
       st.integers(0, 2**32 - 1))
def test_maxpool1d_matches_torch(shape, pool_size, stride, padding, seed):
    torch = pytest.importorskip("torch")
    n, t, c = shape
    assume(not isinstance(padding, int) or padding <= pool_size // 2)
    stride_ = pool_size if stride is None else stride
    left, right = padding_1d(padding, t, pool_size, stride_)
    assume(pool_size <= t + left + right)
    pool = built(MaxPool1D(pool_size, stride, padding), (t, c))
    x = tie_free_input(shape, np.random.default_rng(seed))
    y, g, dx, _ = run(pool, x)
    tx = torch.tensor(x, requires_grad=True)
    padded = torch.nn.functional.pad(tx.transpose(1, 2), (left, right), value=-float("inf"))
    ty = torch.nn.functional.max_pool1d(padded, pool_size, stride_).transpose(1, 2)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, "output")
    assert_close(dx, tx.grad, "input gradient")
    if isinstance(padding, int):  # PyTorch's own padding argument agrees
        theirs = torch.nn.functional.max_pool1d(torch.tensor(x).transpose(1, 2), pool_size, stride_, padding)
        assert_close(y, theirs.transpose(1, 2), "output with PyTorch's padding")


@few
@given(sequences, st.integers(1, 3), st.sampled_from([None, 1, 2]), st.sampled_from(["valid", "same", 1]))
def test_maxpool1d_passes_check_layer(shape, pool_size, stride, padding):
    n, t, c = shape
    assume(not isinstance(padding, int) or padding <= pool_size // 2)
    assume(pool_size <= t + sum(padding_1d(padding, t, pool_size, stride or pool_size)))
    check_layer(MaxPool1D(pool_size, stride, padding), (t, c), batch=n)


def test_maxpool1d_refuses_masks_and_bad_arguments():
    pool = built(MaxPool1D(2), (4, 1))
    with pytest.raises(ValueError, match="MaxPool1D cannot take a sequence mask"):
        pool.forward(np.zeros((1, 4, 1)), mask=np.ones((1, 4), bool))
    with pytest.raises(ValueError, match="pooling changes the time axis"):
        pool.compute_mask(np.zeros((1, 4, 1)), np.ones((1, 4), bool))
    with pytest.raises(ValueError, match="padding must be at most half the pool size 3, got 2"):
        MaxPool1D(3, padding=2)
    with pytest.raises(ValueError, match="pool_size 5 is longer than the 4 steps"):
        built(MaxPool1D(5), (4, 1))
    assert built(MaxPool1D(3, padding="same"), (1, 2)).output_shape == (1, 2)  # one step: the window holds it


masks = st.integers(0, 2**32 - 1).map(lambda seed: np.random.default_rng(seed))


def random_mask(rng: np.random.Generator, n: int, t: int, empty_rows: bool = True) -> np.ndarray:
    """Any pattern of valid steps (holes too); with ``empty_rows=False`` every row keeps one valid step."""
    mask = rng.random((n, t)) < 0.6
    if not empty_rows:
        mask[np.arange(n), rng.integers(0, t, n)] = True
    return mask


@few
@given(sequences, masks, st.booleans())
def test_global_pools_match_torch(shape, rng, masked):
    torch = pytest.importorskip("torch")
    n, t, c = shape
    mask = random_mask(rng, n, t, empty_rows=False) if masked else None
    x = tie_free_input(shape, rng)
    for layer, reduce in ((GlobalAvgPool1D(), "mean"), (GlobalMaxPool1D(), "amax")):
        y, g, dx, _ = run(built(layer, (t, c)), x, mask=mask)
        tx = torch.tensor(x, requires_grad=True)
        if mask is None:
            ty = getattr(tx, reduce)(dim=1)
        elif reduce == "mean":
            tm = torch.tensor(mask, dtype=torch.float64)[..., None]
            ty = (tx * tm).sum(dim=1) / tm.sum(dim=1)
        else:
            ty = tx.masked_fill(~torch.tensor(mask)[..., None], -float("inf")).amax(dim=1)
        ty.backward(torch.tensor(g))
        assert_close(y, ty, f"{layer.name} output")
        assert_close(dx, tx.grad, f"{layer.name} input gradient")


@few
@given(sequences, masks)
def test_global_pools_gradients_with_masks(shape, rng):
    n, t, c = shape
    x = tie_free_input(shape, rng)
    mask = random_mask(rng, n, t)
    for cls in (GlobalAvgPool1D, GlobalMaxPool1D):
        assert check_layer(cls(), (t, c), x=x).output_shape == (c,)
        check_layer_gradients(with_mask(built(cls(), (t, c)), mask), x)


@pytest.mark.parametrize("cls", [GlobalAvgPool1D, GlobalMaxPool1D])
def test_global_pools_ignore_padded_steps(cls):
    rng = np.random.default_rng(0)
    mask = np.array([[True, False, True, False], [False] * 4, [True] * 4])
    x = tie_free_input((3, 4, 2), rng)
    pool = built(cls(), (4, 2))
    y, g, dx, _ = run(pool, x, mask=mask)
    changed = x.copy()
    changed[~mask] = rng.choice([np.inf, -np.inf, np.nan, 1e6], size=(int((~mask).sum()), 2))
    y2, _, dx2, _ = run(pool, changed, mask=mask)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, dx2)
    assert not dx[~mask].any()
    np.testing.assert_array_equal(y[1], 0)  # a row without a valid step gives zeros
    assert pool.compute_mask(x, mask) is None
    reference = (x[0, [0, 2]].mean(axis=0) if cls is GlobalAvgPool1D else x[0, [0, 2]].max(axis=0))
    np.testing.assert_allclose(y[0], reference, rtol=1e-15)


def test_global_pools_refuse_bad_masks():
    pool = built(GlobalAvgPool1D(), (4, 2))
    with pytest.raises(TypeError, match="mask must be a bool numpy array"):
        pool.forward(np.zeros((1, 4, 2)), mask=np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"mask must have shape \(N, T\) = \(1, 4\)"):
        pool.forward(np.zeros((1, 4, 2)), mask=np.ones((1, 3), bool))


# -- SimpleRNN, LSTM, GRU -------------------------------------------------------------------------------


def torch_module(layer: Layer, features: int):
    """The PyTorch module with ``layer``'s parameters (a Bidirectional's backward copy as ``*_reverse``)."""
    torch = pytest.importorskip("torch")
    bidirectional = isinstance(layer, Bidirectional)
    inner = layer.forward_layer if bidirectional else layer
    kwargs = {"nonlinearity": inner.activation} if isinstance(inner, SimpleRNN) else {}
    module = getattr(torch.nn, {"SimpleRNN": "RNN"}.get(type(inner).__name__, type(inner).__name__))(
        features, inner.units, batch_first=True, bidirectional=bidirectional, dtype=torch.float64, **kwargs)
    directions = {"": inner, "_reverse": layer.backward_layer} if bidirectional else {"": inner}
    with torch.no_grad():
        for suffix, source in directions.items():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, f"{name}_l0{suffix}").copy_(torch.tensor(getattr(source, name).data))
    return module, directions


def torch_run(module, x: np.ndarray, g: np.ndarray, return_sequences: bool, lengths=None):
    """PyTorch's output (packed by ``lengths`` when given) for ``return_sequences``, after backward of ``g``."""
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    if lengths is None:
        out, h_n = module(tx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, h_n = module(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h_n, c_n)
    y = out if return_sequences else torch.cat(list(h_n), dim=-1)  # one direction, or forward then backward
    y.backward(torch.tensor(g))
    return y, tx.grad


def assert_twin(layer: Layer, x: np.ndarray, lengths=None) -> None:
    mask = None if lengths is None else right_padded(lengths, x.shape[1])
    y, g, dx, grads = run(layer, x, mask=mask)
    module, directions = torch_module(layer, x.shape[2])
    inner = next(iter(directions.values()))
    ty, tdx = torch_run(module, x, g, inner.return_sequences, lengths)
    assert_close(y, ty, "output")
    assert_close(dx, tdx, "input gradient")
    for suffix, source in directions.items():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            assert_close(getattr(source, name).grad, getattr(module, f"{name}_l0{suffix}").grad,
                         f"{name}{suffix} gradient")


recurrent = st.builds(
    lambda name, units, return_sequences, relu: (
        SimpleRNN(units, "relu" if relu else "tanh", return_sequences) if name == "SimpleRNN"
        else RNNS[name](units, return_sequences=return_sequences)),
    st.sampled_from(sorted(RNNS)), st.integers(1, 4), st.booleans(), st.booleans())


@few
@given(recurrent, sequences, st.integers(0, 2**32 - 1))
def test_recurrent_matches_torch(layer, shape, seed):
    pytest.importorskip("torch")
    assert_twin(built(layer, shape[1:], seed=seed), np.random.default_rng(seed).standard_normal(shape))


@few
@given(recurrent, sequences, st.integers(0, 2**32 - 1))
def test_recurrent_with_mask_matches_torch_packed(layer, shape, seed):
    pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, shape[1] + 1, shape[0])  # right-padded; packing needs a valid step per row
    assert_twin(built(layer, shape[1:], seed=seed), rng.standard_normal(shape), lengths)


@few
@given(recurrent, sequences, masks)
def test_recurrent_gradients(layer, shape, rng):
    n, t, d = shape
    report = check_layer(layer, (t, d), batch=n, x=tie_free_input(shape, rng))
    assert report.output_shape == ((t, layer.units) if layer.return_sequences else (layer.units,))
    x = tie_free_input(shape, rng)
    check_layer_gradients(with_mask(built(layer, (t, d), dtype="float64"), random_mask(rng, n, t)), x)


def changed_padding(x: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    changed = x.copy()
    changed[~mask] = rng.standard_normal(changed[~mask].shape) * 100
    return changed


@pytest.mark.parametrize("name", sorted(RNNS))
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_padded_steps_change_nothing(name, return_sequences):
    """Whatever the padded steps hold (and whatever gradient reaches padded outputs), valid outputs, the last
    state, the input gradients at valid steps and every parameter gradient stay bit for bit the same."""
    rng = np.random.default_rng(1)
    mask = np.array([[True, True, True, False, False], [True, False, True, True, False], [False] * 5])
    layer = built(RNNS[name](3, return_sequences=return_sequences), (5, 2))
    x = rng.standard_normal((3, 5, 2))
    y, g, dx, grads = run(layer, x, mask=mask)
    if return_sequences:
        assert not y[~mask].any()  # padded steps output zeros
        g[~mask] = rng.standard_normal(g[~mask].shape)
    y2 = layer.forward(changed_padding(x, mask, rng), mask=mask)
    dx2 = layer.backward(g)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx[mask], dx2[mask])
    assert not dx2[~mask].any()
    for k, p in layer.named_parameters().items():
        np.testing.assert_array_equal(grads[k], p.grad, err_msg=k)
    assert layer.compute_mask(x, mask) is (mask if return_sequences else None)


@pytest.mark.parametrize("name", sorted(RNNS))
def test_recurrent_skips_padded_steps_anywhere(name):
    """A mask with holes: each sequence gives what its valid steps alone give, and the last state returned
    is that of the last valid step; a sequence with no valid step returns the initial state, zeros."""
    rng = np.random.default_rng(2)
    mask = np.array([[False, True, False, True, True, False], [True] * 6, [False] * 6])
    x = rng.standard_normal((3, 6, 2))
    sequences_ = built(RNNS[name](3, return_sequences=True), (6, 2))
    last = built(RNNS[name](3), (6, 2))
    ys, h = sequences_.forward(x, mask=mask), last.forward(x, mask=mask)
    for i in range(2):
        valid = x[i:i + 1, mask[i]]
        alone = built(RNNS[name](3, return_sequences=True), (len(valid[0]), 2)).forward(valid)
        np.testing.assert_allclose(ys[i, mask[i]], alone[0], rtol=0, atol=1e-15)
        np.testing.assert_allclose(h[i], alone[0, -1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(h[2], 0)
    np.testing.assert_array_equal(ys[2], 0)


@pytest.mark.parametrize("cls, gates", [(SimpleRNN, 1), (LSTM, 4), (GRU, 3)])
def test_recurrent_parameters_are_laid_out_as_torch(cls, gates):
    torch = pytest.importorskip("torch")
    layer = built(cls(5), (4, 3), dtype="float32")
    module = getattr(torch.nn, "RNN" if cls is SimpleRNN else cls.__name__)(3, 5)
    theirs = {k.removesuffix("_l0"): tuple(v.shape) for k, v in module.named_parameters()}
    assert {k: p.shape for k, p in layer.named_parameters().items()} == theirs
    assert layer.weight_ih.shape == (gates * 5, 3)
    values = np.concatenate([p.data.ravel() for p in layer.parameters()])
    bound = 1 / np.sqrt(5)  # PyTorch's initialisation: uniform in ±1/sqrt(units)
    assert values.dtype == np.float32 and np.abs(values).max() <= bound and np.abs(values).max() > 0.8 * bound
    again = built(cls(5), (4, 3), dtype="float32")
    assert all(np.array_equal(a.data, b.data) for a, b in zip(layer.parameters(), again.parameters(), strict=True))


@pytest.mark.parametrize("name", sorted(RNNS))
def test_recurrent_edge_cases(name):
    # one step and a batch of one, in both output modes
    for return_sequences in (False, True):
        check_layer(RNNS[name](2, return_sequences=return_sequences), (1, 3), batch=1)
    layer = built(RNNS[name](2, return_sequences=True), (1, 3))
    mask = np.array([[False]])
    y, _, dx, grads = run(layer, np.ones((1, 1, 3)), mask=mask)
    assert not y.any() and not dx.any() and not any(g.any() for g in grads.values())


def test_recurrent_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="units must be >= 1, got 0"):
        LSTM(0)
    with pytest.raises(TypeError, match="return_sequences must be a bool"):
        GRU(2, return_sequences=1)
    with pytest.raises(ValueError, match='activation must be "tanh" or "relu", got \'sigmoid\''):
        SimpleRNN(2, activation="sigmoid")
    with pytest.raises(ValueError, match=r"expects sequences \(N, T, D\), got per-sample shape \(4,\)"):
        built(LSTM(2), (4,))
    layer = built(GRU(2), (4, 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4, 3\)"):
        layer.forward(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"mask must have shape \(N, T\) = \(2, 4\)"):
        layer.forward(np.zeros((2, 4, 3)), mask=np.ones((2, 5), bool))


# -- Bidirectional ----------------------------------------------------------------------------------------


@few
@given(st.builds(Bidirectional, recurrent), sequences, st.integers(0, 2**32 - 1), st.booleans())
def test_bidirectional_matches_torch(layer, shape, seed, masked):
    pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, shape[1] + 1, shape[0]) if masked else None
    assert_twin(built(layer, shape[1:], seed=seed), rng.standard_normal(shape), lengths)


small_recurrent = st.builds(lambda cls, units, return_sequences: cls(units, return_sequences=return_sequences),
                            st.sampled_from([SimpleRNN, LSTM, GRU]), st.integers(1, 2), st.booleans())


@settings(max_examples=6, deadline=None)
@given(st.builds(Bidirectional, small_recurrent, st.sampled_from(["concat", "sum"])), sequences, masks)
def test_bidirectional_gradients(layer, shape, rng):
    n, t, d = shape
    check_layer(layer, (t, d), batch=n)
    x = tie_free_input(shape, rng)
    check_layer_gradients(with_mask(built(layer, (t, d)), random_mask(rng, n, t)), x)


def test_bidirectional_sum_and_masks():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 2))
    mask = np.array([[True, True, True, False, False], [True, False, True, True, False], [True] * 5])
    concat = built(Bidirectional(LSTM(3, return_sequences=True)), (5, 2))
    summed = built(Bidirectional(LSTM(3, return_sequences=True), merge="sum"), (5, 2))
    both = concat.forward(x, mask=mask)
    np.testing.assert_allclose(summed.forward(x, mask=mask), both[..., :3] + both[..., 3:], rtol=1e-15)
    assert concat.compute_mask(x, mask) is mask and concat.output_shape == (5, 6) and summed.output_shape == (5, 3)
    assert not both[~mask].any()
    y2 = concat.forward(changed_padding(x, mask, rng), mask=mask)
    np.testing.assert_array_equal(both, y2)
    # the backward direction reads each sequence's valid steps last to first
    alone = built(LSTM(3, return_sequences=True), (3, 2))
    alone.load_state_dict(concat.backward_layer.state_dict())
    np.testing.assert_allclose(both[1, [3, 2, 0], 3:], alone.forward(x[1:2, [3, 2, 0]])[0], atol=1e-15)
    assert [k for k in concat.named_parameters()][:2] == ["forward_layer.weight_ih", "forward_layer.weight_hh"]


def test_reversal_index_reverses_valid_steps_among_themselves():
    mask = np.array([[True, True, True, False], [False, True, False, True], [False] * 4, [True] * 4])
    index = reversal_index(mask)
    np.testing.assert_array_equal(index, [[2, 1, 0, 3], [0, 3, 2, 1], [0, 1, 2, 3], [3, 2, 1, 0]])
    np.testing.assert_array_equal(np.take_along_axis(index, index, axis=1), np.tile(np.arange(4), (4, 1)))


def test_bidirectional_bad_arguments():
    with pytest.raises(TypeError, match="layer must be a SimpleRNN, LSTM or GRU, got Dense"):
        Bidirectional(Dense(3))
    with pytest.raises(ValueError, match='merge must be "concat" or "sum", got \'mul\''):
        Bidirectional(GRU(3), merge="mul")
    with pytest.raises(ValueError, match="already built"):
        Bidirectional(built(GRU(3), (2, 2)))


# -- in a model: config, training, saving -----------------------------------------------------------------


@pytest.mark.parametrize("layer", [
    Conv1D(4, 3, stride=2, padding="same", dilation=2, use_bias=False), MaxPool1D(3, 1, 1), GlobalAvgPool1D(),
    GlobalMaxPool1D(), SimpleRNN(3, "relu", True), LSTM(5, return_sequences=True), GRU(2),
    Bidirectional(LSTM(4, return_sequences=True), merge="sum"),
], ids=lambda layer: type(layer).__name__)
def test_config_round_trip(layer):
    clone = Layer.from_config(layer.to_config())
    assert type(clone) is type(layer) and clone.to_config() == layer.to_config() and repr(clone) == repr(layer)


def test_lstm_model_trains_and_saves_bit_exact(tmp_path):
    import minidl

    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 5, 4)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64) + (x[:, -1, 1] > 1)  # 3 classes
    model = Sequential([Bidirectional(LSTM(8, return_sequences=True)), GRU(8), Dense(3), SoftmaxCE()],
                       input_shape=(5, 4), seed=0)
    before = model.evaluate(x, y)["loss"]
    model.fit(x, y, Adam(model.parameters(), lr=0.01), epochs=15, batch_size=16, verbose=0)
    after = model.evaluate(x, y)
    assert after["loss"] < 0.6 * before and after["accuracy"] > 0.8
    path = tmp_path / "rnn.npz"
    model.save(path)
    loaded = minidl.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


# -- to_torch ------------------------------------------------------------------------------------------------


SEQUENCE_MODELS = [
    lambda: [Conv1D(4, 3, stride=2, padding="same"), MaxPool1D(2, padding="same"),
             Bidirectional(LSTM(3, return_sequences=True), merge="sum"), GRU(5), Dense(3), SoftmaxCE()],
    lambda: [Conv1D(3, 2, padding=1, dilation=2, use_bias=False), SimpleRNN(4, "relu", return_sequences=True),
             MaxPool1D(3, 1, 1), GlobalMaxPool1D(), Dense(2), SoftmaxCE()],
    lambda: [Bidirectional(GRU(3, return_sequences=True)), GlobalAvgPool1D(), Dense(2), SoftmaxCE()],
    lambda: [Bidirectional(SimpleRNN(3)), Dense(2), SoftmaxCE()],
    lambda: [Bidirectional(LSTM(2), merge="sum"), Dense(2), SoftmaxCE()],
]
SEQUENCE_MODEL_IDS = ["conv-lstm-gru", "rnn-pools", "bigru-avg", "birnn", "bilstm-sum"]


def perturbed(model: Sequential) -> Sequential:
    """Parameters moved away from their initial values (non-zero biases), as training leaves them."""
    rng = np.random.default_rng(1)
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.2, p.shape).astype(p.dtype)
    return model


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("make", SEQUENCE_MODELS, ids=SEQUENCE_MODEL_IDS)
def test_to_torch(make, dtype, tol):
    torch = pytest.importorskip("torch")
    from minidl.export import to_torch

    model = perturbed(Sequential(make(), input_shape=(9, 4), seed=0, dtype=dtype))
    x = np.random.default_rng(2).standard_normal((5, 9, 4)).astype(dtype)
    net = to_torch(model)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, model.predict_proba(x), rtol=0, atol=tol)
    assert all(p.dtype == getattr(torch, dtype) for p in net.parameters())


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("make", SEQUENCE_MODELS, ids=SEQUENCE_MODEL_IDS)
def test_to_onnx(make, opset):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from minidl.export import to_onnx

    model = perturbed(Sequential(make(), input_shape=(9, 4), seed=0))
    proto = to_onnx(model, None, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = np.random.default_rng(2).standard_normal((n, 9, 4)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict_proba(x), rtol=0, atol=1e-5)
