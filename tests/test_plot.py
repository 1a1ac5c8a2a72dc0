"""minidl.plot: every picture for several models, rendered headless, checked as PNG files and by their titles."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (pillow comes with matplotlib)

from minidl import Sequential, plot, presets  # noqa: E402
from minidl.data import load_digits  # noqa: E402
from minidl.layers import (  # noqa: E402
    BatchNorm2D, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, Parallel, ReLU, Residual, SoftmaxCE,
)
from minidl.optim import SGD  # noqa: E402

#: A figure is not blank when its grey levels vary (a white page with a title: variance ~140) and
#: enough of it is drawn on (empty axes with a title and ticks: 2.6% of pixels darker than 245;
#: the sparsest real figure, history's lines, ~9%). See test_the_blank_check_catches_an_empty_figure.
MIN_VARIANCE = 300.0
MIN_INKED = 0.05


@pytest.fixture(scope="module")
def digits():
    X_train, X_test, y_train, y_test = load_digits()
    return X_train[:240], X_test[:120], y_train[:240], y_test[:120]


def rgb_model():
    return Sequential([Conv2D(6, 5, padding="same"), ReLU(), MaxPool2D(2), Conv2D(8, 3), ReLU(), MaxPool2D(2),
                       Flatten(), Dense(3), SoftmaxCE()], input_shape=(3, 32, 32), seed=0)


def rgb_data(n=60):
    """Three colour classes: red, green or blue blobs on noise, so a trained model mostly gets them right."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    X = rng.random((n, 3, 32, 32)) * 0.3
    X[np.arange(n), y, 8:24, 8:24] += 0.7
    return X.astype(np.float32), y


def nested_model():
    """Containers three deep: a Sequential stem, a Residual block, a Parallel of two branches."""
    stem = Sequential([Conv2D(8, 3, padding="same"), ReLU()])
    block = Residual([Conv2D(8, 3, padding="same"), BatchNorm2D(), ReLU(), Conv2D(8, 3, padding="same")])
    branches = Parallel([[Conv2D(4, 1)], [Conv2D(4, 3, padding="same"), ReLU()]], merge="concat")
    return Sequential([stem, block, ReLU(), MaxPool2D(2), branches, GlobalAvgPool2D(), Dense(10), SoftmaxCE()],
                      input_shape=(1, 8, 8), seed=0)


@pytest.fixture(scope="module", params=["blog_cnn", "digits_cnn", "rgb", "nested"])
def trained(request, digits):
    """(name, model, history, X_test, y_test) after a 2-epoch fit with validation data."""
    if request.param == "nested":
        model = nested_model()
        X_train, X_test, y_train, y_test = digits
    elif request.param == "rgb":
        model = rgb_model()
        X, y = rgb_data()
        X_train, X_test, y_train, y_test = X[:40], X[40:], y[:40], y[40:].copy()
        y_test[:3] = (y_test[:3] + 1) % 3  # mislabelled on purpose: misclassified() always has something to show
    else:
        model = presets.PRESETS[request.param](seed=0)
        X_train, X_test, y_train, y_test = digits
    history = model.fit(X_train, y_train, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9), epochs=2,
                        batch_size=16, validation_data=(X_test, y_test), verbose=0)
    return request.param, model, history, X_test, y_test


