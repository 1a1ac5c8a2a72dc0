"""examples/custom_layer.py, the runnable docs/extending.md, works as the docs say."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_layer.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("custom_layer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_checks_trains_saves_and_reloads(example, capsys):
    scores = example.main(["--epochs", "3"])
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("  ok  ") == 17
    assert "reloaded model predicts the same, bit for bit" in out
    assert scores["accuracy"] >= 0.95


def test_swish_matches_its_formula_and_rejects_bad_beta(example):
    layer = example.Swish(beta=0.5)
    layer.build((2, 3), rng=np.random.default_rng(0), dtype="float64")
    x = np.linspace(-3, 3, 12).reshape(2, 2, 3)
    np.testing.assert_allclose(layer.forward(x), x / (1 + np.exp(-0.5 * x)), rtol=1e-14)
    with pytest.raises(ValueError, match=r"Swish: beta must be finite and in \[0.0, inf\), got -1"):
        example.Swish(beta=-1)


def test_the_docs_hypothesis_recipe_on_swish(example):
    from hypothesis import given
    from hypothesis import strategies as st

    from minidl.testing import check_layer, image_shapes

    @given(image_shapes(channels=(1, 4), height=(1, 6)), st.integers(1, 3), st.floats(0.1, 3.0))
    def test_swish(shape, batch, beta):
        check_layer(example.Swish(beta=beta), shape, batch=batch)

    test_swish()
