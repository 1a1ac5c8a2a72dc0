"""minidl.backend: choosing a backend (set_backend, MINIDL_BACKEND, the default), show_config, and layers
written against plain NumPy working under every backend."""

import importlib.util
import io
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import minidl
from minidl import backend
from minidl.layers import BatchNorm2D, Conv2D, Dense, Flatten, Layer, MaxPool2D, Parameter, ReLU, SoftmaxCE


@pytest.fixture(autouse=True)
def default_backend(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend.set_backend(None)
    yield
    backend.set_backend(None)


def test_the_default_is_fast_when_numba_is_installed_else_numpy():
    expected = "fast" if importlib.util.find_spec("numba") else "numpy"
    assert backend.get_backend().name == expected
    assert backend.available_backends()[0] == "numpy"


def test_set_backend_and_the_environment_variable(monkeypatch):
    backend.set_backend("numpy")
    assert backend.get_backend().name == "numpy"
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    backend.set_backend(None)  # the default again, which now reads the variable
    assert backend.get_backend().name == "numpy"


def test_unknown_backends_are_refused_naming_where_the_name_came_from(monkeypatch):
    with pytest.raises(ValueError, match=r"set_backend: unknown backend 'gpu'; expected one of \[.*'numpy'.*\]"):
        backend.set_backend("gpu")
    with pytest.raises(TypeError, match="set_backend: name must be a str or None, got int"):
        backend.set_backend(1)
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    backend.set_backend(None)
    with pytest.raises(ValueError, match="the environment variable MINIDL_BACKEND: unknown backend 'cuda'"):
        backend.get_backend()


def test_show_config_names_the_backend_threads_and_blas_architecture():
    out = io.StringIO()
    minidl.show_config(file=out)
    text = out.getvalue()
    assert f"backend: {backend.get_backend().name}\n" in text
    assert f"threads: {minidl.get_num_threads()}\n" in text
    assert re.search(r"blas: \w+ [\d.]+ '\w+'", text), text


def test_minidl_version_prints_the_config():
    done = subprocess.run([sys.executable, "-m", "minidl", "--version"], capture_output=True, text=True, timeout=120,
                          cwd=pathlib.Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"minidl: {minidl.__version__}\n") and "backend: " in done.stdout


class Square(Layer):
    """``y = x²``, written against plain NumPy: knows nothing of backends."""

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x * x

    def backward(self, grad_out):
        return 2 * self._x * grad_out


class Scale(Layer):
    """``y = x · w`` per feature, with a trained parameter."""

    def create_parameters(self, input_shape, rng, dtype):
        self.weight = Parameter(np.ones(input_shape, dtype=dtype))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x * self.weight.data

    def backward(self, grad_out):
        self.weight.grad[...] = (grad_out * self._x).sum(axis=0)
        return grad_out * self.weight.data


@pytest.mark.parametrize("name", backend.available_backends())
def test_a_custom_numpy_layer_trains_between_built_in_layers_under_every_backend(name):
    def train() -> dict:
        model = minidl.Sequential([Conv2D(3, 3, padding=1), Square(), BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(),
                                   Scale(), Dense(3), SoftmaxCE()], input_shape=(1, 8, 8), seed=0, dtype="float64")
        rng = np.random.default_rng(0)
        model.fit(rng.random((16, 1, 8, 8)), rng.integers(0, 3, 16), epochs=2, batch_size=8, verbose=0)
        return model.state_dict()

    backend.set_backend("numpy")
    reference = train()
    backend.set_backend(name)
    state = train()
    assert any(np.any(value != 1) for key, value in state.items() if key.endswith("weight") and "6" in key)
    for key, value in reference.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-9, atol=1e-12)


def test_layer_files_hold_no_layout_or_path_logic():
    root = pathlib.Path(minidl.__file__).parent / "layers"
    for path in ("conv.py", "pooling.py", "normalization.py", "activations.py"):
        text = (root / path).read_text()
        for leak in ("transpose(", "kernels", "_path", "xp ", "_buffers", "expects images"):
            assert leak not in text, (path, leak)