def png(path):
    """Width, height, grey-level variance and inked fraction of a PNG file (asserting that it is one)."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    image = Image.open(path)
    assert image.format == "PNG"
    grey = np.asarray(image.convert("L"), dtype=float)
    return image.size[0], image.size[1], float(grey.var()), float(np.mean(grey < 245))


def check_file(fig, path, min_size=(300, 150), max_size=(2400, 2400)):
    width, height, variance, inked = png(path)
    expected = tuple(int(round(v)) for v in fig.get_size_inches() * fig.dpi)
    assert (width, height) == expected, "the file must have the figure's size (no tight-bbox cropping)"
    assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1], (width, height)
    assert variance > MIN_VARIANCE and inked > MIN_INKED, \
        f"{path} looks blank (grey-level variance {variance:.0f}, {inked:.1%} of pixels drawn on)"


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_the_blank_check_catches_an_empty_figure(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    fig.subplots().set_title("Loss")
    fig.suptitle("Training history: 5 epochs")
    fig.savefig(tmp_path / "empty.png")
    with pytest.raises(AssertionError, match="looks blank"):
        check_file(fig, tmp_path / "empty.png")


@pytest.mark.slow
def test_history(trained, tmp_path):
    name, _, history, _, _ = trained
    fig = plot.history(history, path=tmp_path / "history.png")
    check_file(fig, tmp_path / "history.png")
    assert titles(fig) == ["Loss", "Accuracy", "Learning rate"]
    assert fig.get_suptitle() == "Training history: 2 epochs"
    loss = fig.axes[0]
    assert [line.get_label().split(" (")[0] for line in loss.lines] == ["training", "validation"]
    np.testing.assert_allclose(loss.lines[0].get_ydata(), history["loss"])
    np.testing.assert_array_equal(loss.lines[1].get_xdata(), [1, 2])  # epochs count from 1
    assert loss.get_xlabel() == "Epoch"


def tile(mosaic_ax, i, grid):
    """Tile ``i`` of the mosaic drawn in ``mosaic_ax`` (its data array, cut where the grid puts it)."""
    data = np.ma.getdata(mosaic_ax.images[0].get_array())
    row, col = divmod(i, grid.cols)
    top = row * (grid.h + grid.gap + grid.row_gap) + grid.row_gap
    left = col * (grid.w + grid.gap)
    return data[top:top + grid.h, left:left + grid.w]


def test_mosaic_puts_each_tile_in_its_place():
    tiles = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    grid = plot._Grid(2, 3, cols=2, row_gap=1)
    mosaic = grid.mosaic(tiles)
    assert mosaic.shape == (3 * (2 + 1 + 1) - 1, 2 * (3 + 1) - 1)
    for i in range(5):
        row, col = divmod(i, 2)
        np.testing.assert_array_equal(mosaic[row * 4 + 1:row * 4 + 3, col * 4:col * 4 + 3], tiles[i])
    assert np.isnan(mosaic).sum() == mosaic.size - tiles.size
    rgb = plot._Grid(2, 2, cols=2).mosaic(np.full((3, 2, 2, 3), 0.25))
    assert rgb.shape == (5, 5, 3) and not np.isnan(rgb).any()
    np.testing.assert_array_equal(rgb[2, 2], [0.9, 0.9, 0.9])  # gaps painted in the gap colour


@pytest.mark.slow
def test_filters(trained, tmp_path):
    name, model, _, _, _ = trained
    fig = plot.filters(model, path=tmp_path / "filters.png")
    check_file(fig, tmp_path / "filters.png", min_size=(400, 150))
    path, conv = next((p, layer) for p, layer in model.named_layers().items() if isinstance(layer, Conv2D))
    weight = conv.weight.data
    f, c, kh, kw = weight.shape
    ax = fig.axes[0]
    assert ax.get_title().startswith(f"Filters of Conv2D {path!r}: {f}, {kh}×{kw} over {c} channel")
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(f)]
    grid = plot._Grid(kh, kw, min(f, 8), row_gap=-(-kh // 3))
    scale = np.abs(weight).max()
    for i in (0, f - 1):
        if c == 3:  # in colour: each kernel one RGB image, grey at zero
            np.testing.assert_allclose(tile(ax, i, grid), np.clip(0.5 + weight[i].transpose(1, 2, 0) / (2 * scale),
                                                                  0, 1), rtol=1e-6)
        else:
            np.testing.assert_allclose(tile(ax, i, grid), weight[i, 0], rtol=1e-6)
    if c == 1:  # one diverging scale, centred at zero, with a colour bar
        low, high = ax.images[0].get_clim()
        assert low == -high == -scale
        assert ax.images[0].get_cmap().name.startswith(plot.SIGNED_CMAP)
        assert fig.axes[1].get_ylabel() == "weight"


@pytest.mark.slow
def test_filters_of_a_deeper_conv_show_filters_by_input_channel(tmp_path):
    model = presets.digits_cnn(seed=0)
    fig = plot.filters(model, "3", path=tmp_path / "conv2.png")
    check_file(fig, tmp_path / "conv2.png", min_size=(600, 600))
    ax = fig.axes[0]
    assert ax.get_title() == "Filters of Conv2D '3': 16 of 128, 3×3 over 64 channels"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("input channel (first 16 of 64)", "filter")
    grid = plot._Grid(3, 3, 16)
    np.testing.assert_allclose(tile(ax, 2 * 16 + 5, grid), model.layers[3].weight.data[2, 5], rtol=1e-6)
    assert plot.filters(model.layers[3], max_filters=2).axes[0].get_title().startswith(
        "Filters of Conv2D 'Conv2D': 2 of 128")


@pytest.mark.slow
def test_feature_maps(trained, tmp_path):
    name, model, _, X_test, _ = trained
    fig = plot.feature_maps(model, X_test[0], path=tmp_path / "maps.png")
    check_file(fig, tmp_path / "maps.png", min_size=(450, 400))
    stages = [i for i, layer in enumerate(model.layers) if layer.output_shape and len(layer.output_shape) == 3]
    rows = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert rows[0].get_ylabel() == "input\n" + "×".join(map(str, model.input_shape))
    assert [ax.get_ylabel().split(":")[0] for ax in rows[1:]] == [str(i) for i in stages]
    assert fig.get_suptitle().startswith("Feature maps of one ")
    conv = rows[1]
    # each tile of the conv row is the conv's output for the channel its tick names, on a scale centred at 0
    c, h, w = model.layers[0].output_shape
    channels = [int(t.get_text()) for t in conv.get_xticklabels()]
    assert len(channels) == min(c, 16)
    expected = model.layers[0].forward(np.asarray(X_test[:1]).reshape(1, *model.input_shape))[0]
    for i in (0, len(channels) - 1):
        np.testing.assert_allclose(tile(conv, i, plot._Grid(h, w, len(channels))), expected[channels[i]],
                                   rtol=1e-5, atol=1e-6)
    for row in rows[1:]:  # signed maps on a scale centred at zero, non-negative ones (after a ReLU) from zero
        low, high = row.images[0].get_clim()
        assert low == (-high if np.nanmin(row.images[0].get_array()) < 0 else 0)
    for layer in model.named_layers().values():  # the recording wrappers are gone
        assert "forward" not in vars(layer)


def test_feature_maps_keep_the_most_active_channels_and_take_paths(digits):
    model = presets.digits_cnn(seed=0)
    X = digits[1][:1]
    fig = plot.feature_maps(model, X[0, 0], layers=["1", model.layers[5]], max_channels=4)  # (H, W) works too
    rows = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_ylabel().split("\n")[0] for ax in rows] == ["input", "1: ReLU", "5: MaxPool2D"]
    assert "(4 of 64 ch.)" in rows[1].get_ylabel()
    relu = model.layers[1].forward(model.layers[0].forward(X))[0]
    strongest = np.sort(np.argsort(-np.abs(relu).mean(axis=(1, 2)))[:4])
    assert [int(t.get_text()) for t in rows[1].get_xticklabels()] == strongest.tolist()


@pytest.mark.slow
def test_feature_maps_and_filters_reach_inside_containers(digits, tmp_path):
    model = nested_model()
    X = digits[1][:1]
    inner = ["1.layers.0", "4.branches.1.0", "4.branches.1.1"]
    fig = plot.feature_maps(model, X[0], layers=inner, path=tmp_path / "inner.png")
    check_file(fig, tmp_path / "inner.png")
    rows = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_ylabel().split("\n")[0] for ax in rows] == ["input", "1.layers.0: Conv2D", "4.branches.1.0: Conv2D",
                                                               "4.branches.1.1: ReLU"]
    # the Residual's first conv sees the stem's output
    expected = model.layers[1].layers[0].forward(model.layers[0].forward(X))[0]
    channels = [int(t.get_text()) for t in rows[1].get_xticklabels()]
    np.testing.assert_allclose(tile(rows[1], 0, plot._Grid(8, 8, len(channels))), expected[channels[0]], rtol=1e-5)
    assert all("forward" not in vars(layer) for layer in model.named_layers().values())
    fig = plot.filters(model, "4.branches.1.0")
    assert fig.axes[0].get_title() == "Filters of Conv2D '4.branches.1.0': 4, 3×3 over 8 channels"
    default = plot.feature_maps(model, X[0])
    labels = [ax.get_ylabel().split("\n")[0] for ax in default.axes if ax.get_label() != "<colorbar>"]
    assert labels == ["input", "0: Sequential", "1: Residual", "2: ReLU", "3: MaxPool2D", "4: Parallel"]


@pytest.mark.slow
def test_confusion_matrix_numbers_are_scikit_learns(trained, tmp_path):
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    name, model, _, X_test, y_test = trained
    fig = plot.confusion_matrix(model, X_test, y_test, path=tmp_path / "cm.png")
    check_file(fig, tmp_path / "cm.png", min_size=(400, 300))
    predicted = model.predict(X_test)
    k = model.output_shape[0]
    counts = confusion_matrix(y_test, predicted, labels=range(k))
    recall = recall_score(y_test, predicted, labels=range(k), average=None, zero_division=0)
    matrix, column = fig.axes[:2]
    assert (matrix.get_title(), column.get_title()) == ("Counts", "Recall")
    assert (matrix.get_xlabel(), matrix.get_ylabel()) == ("Predicted label", "True label")
    assert [int(t.get_text()) for t in matrix.texts] == counts.ravel().tolist()
    assert [t.get_text() for t in column.texts] == [f"{r:.2f}" for r in recall]
    assert fig.get_suptitle() == (f"Confusion matrix: {np.trace(counts)} of {len(y_test)} right "
                                  f"(accuracy {accuracy_score(y_test, predicted):.4f})")


@pytest.mark.slow
def test_misclassified(trained, tmp_path):
    name, model, _, X_test, y_test = trained
    fig = plot.misclassified(model, X_test, y_test, max_images=12, path=tmp_path / "wrong.png")
    check_file(fig, tmp_path / "wrong.png", min_size=(400, 150))
    proba, predicted = model.predict_proba(X_test), model.predict(X_test)
    wrong = np.flatnonzero(predicted != y_test)
    assert wrong.size, "the 2-epoch models still make mistakes: the test needs some"
    order = wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:12]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [f"{y_test[i]} → {predicted[i]}\n{proba[i, predicted[i]]:.0%}"
                                                for i in order]
    assert fig.get_suptitle().startswith(f"Misclassified: {wrong.size} of {len(y_test)}")
    c, h, w = model.input_shape
    scale = -(-32 // max(h, w))  # small images are drawn enlarged, each pixel a block
    cols = min(len(order), max(4, int(np.ceil(np.sqrt(len(order))))), 8)
    grid = plot._labelled_grid(h * scale, w * scale, cols, max(cols * 1.3, 5.0))
    first = tile(ax, 0, grid)
    image = np.asarray(X_test[order[0]]).reshape(model.input_shape).repeat(scale, axis=1).repeat(scale, axis=2)
    if c == 3:  # in colour
        np.testing.assert_allclose(first, image.transpose(1, 2, 0), rtol=1e-6)
    else:
        np.testing.assert_allclose(first, image[0], rtol=1e-6)


def test_misclassified_with_no_mistakes_says_so(tmp_path, digits):
    model = presets.blog_cnn(seed=0)
    X, y = digits[0][:20], model.predict(digits[0][:20])  # labels the model agrees with
    fig = plot.misclassified(model, X, y, class_names=list("abcdefghij"), path=tmp_path / "none.png")
    assert fig.get_suptitle() == "Misclassified: none of 20"
    assert fig.axes[0].texts[0].get_text() == "all 20 images classified correctly"


def test_class_names_label_the_axes():
    model = presets.blog_cnn(seed=0)
    X, y = load_digits()[1][:30], load_digits()[3][:30]
    names = [f"digit {i}" for i in range(10)]
    fig = plot.confusion_matrix(model, X, y, class_names=names)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == names
    with pytest.raises(ValueError, match="class_names has 3 names, the model has 10 classes"):
        plot.confusion_matrix(model, X, y, class_names=["a", "b", "c"])


def test_history_of_other_metrics_and_keras_style_objects():
    class KerasLike:
        history = {"loss": [3.0, 2.0, 1.5], "mae": [1.0, 0.8, 0.7], "val_loss": [3.1, 2.2, 1.9],
                   "val_mae": [1.1, 0.9, 0.8]}

    fig = plot.history(KerasLike())
    assert titles(fig) == ["Loss", "Mean absolute error"]
    assert fig.axes[1].lines[1].get_label() == "validation (last 0.8000)"  # as many decimals as "0.7000"


@pytest.mark.parametrize("call, error, words", [
    (lambda m, X, y: plot.history({}), ValueError, "the history is empty"),
    (lambda m, X, y: plot.history([1, 2]), TypeError, "expected the History that fit returns"),
    (lambda m, X, y: plot.history({"loss": [1.0, 2.0], "lr": [0.1]}), ValueError, "one value per epoch"),
    (lambda m, X, y: plot.filters(m, "1"), TypeError, "layer '1' is a ReLU, not a Conv2D"),
    (lambda m, X, y: plot.filters(m, "9"), ValueError, r"no layer at path '9'; its paths are \['0', '1'"),
    (lambda m, X, y: plot.filters(m, Conv2D(2)), ValueError, "is not a layer of this model"),
    (lambda m, X, y: plot.filters(Conv2D(2)), ValueError, "is not built yet"),
    (lambda m, X, y: plot.filters(m, max_filters=0), ValueError, "max_filters must be a positive int, got 0"),
    (lambda m, X, y: plot.filters(Sequential([Flatten(), Dense(2), SoftmaxCE()], input_shape=(4,))), ValueError,
     "has no Conv2D layer"),
    (lambda m, X, y: plot.feature_maps(m, X[:2]), ValueError, "expected one image, got a batch of 2"),
    (lambda m, X, y: plot.feature_maps(m, np.zeros((1, 7, 7))), ValueError,
     r"takes images of shape \(1, 8, 8\) \(or a batch of them\), got \(1, 7, 7\)"),
    (lambda m, X, y: plot.feature_maps(m, X[0], layers=["3"]), ValueError, r"do not output images .*\(36,\)"),
    (lambda m, X, y: plot.feature_maps(m, X[0], layers="0"), TypeError, "layers must be a list"),
    (lambda m, X, y: plot.feature_maps(Sequential([Conv2D(2)]), X[0]), ValueError, "model is not built"),
    (lambda m, X, y: plot.confusion_matrix(m, X, y[:3]), ValueError, r"y must have shape \(5,\) to match X"),
    (lambda m, X, y: plot.misclassified(m, X, y, max_images=0), ValueError, "max_images must be a positive int"),
])
def test_errors_name_the_argument(call, error, words, digits):
    model = presets.blog_cnn(seed=0)
    with pytest.raises(error, match=words):
        call(model, digits[1][:5], digits[3][:5])


def test_figures_show_in_jupyter_and_stay_out_of_pyplot():
    formatters = pytest.importorskip("IPython.core.formatters")
    import matplotlib.pyplot as plt

    fig = plot.history({"loss": [1.0, 0.5]})
    data, _ = formatters.DisplayFormatter().format(fig)
    assert data["image/png"].startswith(b"\x89PNG")
    assert fig not in [plt.figure(n) for n in plt.get_fignums()]  # nothing for pyplot to re-show or leak


@pytest.mark.slow
def test_import_without_matplotlib_names_the_extra():
    """``import minidl`` works without matplotlib; ``from minidl import plot`` says which extra to install."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named " + repr(name))
