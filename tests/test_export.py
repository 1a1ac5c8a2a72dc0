"""minidl.export: ONNX (checked by onnx's checker, run by onnxruntime) and PyTorch, against minidl's own outputs."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidl import Sequential, presets
from minidl.export import register_onnx, register_torch, to_onnx, to_torch
from minidl.export.registry import ONNX_EXPORTERS, TORCH_EXPORTERS
from minidl.layers import (MSE, AvgPool2D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity,
                           Layer, LeakyReLU, MaxPool2D, Parallel, ReLU, Residual, Sigmoid, SigmoidBCE, Softmax,
                           SoftmaxCE, Tanh, Upsample2D)

TOL = 1e-5  # float32, as issue 11 asks
BATCHES = (1, 7)

PRESETS = {name: fn for name, fn in vars(presets).items()
           if inspect.isfunction(fn) and fn.__module__ == presets.__name__
           and inspect.signature(fn).return_annotation in ("Sequential", Sequential)
           and "vocab_size" not in inspect.signature(fn).parameters}  # token models: tests/test_export_sequences.py


def test_every_preset_is_found():
    assert {"blog_cnn", "digits_cnn", "lenet"} <= set(PRESETS)


def perturbed(model: Sequential, seed: int = 0) -> Sequential:
    """Weights as training leaves them: non-zero biases, running statistics away from 0 and 1."""
    rng = np.random.default_rng(seed)
    for name, holder in (model.named_parameters() | model.named_buffers()).items():
        if name.endswith("running_var"):
            holder.data[...] = rng.uniform(0.5, 2.0, holder.shape)
        elif name.endswith(("bias", "running_mean")) or (name.endswith("weight") and holder.data.ndim == 1):
            holder.data[...] = holder.data + rng.normal(0, 0.3, holder.shape)
    return model


def inputs(model: Sequential, n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *model.input_shape)).astype(model.dtype)


def expected(model: Sequential, X: np.ndarray) -> np.ndarray:
    """What the export computes: the model's outputs, then its loss's inference output (probabilities)."""
    outputs = model.forward(X)
    return model.loss.probabilities(outputs) if isinstance(model.loss, (SoftmaxCE, SigmoidBCE)) else outputs


def run_onnx(model: Sequential, X: np.ndarray, opset: int = 13) -> np.ndarray:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    proto = to_onnx(model, None, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})[0]


def run_torch(model: Sequential, X: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        return to_torch(model)(torch.from_numpy(X)).numpy()


# -- the presets ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("run", [run_onnx, run_torch], ids=["onnx", "torch"])
def test_every_preset_matches_predict_proba(name, run):
    model = perturbed(PRESETS[name](seed=0))
    for n in BATCHES:
        X = inputs(model, n)
        out = run(model, X)
        assert out.shape == (n, *model.output_shape)
        np.testing.assert_allclose(out, model.predict_proba(X), rtol=0, atol=TOL)


@pytest.mark.slow
@pytest.mark.parametrize("run", [run_onnx, run_torch], ids=["onnx", "torch"])
def test_trained_and_faithful_blog_cnn(run, digits):
    X_train, X_test, y_train, _ = digits
    model = presets.blog_cnn(seed=0)
    presets.RECIPES["blog_cnn"].fit(model, X_train[:400], y_train[:400], verbose=0)
    faithful = presets.blog_cnn(seed=0, faithful=True)  # a bias-free convolution
    for m in (model, faithful):
        X = X_test[:7].astype(np.float32)
        np.testing.assert_allclose(run(m, X), m.predict_proba(X), rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def digits():
    from minidl.data import load_digits

    return load_digits()


# -- random compositions (Hypothesis) ---------------------------------------------------------
@st.composite
def models(draw, dtype: str = "float32") -> Sequential:
    """A random valid stack: image layers, Flatten or GlobalAvgPool2D, dense layers, maybe a head.

    Each drawn layer is kept only if it can take the current shape, so nothing is rejected.
    """
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    layers: list[Layer] = []
    current = shape
    small = st.integers(1, 4)
    image_layers = st.one_of(
        st.builds(Conv2D, st.integers(1, 4), st.tuples(small, small), st.tuples(st.integers(1, 3), st.integers(1, 3)),
                  st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                            st.tuples(st.integers(0, 2), st.integers(0, 2))), st.booleans()),
        st.integers(1, 4).flatmap(lambda k: st.builds(
            lambda cls, s, p: cls(k, stride=s, padding=p), st.sampled_from([MaxPool2D, AvgPool2D]),
            st.one_of(st.none(), st.integers(1, 3)), st.integers(0, k // 2))),
        st.builds(BatchNorm2D, eps=st.sampled_from([1e-5, 1e-3])),
        st.builds(Upsample2D, st.tuples(st.integers(1, 3), st.integers(1, 3))),
        st.sampled_from([ReLU, Tanh, Sigmoid, Identity]).map(lambda cls: cls()),
        st.builds(LeakyReLU, st.floats(0, 0.5)),
        st.builds(Dropout, st.floats(0, 0.9)),
        st.builds(Softmax, st.sampled_from([1, -1])),
    )
    for layer in draw(st.lists(st.one_of(image_layers, blocks()), max_size=5)):
        try:
            grown = layer.compute_output_shape(current)
        except ValueError:
            continue
        # Images stay at most 32x32, the size of real inputs: onnxruntime sums a GlobalAveragePool in
        # float32 one value at a time, so its error grows with the pixel count (5e-5 on images upsampled to
        # 162x162; at most 2e-6 over 400 models within 32x32): onnxruntime's round-off, not the export's.
        if len(grown) == 3 and grown[1] * grown[2] > 32 * 32:
            continue
        current = grown
        layers.append(layer)
    layers.append(draw(st.sampled_from([Flatten, GlobalAvgPool2D]))())
    for units in draw(st.lists(st.integers(1, 6), max_size=2)):
        layers += [Dense(units), draw(st.sampled_from([ReLU, Tanh, LeakyReLU]))()]
    head = draw(st.sampled_from([SoftmaxCE, Softmax, SigmoidBCE, MSE, None]))
    if head is not None:
        layers += [Dense(draw(st.integers(2, 5))), head()]
    return perturbed(Sequential(layers, input_shape=shape, seed=draw(st.integers(0, 99)), dtype=dtype),
                     seed=draw(st.integers(0, 99)))


@st.composite
def keeping(draw, channels: int, depth: int) -> list[Layer]:
    """1-3 layers mapping (channels, H, W) to itself, containers nested up to depth 3."""
    kinds = ["conv", "bn", "act"] + (["residual", "add"] if depth < 3 else [])
    out: list[Layer] = []
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3)):
        if kind == "conv":
            out.append(Conv2D(channels, draw(st.integers(1, 4)), padding="same"))
        elif kind == "bn":
            out.append(BatchNorm2D())
        elif kind == "act":
            out.append(draw(st.sampled_from([ReLU, Tanh, Sigmoid]))())
        elif kind == "residual":
            out.append(Residual(draw(keeping(channels, depth + 1))))
        else:
            out.append(Parallel([draw(keeping(channels, depth + 1)) for _ in range(draw(st.integers(1, 3)))],
                                merge="add"))
    return out


@st.composite
def blocks(draw) -> Layer:
    """A container for images of any channel count c: the model's loop keeps it only if it fits."""
    c = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["residual", "projection", "concat", "add"]))
    if kind == "residual":
        return Residual(draw(keeping(c, 1)))
    if kind == "projection":
        out, stride = draw(st.integers(1, 4)), draw(st.integers(1, 2))
        return Residual([Conv2D(out, 3, stride=stride, padding="same"), ReLU()],
                        shortcut=Conv2D(out, 1, stride=stride))
    if kind == "add":
        return Parallel([draw(keeping(c, 1)) for _ in range(2)], merge="add")
    return Parallel([[Conv2D(draw(st.integers(1, 3)), draw(st.integers(1, 3)), padding="same")],
                     [MaxPool2D(3, stride=1, padding=1)],
                     Residual(draw(keeping(c, 2)))])


