"""benchmarks/blog_reference.py computes what minidl's faithful blog_cnn computes, one pixel at a time."""

import importlib.util
from pathlib import Path

import numpy as np

from minidl.presets import blog_cnn

spec = importlib.util.spec_from_file_location(
    "blog_reference", Path(__file__).resolve().parent.parent / "benchmarks" / "blog_reference.py")
blog_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(blog_reference)


def test_reference_features_and_logits_match_the_faithful_preset():
    rng = np.random.default_rng(0)
    images = rng.random((5, 8, 8))
    model = blog_cnn(seed=0, faithful=True, dtype="float64")
    filters = model.layers[0].weight.data[:, 0]
    weights, bias = model.layers[4].weight.data, model.layers[4].bias.data
    features = np.stack([blog_reference.features(image, filters, 2) for image in images])
    np.testing.assert_allclose(features, model.layers[3].forward(model.layers[2].forward(model.layers[1].forward(
        model.layers[0].forward(images[:, None])))), rtol=1e-12)
    predicted = blog_reference.predict(images, filters, weights, bias)
    np.testing.assert_array_equal(predicted, model.predict(images[:, None]))


def test_one_reference_step_is_one_sgd_step_on_the_dense_layer():
    rng = np.random.default_rng(1)
    X, y = rng.random((1, 8, 8)), np.array([3])
    filters, weights, bias, _ = blog_reference.train(X, y, np.random.default_rng(2), epochs=1, lr=0.5)
    start = np.random.default_rng(2)
    start_filters = start.standard_normal((4, 3, 3)) * 0.1
    start_weights = start.standard_normal((36, 10)) * 0.01
    np.testing.assert_array_equal(filters, start_filters)  # the filters never train
    f = blog_reference.features(X[0], filters, 2)
    p = np.exp(f @ start_weights - (f @ start_weights).max())
    p /= p.sum()
    p[3] -= 1
    np.testing.assert_allclose(weights, start_weights - 0.5 * np.outer(f, p), rtol=1e-12)
    np.testing.assert_allclose(bias, -0.5 * p, rtol=1e-12)