sys.meta_path.insert(0, Block())
import minidl
minidl.Sequential
try:
    from minidl import plot
except ImportError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "minidl[plot]"' in out.stdout, out.stdout + out.stderr


# -- attention --------------------------------------------------------------------------------------


def attention_model():
    from minidl.layers import Embedding, MultiHeadAttention, PositionalEmbedding

    return Sequential([Embedding(12, 8), PositionalEmbedding(6),
                       Residual([MultiHeadAttention(num_heads=2, causal=True, name="attn")]),
                       MultiHeadAttention(num_heads=4), Dense(12)],
                      input_shape=(6,), seed=0, dtype="float64")


def test_attention_draws_each_heads_weights_with_the_tokens_as_ticks(tmp_path):
    from minidl.text import CharTokenizer

    model, tokenizer = attention_model(), CharTokenizer("abcdefghij ,")
    fig = plot.attention(model, "bad, c", tokenizer=tokenizer, path=tmp_path / "attention.png")
    images = [ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]
    assert len(images) == 2 and len(fig.axes) == 3  # two heads and the colour bar
    layer = model.named_layers()["2.layers.0"]
    for h, ax in enumerate(images):
        data = ax.get_images()[0].get_array()
        np.testing.assert_allclose(data, layer.last_attention[0, h])
        np.testing.assert_allclose(data.sum(axis=1), 1.0)
        assert np.all(np.triu(data, 1) == 0)  # causal: no query looks ahead
        assert [t.get_text() for t in ax.get_xticklabels()] == list("bad,␣c")
    width, height, variance, _ = png(tmp_path / "attention.png")
    assert width > 300 and height > 200 and variance > 0