@pytest.mark.slow
@pytest.mark.parametrize("run", [run_onnx, run_torch], ids=["onnx", "torch"])
@given(model=models())
@settings(max_examples=25)
def test_random_models_match_forward(run, model):
    for n in BATCHES:
        X = inputs(model, n)
        np.testing.assert_allclose(run(model, X), expected(model, X), rtol=0, atol=TOL)


# -- layer by layer: padding, naming, dtypes --------------------------------------------------
@pytest.mark.parametrize("padding", ["same", "valid", 1, (0, 2)])
@pytest.mark.parametrize("kernel, stride", [((2, 3), 1), (4, 2), (3, (2, 1))])
def test_conv_paddings(padding, kernel, stride):
    model = perturbed(Sequential([Conv2D(3, kernel, stride, padding)], input_shape=(2, 7, 6), seed=0))
    X = inputs(model, 7)
    np.testing.assert_allclose(run_onnx(model, X), expected(model, X), rtol=0, atol=TOL)
    np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=TOL)


def test_asymmetric_same_padding_is_explicit():
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    model = Sequential([Conv2D(2, 2, padding="same")], input_shape=(1, 5, 5), seed=0)  # pads 0 top/left, 1 bottom/right
    conv = next(node for node in to_onnx(model, None).graph.node if node.op_type == "Conv")
    assert [list(a.ints) for a in conv.attribute if a.name == "pads"] == [[0, 0, 1, 1]]
    net = to_torch(model)
    assert isinstance(net[0], torch.nn.Sequential) and isinstance(net[0][0], torch.nn.ZeroPad2d)
    assert net[0][0].padding == (0, 1, 0, 1)


