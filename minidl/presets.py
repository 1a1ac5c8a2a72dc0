"""Ready-made architectures, each a plain ``Sequential`` a user could have written, and their training recipes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .layers import (
    GELU,
    GRU,
    LSTM,
    BatchNorm2D,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool2D,
    GlobalMaxPool1D,
    Layer,
    LayerNorm,
    MaxPool2D,
    MultiHeadAttention,
    PositionalEmbedding,
    RandomCrop,
    RandomFlip,
    RandomShift,
    ReLU,
    Residual,
    SoftmaxCE,
)
from .model import Sequential
from .recipes import (
    CHAR_GPT,
    CHAR_LSTM,
    DATASET_RECIPES,
    INPUT_SHAPES,
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    TEXT_RECIPES,
    Recipe,
    recipe_for,
)

__all__ = ["blog_cnn", "digits_cnn", "digits_resnet", "digits_gru", "residual_block", "lenet", "cifar_vgg",
           "cifar_resnet", "MODELS", "PRESETS", "MNIST_PRESETS", "CIFAR_PRESETS", "OPTIMIZERS", "SCHEDULES", "Recipe",
           "RECIPES", "DATASET_RECIPES", "INPUT_SHAPES", "recipe_for", "char_gpt", "char_lstm", "CHAR_GPT",
           "CHAR_LSTM", "text_cnn", "text_lstm", "TEXT_PRESETS", "TEXT_RECIPES"]


def blog_cnn(
    num_filters: int = 4,
    filter_size: int | tuple[int, int] = 3,
    pool_size: int | tuple[int, int] = 2,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (1, 8, 8),
    seed: int | None = 0,
    dtype: Any = "float32",
    faithful: bool = False,
) -> Sequential:
    """The blog post's CNN: Conv2D → ReLU → MaxPool2D → Flatten → Dense → SoftmaxCE.

    By default every parameter trains (He-initialised, with a conv bias). ``faithful=True``
    reproduces what the blog actually trains: bias-free filters drawn from ``N(0, 0.1²)``
    and then frozen, a dense layer drawn from ``N(0, 0.01²)`` with zero bias.

    Args:
        num_filters: the convolution's filters (the blog has 4).
        filter_size: the convolution window, an int or a pair.
        pool_size: the max-pooling window, an int or a pair.
        num_classes: units of the last ``Dense``, one score per class.
        input_shape: the per-sample image shape ``(C, H, W)``.
        seed: the model's seed (weights, dropout and augmentation draws); ``None`` draws one.
        dtype: the model's floating dtype.
        faithful: train as the blog does (frozen bias-free filters, the blog's initial weights).

    Example::

        model = blog_cnn(faithful=True)
        model.fit(X, y, epochs=1)
    """
    model = Sequential(
        [
            Conv2D(num_filters, kernel_size=filter_size, use_bias=not faithful, trainable=not faithful),
            ReLU(),
            MaxPool2D(pool_size),
            Flatten(),
            Dense(num_classes),
            SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )
    if faithful:
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
        conv, dense = model.layers[0], model.layers[4]
        conv.weight.data[...] = rng.standard_normal(conv.weight.shape) * 0.1
        dense.weight.data[...] = rng.standard_normal(dense.weight.shape) * 0.01
    return model


def digits_cnn(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (1, 8, 8),
    seed: int | None = 0,
    dtype: Any = "float32",
) -> Sequential:
    """A small CNN for the 8×8 digits, trained by ``RECIPES["digits_cnn"]``::

        Conv2D(64, 3, "same") → ReLU → MaxPool2D(2)      # 64×4×4
        Conv2D(128, 3, "same") → ReLU → MaxPool2D(2)     # 128×2×2
        Flatten → Dense(128) → ReLU → Dense(10) → SoftmaxCE

    Measured on the blog's split (``load_digits()``), 2 shared cores, with
    ``OPENBLAS_NUM_THREADS=1 python -m minidl digits --preset digits_cnn --seed S --verbose 0``
    for S = 0, 1, 2: test accuracy 0.9917, 0.9944, 0.9944 (mean 0.9935); 30 epochs in about
    5 s on an idle machine (docs/training.md has both thread settings and the details). On another
    CPU OpenBLAS's kernels round differently: a 2-core AVX-512 Xeon gave 0.9944 for all three.

    Args:
        num_classes: units of the last ``Dense``, one score per class.
        input_shape: the per-sample image shape ``(C, H, W)``.
        seed: the model's seed (weights, dropout and augmentation draws); ``None`` draws one.
        dtype: the model's floating dtype.

    Example::

        model = digits_cnn()
        model.fit(X, y, epochs=1)
    """
    return Sequential(
        [
            Conv2D(64, kernel_size=3, padding="same"),
            ReLU(),
            MaxPool2D(2),
            Conv2D(128, kernel_size=3, padding="same"),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(128),
            ReLU(),
            Dense(num_classes),
            SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )


def residual_block(channels: int, stride: int = 1) -> Residual:
    """A basic ResNet block (He et al., 2016): ``Conv2D → BatchNorm2D → ReLU → Conv2D → BatchNorm2D``
    plus a shortcut. The shortcut is the identity, or with ``stride > 1`` (which halves the image and
    may change the channels) a 1×1 ``Conv2D`` projection followed by ``BatchNorm2D``. The convolutions
    have no bias: the BatchNorm2D after each one has its own. The ReLU after the sum is not part of it.

    Args:
        channels: the output channels of both convolutions.
        stride: 1 for an identity shortcut; 2 halves the image, with a projection shortcut.

    Example::

        >>> from minidl import Sequential
        >>> from minidl.layers import ReLU
        >>> Sequential([residual_block(8, stride=2), ReLU()], input_shape=(4, 8, 8)).output_shape
        (8, 4, 4)
    """
    body = [
        Conv2D(channels, 3, stride=stride, padding="same", use_bias=False), BatchNorm2D(), ReLU(),
        Conv2D(channels, 3, padding="same", use_bias=False), BatchNorm2D(),
    ]
    shortcut = None if stride == 1 else [Conv2D(channels, 1, stride=stride, use_bias=False), BatchNorm2D()]
    return Residual(body, shortcut=shortcut)


def digits_resnet(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (1, 8, 8),
    seed: int | None = 0,
    dtype: Any = "float32",
    widths: tuple[int, int] = (16, 32),
    shift: int = 1,
) -> Sequential:
    """A small ResNet for the 8×8 digits, trained by ``RECIPES["digits_resnet"]``::

        RandomShift(1)                                  # training only: moves each image by up to 1 pixel
        Conv2D(w1, 3, "same") → BatchNorm2D → ReLU      # w1×8×8
        residual_block(w1) → ReLU                       # identity shortcut
        residual_block(w2, stride=2) → ReLU             # w2×4×4, projection shortcut
        GlobalAvgPool2D → Dense(10) → SoftmaxCE

    with ``(w1, w2) = widths`` (19,706 parameters by default); ``shift=0`` leaves out the
    augmentation. ``examples/resnet_digits.py`` writes the same network out by hand.

    Measured on the blog's split (``load_digits()``) with ``OPENBLAS_NUM_THREADS=1 python -m minidl
    digits --preset digits_resnet --seed S --verbose 0`` for S = 0, 1, 2: test accuracy 0.9972,
    0.9944, 0.9972 (mean 0.9963), the same with any thread count; 27-30 s of training each on the
    2-core machine of docs/training.md, which has the timings. A 2-core AVX-512 Xeon, whose
    OpenBLAS kernels round differently, gave 0.9972 for all three in about 10 s each.

    Args:
        num_classes: units of the last ``Dense``, one score per class.
        input_shape: the per-sample image shape ``(C, H, W)``.
        seed: the model's seed (weights, dropout and augmentation draws); ``None`` draws one.
        dtype: the model's floating dtype.
        widths: the channels ``(w1, w2)`` of the two stages.
        shift: the largest ``RandomShift`` in pixels; 0 leaves the augmentation out.

    Example::

        model = digits_resnet()
        model.fit(X, y, epochs=1)
    """
    w1, w2 = widths
    augment: list[Layer] = [RandomShift(shift)] if shift else []
    return Sequential(
        [
            *augment,
            Conv2D(w1, 3, padding="same", use_bias=False), BatchNorm2D(), ReLU(),
            residual_block(w1), ReLU(),
            residual_block(w2, stride=2), ReLU(),
            GlobalAvgPool2D(),
            Dense(num_classes),
            SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )


def digits_gru(
    units: int = 64,
    num_classes: int = 10,
    input_shape: tuple[int, int] = (8, 8),
    seed: int | None = 0,
    dtype: Any = "float32",
) -> Sequential:
    """An image read as a sequence of its rows by a GRU, trained by ``RECIPES["digits_gru"]``::

        GRU(64)                 # 8 steps of 8 pixels -> the last state, 64 values
        Dense(10) → SoftmaxCE

    Args:
        units: the GRU's state size.
        num_classes: the number of classes.
        input_shape: ``(rows, pixels per row)``: ``(8, 8)`` for the digits, ``(28, 28)`` for MNIST.
            Single-channel images ``(N, 1, H, W)`` become ``(N, H, W)`` with ``X[:, 0]``;
            ``minidl train digits --preset digits_gru`` does that itself.
        seed: seeds the weights and the shuffling.
        dtype: float32 or float64.

    Shape:
        ``(N, H, W) -> (N, num_classes)`` class probabilities.

    Example::

        model = digits_gru(seed=0)
        RECIPES["digits_gru"].fit(model, X_train[:, 0], y_train)   # X_train (N, 1, 8, 8) from load_digits()

    Measured on the blog's split (``load_digits()``) with ``OPENBLAS_NUM_THREADS=1 python -m minidl
    digits --preset digits_gru --seed S --verbose 0`` for S = 0, 1, 2: test accuracy 0.9917, 0.9917,
    0.9833 (mean 0.9889), 16-22 s of training each on a heavily shared 2-core machine
    (docs/training.md).
    """
    return Sequential([GRU(units), Dense(num_classes), SoftmaxCE()], input_shape=input_shape, seed=seed, dtype=dtype)


def lenet(num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28), seed: int | None = 0,
          dtype: Any = "float32") -> Sequential:
    """LeNet-5 for 28×28 images (as benchmarked in ``benchmarks/run.py``): two 5×5 convolutions with
    6 and 16 filters (the first padded by 2), each followed by ReLU and 2×2 max-pooling, then dense
    layers of 120, 84 and ``num_classes`` units.

    Args:
        num_classes: units of the last ``Dense``, one score per class.
        input_shape: the per-sample image shape ``(C, H, W)``.
        seed: the model's seed (weights, dropout and augmentation draws); ``None`` draws one.
        dtype: the model's floating dtype.

    Example::

        model = lenet(input_shape=(1, 28, 28))
        model.fit(X, y, epochs=1)
    """
    return Sequential(
        [
            Conv2D(6, kernel_size=5, padding=2), ReLU(), MaxPool2D(2),
            Conv2D(16, kernel_size=5), ReLU(), MaxPool2D(2),
            Flatten(),
            Dense(120), ReLU(),
            Dense(84), ReLU(),
            Dense(num_classes),
            SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )


def cifar_vgg(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32), seed: int | None = 0,
              dtype: Any = "float32") -> Sequential:
    """A small VGG-style network for CIFAR-10, with its usual augmentation built in (active in training only)::

        RandomCrop(32, padding=4) → RandomFlip()
        [Conv2D(32, 3, "same") → BatchNorm2D → ReLU] × 2 → MaxPool2D(2)    # 32×16×16
        [Conv2D(64, 3, "same") → BatchNorm2D → ReLU] × 2 → MaxPool2D(2)    # 64×8×8
        Conv2D(128, 3, "same") → BatchNorm2D → ReLU → MaxPool2D(2)         # 128×4×4
        GlobalAvgPool2D → Dense(10) → SoftmaxCE

    About 0.14 million parameters; ``RECIPES["cifar_vgg"]`` trains it. Not measured on the real
    CIFAR-10 (it could not be downloaded where minidl is developed); see docs/data.md.

    Args:
        num_classes: units of the last ``Dense``, one score per class.
        input_shape: the per-sample image shape ``(C, H, W)``.
        seed: the model's seed (weights, dropout and augmentation draws); ``None`` draws one.
        dtype: the model's floating dtype.

    Example::

        model = cifar_vgg()
        model.fit(X, y, epochs=1)
    """
    def block(filters: int) -> list:
        return [Conv2D(filters, kernel_size=3, padding="same"), BatchNorm2D(), ReLU()]

    return Sequential(
        [
            RandomCrop(input_shape[1:], padding=4), RandomFlip(),
            *block(32), *block(32), MaxPool2D(2),
            *block(64), *block(64), MaxPool2D(2),
            *block(128), MaxPool2D(2),
            GlobalAvgPool2D(), Dense(num_classes), SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )


def cifar_resnet(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32), seed: int | None = 0,
                 dtype: Any = "float32", widths: tuple[int, int, int] = (16, 32, 64)) -> Sequential:
    """ResNet-8 for CIFAR-10: the smallest of He et al.'s (2016) CIFAR ResNets (6n + 2 layers, n = 1),
    with the usual augmentation built in (active in training only)::

        RandomCrop(32, padding=4) → RandomFlip()
        Conv2D(w1, 3, "same") → BatchNorm2D → ReLU      # w1×32×32
        residual_block(w1) → ReLU                       # identity shortcut
        residual_block(w2, stride=2) → ReLU             # w2×16×16, projection shortcut
        residual_block(w3, stride=2) → ReLU             # w3×8×8, projection shortcut
        GlobalAvgPool2D → Dense(10) → SoftmaxCE

    with ``(w1, w2, w3) = widths`` (78,042 parameters by default; the projections are 1×1
    convolutions, where the paper pads the identity with zeros). ``RECIPES["cifar_resnet"]`` trains
    it. Not measured on the real CIFAR-10 (it could not be downloaded where minidl is developed);
    docs/data.md has its time per epoch.

    Args:
        num_classes: units of the last ``Dense``, one score per class.
        input_shape: the per-sample image shape ``(C, H, W)``.
        seed: the model's seed (weights, dropout and augmentation draws); ``None`` draws one.
        dtype: the model's floating dtype.
        widths: the channels ``(w1, w2, w3)`` of the three stages.

    Example::

        model = cifar_resnet()
        model.fit(X, y, epochs=1)
    """
    w1, w2, w3 = widths
    return Sequential(
        [
            RandomCrop(input_shape[1:], padding=4), RandomFlip(),
            Conv2D(w1, 3, padding="same", use_bias=False), BatchNorm2D(), ReLU(),
            residual_block(w1), ReLU(),
            residual_block(w2, stride=2), ReLU(),
            residual_block(w3, stride=2), ReLU(),
            GlobalAvgPool2D(), Dense(num_classes), SoftmaxCE(),
        ],
        input_shape=input_shape,
        seed=seed,
        dtype=dtype,
    )


def char_gpt(vocab_size: int, seed: int | None = 0, dtype: Any = "float32", **config: Any) -> Sequential:
    """A tiny decoder-only transformer over characters (GPT-style, pre-norm), sized by :data:`CHAR_GPT`::

        Embedding(V, d) → PositionalEmbedding(T)                     # learned positions
        [Residual(LayerNorm → MultiHeadAttention(h, causal=True))
         Residual(LayerNorm → Dense(4d) → GELU → Dense(d) → Dropout)] × blocks
        LayerNorm → Dense(V)                                          # next-character logits
        loss: SoftmaxCE over every position

    Args:
        vocab_size: the number of characters ``V``.
        seed: seeds the weights (and dropout).
        dtype: float32 or float64.
        config: overrides of :data:`CHAR_GPT`'s ``context``, ``dim``, ``heads``, ``blocks``, ``dropout``.

    Shape:
        token ids ``(N, T)`` → logits ``(N, T, V)``, ``T = context``.

    Example::

        model = char_gpt(vocab_size=65, dim=32, blocks=1)
        ids = model.generate(np.array([0]), max_new_tokens=10, seed=0)
    """
    unknown = set(config) - {"context", "dim", "heads", "blocks", "dropout"}
    if unknown:
        raise TypeError(f"char_gpt: unknown settings {sorted(unknown)}; it takes context, dim, heads, blocks, dropout")
    c = {**CHAR_GPT, **config}
    d = int(c["dim"])

    def block() -> list[Layer]:
        return [Residual([LayerNorm(), MultiHeadAttention(num_heads=int(c["heads"]), causal=True)]),
                Residual([LayerNorm(), Dense(4 * d), GELU(), Dense(d), Dropout(c["dropout"])])]

    return Sequential([Embedding(vocab_size, d), PositionalEmbedding(int(c["context"])),
                       *[layer for _ in range(int(c["blocks"])) for layer in block()], LayerNorm(), Dense(vocab_size)],
                      input_shape=(int(c["context"]),), input_dtype="int64", seed=seed, dtype=dtype, loss=SoftmaxCE())


def char_lstm(vocab_size: int, seed: int | None = 0, dtype: Any = "float32", **config: Any) -> Sequential:
    """A 2-layer character LSTM, sized by :data:`CHAR_LSTM`: ``Embedding(V, dim) → LSTM(units) →
    LSTM(units) → Dense(V)`` (both LSTMs return sequences), loss SoftmaxCE over every position.

    Args:
        vocab_size: the number of characters ``V``.
        seed: seeds the weights.
        dtype: float32 or float64.
        config: overrides of :data:`CHAR_LSTM`'s ``context``, ``dim``, ``units``.

    Shape:
        token ids ``(N, T)`` → logits ``(N, T, V)``, ``T = context``.

    Example::

        model = char_lstm(vocab_size=65, units=32)
    """
    unknown = set(config) - {"context", "dim", "units"}
    if unknown:
        raise TypeError(f"char_lstm: unknown settings {sorted(unknown)}; it takes context, dim, units")
    c = {**CHAR_LSTM, **config}
    units = int(c["units"])
    return Sequential([Embedding(vocab_size, int(c["dim"])), LSTM(units, return_sequences=True),
                       LSTM(units, return_sequences=True), Dense(vocab_size)],
                      input_shape=(int(c["context"]),), input_dtype="int64", seed=seed, dtype=dtype, loss=SoftmaxCE())


def text_lstm(vocab_size: int, num_classes: int = 4, max_length: int = 64, dim: int = 64, seed: int | None = 0,
              dtype: Any = "float32") -> Sequential:
    """Sequence classification of right-padded token ids by an LSTM, trained by ``TEXT_RECIPES["text_lstm"]``::

        Embedding(V, dim, mask_zero=True)     # id 0 is padding: the mask stops the LSTM there
        LSTM(dim)                             # the state at each row's last valid step
        Dense(num_classes) → SoftmaxCE

    Because of the mask, padding never changes a prediction: the same rows padded to any length
    give the same probabilities.

    Args:
        vocab_size: the number of token ids ``V``, padding (0) included.
        num_classes: the number of classes.
        max_length: the padded length ``T`` of the rows.
        dim: the embedding size and the LSTM's state size.
        seed: seeds the weights and the shuffling.
        dtype: float32 or float64.

    Shape:
        int token ids ``(N, T)`` → ``(N, num_classes)`` class probabilities.

    Example::

        (X, y), (X_test, y_test) = load_pydoc_topics()                # minidl.text
        model = text_lstm(load_pydoc_text().tokenizer.vocab_size + 1)
        TEXT_RECIPES["text_lstm"].fit(model, X, y)

    Measured test accuracies are in docs/sequences.md ("Text classification").
    """
    return Sequential([Embedding(vocab_size, dim, mask_zero=True), LSTM(dim), Dense(num_classes), SoftmaxCE()],
                      input_shape=(max_length,), input_dtype="int64", seed=seed, dtype=dtype)


def text_cnn(vocab_size: int, num_classes: int = 4, max_length: int = 64, dim: int = 64, filters: int = 128,
             kernel_size: int = 5, seed: int | None = 0, dtype: Any = "float32") -> Sequential:
    """Sequence classification of right-padded token ids by a 1-D convolution (Kim, 2014, one width),
    trained by ``TEXT_RECIPES["text_cnn"]``::

        Embedding(V, dim)                             # no mask: Conv1D mixes steps and refuses one
        Conv1D(filters, kernel_size, "same") → ReLU
        GlobalMaxPool1D → Dense(num_classes) → SoftmaxCE

    The padding id 0 is an ordinary token here, with its own embedding: the network learns to
    ignore it, but more padding can change a prediction (``text_lstm`` masks it instead).

    Args:
        vocab_size: the number of token ids ``V``, padding (0) included.
        num_classes: the number of classes.
        max_length: the padded length ``T`` of the rows.
        dim: the embedding size.
        filters: the convolution's channels.
        kernel_size: its window, in tokens.
        seed: seeds the weights and the shuffling.
        dtype: float32 or float64.

    Shape:
        int token ids ``(N, T)`` → ``(N, num_classes)`` class probabilities.

    Example::

        (X, y), (X_test, y_test) = load_pydoc_topics()                # minidl.text
        model = text_cnn(load_pydoc_text().tokenizer.vocab_size + 1)
        TEXT_RECIPES["text_cnn"].fit(model, X, y)

    Measured test accuracies are in docs/sequences.md ("Text classification").
    """
    return Sequential([Embedding(vocab_size, dim), Conv1D(filters, kernel_size, padding="same"), ReLU(),
                       GlobalMaxPool1D(), Dense(num_classes), SoftmaxCE()],
                      input_shape=(max_length,), input_dtype="int64", seed=seed, dtype=dtype)


#: Presets for the 8×8 digits, by name.
PRESETS: dict[str, Callable[..., Sequential]] = {
    "blog_cnn": blog_cnn, "digits_cnn": digits_cnn, "digits_resnet": digits_resnet, "digits_gru": digits_gru}

#: Presets for 28×28 images (MNIST, Fashion-MNIST).
MNIST_PRESETS: dict[str, Callable[..., Sequential]] = {"lenet": lenet}

#: Presets for 32×32 colour images (CIFAR-10).
CIFAR_PRESETS: dict[str, Callable[..., Sequential]] = {"cifar_resnet": cifar_resnet, "cifar_vgg": cifar_vgg}

#: Every image preset by name, each built by ``MODELS[name](seed=...)`` (``minidl train DATASET --preset
#: NAME``); :data:`INPUT_SHAPES` has the shape each one takes and :func:`recipe_for` the way to train it.
MODELS: dict[str, Callable[..., Sequential]] = {**PRESETS, **MNIST_PRESETS, **CIFAR_PRESETS}

#: Presets for sequence classification of padded token ids (``minidl.text.load_pydoc_topics``), by
#: name, each built by ``TEXT_PRESETS[name](vocab_size, seed=...)``; :data:`RECIPES` trains them too
#: (``minidl train pydoc-topics --preset NAME``).
TEXT_PRESETS: dict[str, Callable[..., Sequential]] = {"text_cnn": text_cnn, "text_lstm": text_lstm}
