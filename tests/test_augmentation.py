"""Augmentation layers: the layer contract over random shapes, what each transform does, seeding, fit and saving."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl import Sequential
from minidl.layers import Conv2D, Dense, Flatten, RandomCrop, RandomFlip, RandomRotation, RandomShift, ReLU, SoftmaxCE
from minidl.testing import check_layer, image_shapes


def built(layer, shape, seed=0):
    layer.build(shape, rng=np.random.default_rng(seed), dtype=np.float64)
    return layer


@given(shape=image_shapes(height=(1, 7)), horizontal=st.booleans(), batch=st.integers(1, 3))
def test_random_flip_contract(shape, horizontal, batch):
    check_layer(RandomFlip(horizontal=horizontal, vertical=not horizontal or shape[1] > 3), shape, batch=batch)


@given(data=st.data(), shape=image_shapes(height=(1, 7)), batch=st.integers(1, 3))
def test_random_shift_contract(data, shape, batch):
    pixels = data.draw(st.integers(0, min(3, *shape[1:])))  # a shift up to the whole image
    check_layer(RandomShift(pixels), shape, batch=batch)


@pytest.mark.slow
@given(data=st.data(), shape=image_shapes(height=(1, 7)))
def test_random_crop_contract(data, shape):
    padding = data.draw(st.integers(0, min(2, *shape[1:])))
    size = (data.draw(st.integers(1, shape[1] + 2 * padding)), data.draw(st.integers(1, shape[2] + 2 * padding)))
    check_layer(RandomCrop(size, padding=padding), shape, batch=data.draw(st.integers(1, 3)))


@pytest.mark.slow
@given(shape=image_shapes(height=(1, 7)), degrees=st.floats(0, 180), batch=st.integers(1, 3))
def test_random_rotation_contract(shape, degrees, batch):
    check_layer(RandomRotation(degrees), shape, batch=batch)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` (C, H, W) moved down by dy and right by dx, zeros where nothing came from (a plain loop)."""
    out = np.zeros_like(image)
    _, h, w = image.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


def test_random_shift_moves_each_image_by_its_own_offset():
    layer = built(RandomShift(2), (2, 5, 6))
    x = np.random.default_rng(1).random((40, 2, 5, 6))
    y = layer.forward(x, training=True)
    oy, ox = layer._offsets
    for n in range(len(x)):  # offset o is a shift of p - o
        np.testing.assert_array_equal(y[n], shifted(x[n], 2 - oy[n], 2 - ox[n]))
    assert len({(a, b) for a, b in zip(oy, ox)}) > 10 and set(oy) <= set(range(5))
    assert layer.forward(x, training=False) is x


def test_random_crop_cuts_windows_and_the_centre_at_inference():
    layer = built(RandomCrop((3, 4), padding=1), (1, 5, 6))
    x = np.random.default_rng(2).random((30, 1, 5, 6))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = layer.forward(x, training=True)
    oy, ox = layer._offsets
    for n in range(len(x)):
        np.testing.assert_array_equal(y[n], padded[n, :, oy[n]:oy[n] + 3, ox[n]:ox[n] + 4])
    assert y.shape == (30, 1, 3, 4) and oy.max() <= 4 and ox.max() <= 4
    np.testing.assert_array_equal(layer.forward(x, training=False), padded[:, :, 2:5, 2:6])


def test_random_flip_flips_about_half_of_the_images():
    layer = built(RandomFlip(horizontal=True, vertical=True), (3, 4, 5))
    x = np.random.default_rng(3).random((200, 3, 4, 5))
    y = layer.forward(x, training=True)
    kinds = []
    for n in range(len(x)):
        candidates = [x[n], x[n, :, :, ::-1], x[n, :, ::-1], x[n, :, ::-1, ::-1]]
        kinds.append([k for k, c in enumerate(candidates) if np.array_equal(y[n], c)][0])
    counts = np.bincount(kinds, minlength=4)
    assert counts.min() > 25  # each of the four outcomes has probability 1/4
    assert layer.forward(x, training=False) is x


def test_random_rotation_matches_a_per_pixel_reference():
    layer = built(RandomRotation(45), (2, 6, 7))
    x = np.random.default_rng(4).random((5, 2, 6, 7))
    state = layer._rng.bit_generator.state
    y = layer.forward(x, training=True)
    layer._rng.bit_generator.state = state
    angles = np.deg2rad(layer._rng.uniform(-45, 45, len(x)))
    h, w = 6, 7
    for n, a in enumerate(angles):
        expected = np.zeros((2, h, w))
        for i in range(h):
            for j in range(w):
                yc, xc = i - (h - 1) / 2, j - (w - 1) / 2
                si = int(np.rint(np.cos(a) * yc + np.sin(a) * xc + (h - 1) / 2))
                sj = int(np.rint(np.cos(a) * xc - np.sin(a) * yc + (w - 1) / 2))
                if 0 <= si < h and 0 <= sj < w:
                    expected[:, i, j] = x[n, :, si, sj]
        np.testing.assert_array_equal(y[n], expected)


def test_rotating_by_a_right_angle_turns_a_square_image():
    layer = built(RandomRotation(90), (1, 4, 4))

    class Pinned:  # draws exactly +90 degrees
        def uniform(self, low, high, n):
            return np.full(n, 90.0)

    layer._rng = Pinned()
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(layer.forward(x, training=True)[0, 0], np.rot90(x[0, 0]))  # counter-clockwise


def small_cnn(seed, augment=()):
    return Sequential([*augment, Conv2D(4, 3, padding="same"), ReLU(), Flatten(), Dense(3), SoftmaxCE()],
                      input_shape=(1, 6, 6), seed=seed)