def test_pools_with_padding_keep_minidl_semantics():
    # all-negative input: MaxPool's padding must act as -inf, AvgPool's as zeros counted in the divisor
    model = Sequential([MaxPool2D(3, stride=2, padding=1), AvgPool2D((2, 3), stride=1, padding=(1, 1))],
                       input_shape=(2, 6, 7), seed=0)
    X = -np.abs(inputs(model, 7)) - 1
    np.testing.assert_allclose(run_onnx(model, X), expected(model, X), rtol=0, atol=TOL)
    np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=TOL)


def test_nested_containers_keep_minidl_names():
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    block = Residual([Conv2D(3, 3, padding="same"), BatchNorm2D(), ReLU(), Conv2D(3, 2, padding="same")])
    down = Residual([Conv2D(4, 3, stride=2, padding="same"), ReLU()], shortcut=Conv2D(4, 1, stride=2))
    model = perturbed(Sequential([
        Sequential([Conv2D(3, 3, padding="same"), ReLU()]), block, down,
        Parallel([[Conv2D(2, 1)], [Residual([Conv2D(4, 3, padding="same")])]], merge="concat"),
        Parallel([Conv2D(2, 1), [AvgPool2D(3, stride=1, padding=1), Conv2D(2, 1)]], merge="add"),
        GlobalAvgPool2D(), Dense(5), SoftmaxCE(),
    ], input_shape=(1, 7, 6), seed=0))
    for n in BATCHES:
        X = inputs(model, n)
        np.testing.assert_allclose(run_onnx(model, X), expected(model, X), rtol=0, atol=TOL)
        np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=TOL)
    ops = [node.op_type for node in to_onnx(model, None).graph.node]
    assert ops.count("Add") == 3 and ops.count("Concat") == 1 and ops.count("Sum") == 1
    state = to_torch(model).state_dict()
    minidl_state = model.state_dict()
    # the same names, except where an asymmetric "same" padding adds a ZeroPad2d (".1." for the Conv2d)
    padded = {"1.layers.3.": "1.layers.3.1.", "2.layers.0.": "2.layers.0.1."}  # kernel 2; stride 2 on 7×6
    renamed = {next((k.replace(a, b) for a, b in padded.items() if k.startswith(a)), k) for k in minidl_state}
    assert renamed | {k for k in state if k.endswith("num_batches_tracked")} == set(state)
    assert isinstance(to_torch(model)[1], torch.nn.Module) and type(to_torch(model)[1]).__name__ == "TorchResidual"