@pytest.mark.parametrize("layer", [1, "3", -1])
def test_attention_picks_the_layer_by_index_path_or_object(layer):
    model = attention_model()
    fig = plot.attention(model, np.arange(6), layer=layer)
    images = [ax for ax in fig.axes if ax.get_images() and ax.get_label() != "<colorbar>"]
    assert len(images) == 4
    np.testing.assert_allclose(images[3].get_images()[0].get_array(), model.layers[3].last_attention[0, 3])
    assert not np.all(np.triu(images[0].get_images()[0].get_array(), 1) == 0)  # not causal
    by_name = plot.attention(model, np.arange(6), layer="attn")
    assert len([ax for ax in by_name.axes if ax.get_images()]) == 2  # the causal layer's two heads
    by_object = plot.attention(model, np.arange(6), layer=model.layers[3], max_heads=3)
    assert len([ax for ax in by_object.axes if ax.get_images()]) == 3 and len(by_object.axes) == 4  # + the bar


@pytest.mark.parametrize("kwargs, words", [
    ({"layer": 2}, "out of range"),
    ({"layer": "4"}, "is a Dense, not a MultiHeadAttention"),
    ({"tokens": "abc"}, "pass tokenizer="),
    ({"tokens": np.zeros((2, 6), dtype=int)}, "one sequence"),
    ({"labels": ["a"]}, "one string per step"),
])
def test_attention_errors_name_the_problem(kwargs, words):
    args = {"tokens": np.arange(6), **kwargs}
    with pytest.raises(ValueError, match=words):
        plot.attention(attention_model(), **args)
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        plot.attention(Sequential([Dense(3)], input_shape=(4,)), np.zeros(4))