def fit_history(seed, augment):
    rng = np.random.default_rng(0)
    X, y = rng.random((24, 1, 6, 6)), rng.integers(0, 3, 24)
    model = small_cnn(seed, augment)
    return model, model.fit(X, y, epochs=2, batch_size=8, verbose=0)["loss"]


def test_augmented_training_is_reproducible_from_the_seed_and_leaves_numpys_global_state_alone():
    before = np.random.get_state()[1].copy()
    layers = lambda: [RandomShift(1), RandomFlip(), RandomRotation(20), RandomCrop(6, padding=1)]  # noqa: E731
    _, a = fit_history(0, layers())
    _, b = fit_history(0, layers())
    _, c = fit_history(1, layers())
    assert a == b and a != c
    assert (np.random.get_state()[1] == before).all()


def test_augmentation_changes_training_not_inference(tmp_path):
    model, _ = fit_history(0, [RandomShift(1), RandomFlip()])
    X = np.random.default_rng(5).random((7, 1, 6, 6))
    first = model.predict_proba(X)
    assert (model.predict_proba(X) == first).all()
    plain = small_cnn(0)
    # The same weights without the augmentation layers (indices 2 lower): the same predictions.
    plain.load_state_dict({f"{int(k.split('.')[0]) - 2}.{k.split('.', 1)[1]}": v for k, v in model.state_dict().items()})
    np.testing.assert_array_equal(plain.predict_proba(X), first)
    model.save(tmp_path / "m.npz")
    again = minidl.load(tmp_path / "m.npz")
    assert [type(layer).__name__ for layer in again.layers[:2]] == ["RandomShift", "RandomFlip"]
    np.testing.assert_array_equal(again.predict_proba(X), first)


@pytest.mark.parametrize("make, error, match", [
    (lambda: RandomFlip(horizontal=False), ValueError, "nothing would be flipped"),
    (lambda: RandomFlip(horizontal="yes"), TypeError, "horizontal must be a bool"),
    (lambda: RandomShift(-1), ValueError, "pixels"),
    (lambda: RandomCrop(0), ValueError, "size"),
    (lambda: RandomCrop(3, padding=1.5), TypeError, "padding"),
    (lambda: RandomRotation(181), ValueError, r"degrees must be in \[0, 180\]"),
    (lambda: RandomRotation(float("nan")), ValueError, "degrees"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_shapes_that_cannot_work_fail_at_build():
    with pytest.raises(ValueError, match=r"window \(9, 9\) is bigger than the padded image \(7, 7\)"):
        RandomCrop(9, padding=1).build((1, 5, 5))
    with pytest.raises(ValueError, match=r"expects images \(N, C, H, W\)"):
        RandomShift(1).build((10,))


@pytest.mark.parametrize("layer, match", [
    (RandomShift(10**400), r"RandomShift: pixels \(10{400}, 10{400}\) is more than the image's height and width"),
    (RandomShift((1, 7)), r"pixels \(1, 7\) is more than the image's height and width \(5, 6\)"),
    (RandomCrop(5, padding=10**5), r"RandomCrop: padding \(100000, 100000\) is more than .* expected at most \(5, 6\)"),
])
def test_padding_beyond_the_image_fails_at_build(layer, match):
    # Accepted before, these failed only at the first training step: NumPy's "high is out of bounds
    # for int64" (10**400), or padding each image of the batch to gigabytes (10**5).
    with pytest.raises(ValueError, match=match):
        Sequential([layer], input_shape=(1, 5, 6))
    assert RandomShift((5, 6)).build((1, 5, 6)) == (1, 5, 6)  # a shift by the whole image is the limit


def test_the_cifar_preset_trains_with_its_augmentation():
    from minidl.presets import RECIPES, cifar_vgg

    model = cifar_vgg(seed=0)
    assert [type(layer).__name__ for layer in model.layers[:2]] == ["RandomCrop", "RandomFlip"]
    rng = np.random.default_rng(0)
    optimizer = RECIPES["cifar_vgg"].make_optimizer(model.parameters())
    history = model.fit(rng.random((4, 3, 32, 32)), rng.integers(0, 10, 4), optimizer=optimizer, batch_size=4, verbose=0)
    assert np.isfinite(history["loss"][0]) and model.predict_proba(rng.random((2, 3, 32, 32))).shape == (2, 10)
def test_fit_skips_the_backward_of_an_augmentation_layer_in_front(monkeypatch):
    """First in a model, nobody needs the gradient of the raw images: fit calls backward_params, a no-op."""
    def refuse(self, grad_out):
        raise AssertionError("fit ran the augmentation layer's backward")

    monkeypatch.setattr(RandomShift, "backward", refuse)
    _, losses = fit_history(0, [RandomShift(1)])
    assert len(losses) == 2


def test_augmentation_works_inside_a_nested_model(tmp_path, monkeypatch):
    seen = []
    forward = RandomShift.forward
    monkeypatch.setattr(RandomShift, "forward", lambda self, x, training=False: (seen.append(training),
                                                                                 forward(self, x, training))[1])
    inner = Sequential([RandomShift(1), Conv2D(2, 3, padding="same"), ReLU()])
    model = Sequential([inner, Flatten(), Dense(3), SoftmaxCE()], input_shape=(1, 6, 6), seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.random((16, 1, 6, 6)), rng.integers(0, 3, 16)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    model.predict(X)
    assert seen == [True, True, False]  # two training batches, then inference
    model.save(tmp_path / "nested.npz")
    assert type(minidl.load(tmp_path / "nested.npz").layers[0].layers[0]) is RandomShift