def test_upsample2d():
    model = Sequential([Upsample2D((2, 3)), Conv2D(2, 3, padding="same")], input_shape=(1, 3, 2), seed=0)
    X = inputs(model, 7)
    np.testing.assert_allclose(run_onnx(model, X), expected(model, X), rtol=0, atol=TOL)
    np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=TOL)


def test_onnx_batch_axis_is_symbolic_and_weights_keep_their_names(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = presets.blog_cnn(seed=0)
    to_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert set(weights) == set(model.state_dict())
    np.testing.assert_array_equal(weights["4.weight"], model.layers[4].weight.data)
    assert [n.op_type for n in proto.graph.node] == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"]
    assert list(tmp_path.iterdir()) == [tmp_path / "m.onnx"]  # no temporary file left behind


def test_onnx_opset_and_dtype():
    onnx = pytest.importorskip("onnx")
    model = perturbed(Sequential([Flatten(), Dense(3), Tanh(), Dense(2), SoftmaxCE()], input_shape=(4,), seed=0))
    X = inputs(model, 7)
    newest = min(onnx.defs.onnx_opset_version(), 21)  # onnxruntime may trail onnx by a few opsets
    np.testing.assert_allclose(run_onnx(model, X, opset=newest), expected(model, X), rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="opset must be >= 13, got 12"):
        to_onnx(model, None, opset=12)
    with pytest.raises(ValueError, match="opset must be between 13 and"):
        to_onnx(model, None, opset=10_000)
    double = Sequential([Dense(3), Sigmoid()], input_shape=(4,), seed=0, dtype="float64")
    assert to_onnx(double, None).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    np.testing.assert_allclose(run_onnx(double, inputs(double, 7)), expected(double, inputs(double, 7)), atol=1e-12)


@pytest.mark.parametrize("head, op", [(SigmoidBCE, "Sigmoid"), (MSE, None), (SoftmaxCE, "Softmax")])
def test_losses_export_their_inference_output(head, op):
    pytest.importorskip("onnx")
    model = perturbed(Sequential([Flatten(), Dense(3), head()], input_shape=(2, 2), seed=0))
    assert [n.op_type for n in to_onnx(model, None).graph.node] == ["Flatten", "Gemm", *([op] if op else [])]
    X = inputs(model, 7)
    np.testing.assert_allclose(run_onnx(model, X), expected(model, X), rtol=0, atol=TOL)
    np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=TOL)


def test_identity_model_and_dropout_is_left_out():
    pytest.importorskip("onnx")
    model = Sequential([Dropout(0.5), Identity()], input_shape=(3,), seed=0)
    assert [n.op_type for n in to_onnx(model, None).graph.node] == ["Identity"]
    X = inputs(model, 7)
    np.testing.assert_array_equal(run_onnx(model, X), X)


def test_square_dense_is_not_loaded_transposed():
    torch = pytest.importorskip("torch")
    model = Sequential([Dense(4, use_bias=False)], input_shape=(4,), seed=0)
    w = model.layers[0].weight.data
    assert np.abs(w - w.T).max() > 0.1  # a transposed load would change the outputs
    net = to_torch(model)
    np.testing.assert_array_equal(net[0].weight.detach().numpy(), w.T)
    X = inputs(model, 7)
    np.testing.assert_allclose(run_torch(model, X), X @ w, atol=TOL)
    assert np.abs(run_torch(model, X) - X @ w.T).max() > 0.1


def test_torch_state_dict_carries_the_trained_weights():
    torch = pytest.importorskip("torch")
    model = perturbed(Sequential([Conv2D(3, 3), BatchNorm2D(momentum=0.2, eps=1e-3), ReLU(), Dropout(0.3),
                                  Flatten(), Dense(5), SoftmaxCE()], input_shape=(2, 5, 5), seed=0))
    net = to_torch(model)
    state = net.state_dict()
    minidl_state = model.state_dict()
    assert set(state) == set(minidl_state) | {"1.num_batches_tracked"}  # the same names as minidl's
    for name, value in minidl_state.items():
        expected = value.T if name == "5.weight" else value
        np.testing.assert_array_equal(state[name].numpy(), expected, err_msg=name)
    assert state["1.num_batches_tracked"].item() == 0
    bn = net[1]
    assert (bn.momentum, bn.eps) == (0.2, 1e-3) and not net.training
    assert isinstance(net[3], torch.nn.Dropout) and net[3].p == 0.3
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_torch_float64_and_training_on_in_pytorch():
    torch = pytest.importorskip("torch")
    model = perturbed(Sequential([Conv2D(2, 3, padding="same"), BatchNorm2D(), ReLU(), GlobalAvgPool2D(), Dense(3),
                                  SoftmaxCE()], input_shape=(1, 6, 6), seed=0, dtype="float64"))
    X = inputs(model, 7)
    np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=1e-12)
    net = to_torch(model).train()
    logits = net[:-1](torch.from_numpy(X))  # the documented way to train on: drop the Softmax head
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    loss.backward()
    assert net[0].weight.grad is not None and net[1].num_batches_tracked.item() == 1


# -- registering exporters, and the errors ------------------------------------------------------
class TimesConstant(Layer):
    """Multiplies by a constant: a user's layer without a built-in exporter."""

    def __init__(self, factor: float = 2.0, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.factor = factor

    def get_config(self):
        return {"factor": self.factor}

    def forward(self, x, training=False):
        self.check_input(x)
        return x * self.factor

    def backward(self, grad_out):
        return grad_out * self.factor


@pytest.fixture
def clean_registries():
    saved = {r: dict(r._exporters) for r in (ONNX_EXPORTERS, TORCH_EXPORTERS)}
    yield
    for registry, exporters in saved.items():
        registry._exporters.clear()
        registry._exporters.update(exporters)


def test_unregistered_layer_names_itself_and_how_to_register(clean_registries):
    pytest.importorskip("onnx")  # the onnx extra; without it to_onnx says so (test_missing_optional_package...)
    model = Sequential([Flatten(), TimesConstant(name="my_scale")], input_shape=(3,), seed=0)
    with pytest.raises(TypeError, match=r"no ONNX exporter for layer 'my_scale' \(.*TimesConstant\); register one with "
                                        r"@minidl.export.register_onnx\(TimesConstant\)"):
        to_onnx(model, None)
    pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"no PyTorch exporter for layer 'my_scale'.*register_torch\(TimesConstant\)"):
        to_torch(model)


def test_user_exporters(clean_registries):
    @register_onnx(TimesConstant)
    def scale_to_onnx(layer, graph, x):
        return graph.node("Mul", [x, graph.initializer(np.array(layer.factor, dtype=graph.dtype))])

    @register_torch(TimesConstant)
    def scale_to_torch(layer, ctx):
        class Mul(ctx.nn.Module):
            def forward(self, x):
                return x * layer.factor
        return Mul()

    model = Sequential([Flatten(), TimesConstant(3.0), Dense(2), SoftmaxCE()], input_shape=(2, 2), seed=0)
    X = inputs(model, 7)
    np.testing.assert_allclose(run_onnx(model, X), expected(model, X), rtol=0, atol=TOL)
    np.testing.assert_allclose(run_torch(model, X), expected(model, X), rtol=0, atol=TOL)


def test_register_checks_its_arguments():
    with pytest.raises(TypeError, match="register_onnx: expected a layer class"):
        register_onnx("TimesConstant")
    with pytest.raises(TypeError, match=r"register_torch\(TimesConstant\): expected a function"):
        register_torch(TimesConstant)(42)


def test_bad_models_are_refused():
    pytest.importorskip("onnx")
    with pytest.raises(TypeError, match="to_onnx: model must be a minidl Sequential, got Dense"):
        to_onnx(Dense(3), None)
    with pytest.raises(ValueError, match="to_onnx: the model is not built"):
        to_onnx(Sequential([Dense(3)]), None)


@pytest.mark.parametrize("module, call", [("onnx", lambda m: to_onnx(m, None)), ("torch", to_torch)])
def test_missing_optional_package_names_the_extra(module, call, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    model = Sequential([Dense(3)], input_shape=(2,), seed=0)
    with pytest.raises(ImportError, match=rf'needs the {module!r} package: pip install "minidl\[{module}\]"'):
        call(model)


def test_importing_minidl_export_imports_neither_onnx_nor_torch():
    import subprocess

    code = ("import sys, minidl.export; bad = {'onnx', 'torch', 'onnxruntime'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_digits_export(tmp_path, capsys):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from minidl.cli import main
    from minidl.data import load_digits

    path = tmp_path / "digits.onnx"
    assert main(["digits", "--epochs", "2", "--verbose", "2", "--export", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"exported: {path} (ONNX opset 13; input 'input' (N, 1, 8, 8)" in out
    _, X_test, _, y_test = load_digits()
    probs = ort.InferenceSession(str(path)).run(None, {"input": X_test})[0]
    assert f"test accuracy: {np.mean(probs.argmax(axis=1) == y_test):.4f}" in out  # the model it trained


def test_cli_export_without_onnx_fails_before_training(monkeypatch, capsys):
    import importlib.util

    from minidl.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(SystemExit) as exit_info:
        main(["digits", "--export", "m.onnx"])
    assert exit_info.value.code == 2
    assert '--export needs the onnx package: pip install "minidl[onnx]"' in capsys.readouterr().err


# -- sequence layers ----------------------------------------------------------------------------------


def token_model(kind: str = "learned", dtype: str = "float64") -> Sequential:
    from minidl.layers import GELU, Embedding, LayerNorm, MultiHeadAttention, PositionalEmbedding

    return perturbed(Sequential([Embedding(11, 8), PositionalEmbedding(6, kind=kind), LayerNorm(eps=1e-3),
                                 MultiHeadAttention(2, causal=True, dropout=0.1), Dense(16), GELU("tanh"), Dense(11),
                                 GELU()], input_shape=(6,), dtype=dtype, seed=0))


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_export_of_sequence_layers(kind, dtype):
    torch = pytest.importorskip("torch")
    model = token_model(kind, dtype)
    ids = np.random.default_rng(2).integers(0, 11, (3, 6))
    with torch.no_grad():
        out = to_torch(model)(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(out, model.forward(ids),
                               rtol=0, atol=1e-9 if dtype == "float64" else TOL)
    state = to_torch(model).state_dict()
    assert state["3.attention.in_proj_weight"].shape == (24, 8) and ("1.weight" in state) == (kind == "learned")


def test_torch_export_refuses_what_torch_cannot_hold():
    pytest.importorskip("torch")
    from minidl.layers import MultiHeadAttention

    with pytest.raises(ValueError, match=r"key_dim=3 with num_heads=2 and D=4; nn.MultiheadAttention needs "
                                         r"key_dim \* num_heads == D"):
        to_torch(Sequential([MultiHeadAttention(2, key_dim=3)], input_shape=(3, 4)))


@pytest.mark.parametrize("run", [run_onnx, run_torch], ids=["onnx", "torch"])
def test_dense_on_sequences_exports(run):
    model = perturbed(Sequential([Dense(4), Tanh(), Dense(3, use_bias=False), Dense(2)], input_shape=(5, 6), seed=0))
    for n in BATCHES:
        X = inputs(model, n)
        np.testing.assert_allclose(run(model, X), model.forward(X), rtol=0, atol=TOL)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
@pytest.mark.parametrize("opset", [13, 18])
def test_onnx_export_of_attention_layers(kind, opset):
    from minidl.layers import GELU, LayerNorm, MultiHeadAttention, PositionalEmbedding

    model = perturbed(Sequential([PositionalEmbedding(7, kind=kind), LayerNorm(), MultiHeadAttention(2, causal=True),
                                  Dense(16), GELU("tanh"), MultiHeadAttention(4, use_bias=False), Dense(8), GELU()],
                                 input_shape=(5, 8), seed=0))
    for n in BATCHES:
        X = inputs(model, n)
        np.testing.assert_allclose(run_onnx(model, X, opset=opset), model.forward(X), rtol=0, atol=TOL)
        np.testing.assert_allclose(run_torch(model, X), model.forward(X), rtol=0, atol=TOL)
