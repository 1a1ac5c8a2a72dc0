"""scikit-learn estimators: minidl models inside ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.

- :class:`CNNClassifier` — the blog post's ``CNN`` class with the blog's parameter names,
  built on :func:`minidl.presets.blog_cnn`.
- :class:`SequentialClassifier` — any layer list (or a function returning one).

Both follow scikit-learn's estimator rules: ``__init__`` only stores its arguments, every
``fit`` builds and trains a fresh model (``model_``), class labels can be any values
(``classes_``), and with a fixed ``random_state`` two fits give identical models.
``partial_fit(X, y, classes=None)`` trains one epoch per call, keeping the model and the
optimizer's state between calls (incremental searches such as dask-ml's ``HyperbandSearchCV``).

Input ``X``: images ``(N, H, W)`` (one channel, as ``load_digits().images``) or
``(N, C, H, W)``, or flat rows ``(N, F)`` (see each class for how rows become model inputs).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .callbacks import History
from .layers import BatchNorm2D, Dense, Layer, SoftmaxCE
from .layers.base import as_int
from .model import Sequential
from .optim import SGD
from .presets import blog_cnn

Shape = tuple[int, ...]

#: fit and partial_fit warn when, after at least MIN_EPOCHS_TO_JUDGE epochs, the last epoch's training loss
#: is above CHANCE_FRACTION of ln K, the loss of uniform guessing over K classes.
CHANCE_FRACTION = 0.97
MIN_EPOCHS_TO_JUDGE = 5


class _MinidlClassifier(ClassifierMixin, BaseEstimator):
    """Shared ``fit / predict / predict_proba``; subclasses say how to make the model and read ``X``."""

    # -- what subclasses provide --------------------------------------------------------------
    def _make_model(self, X: np.ndarray, n_classes: int, seed: Any) -> Sequential:
        """A fresh, built model for training data ``X`` (N, *input_shape)."""
        raise NotImplementedError

    def _row_shape(self, n_features: int) -> Shape:
        """Per-sample model input shape for flat rows of ``n_features`` values."""
        raise NotImplementedError

    # -- scikit-learn API ----------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "_MinidlClassifier":
        """Build a fresh model for ``X``'s shape and ``y``'s classes and train it for ``num_iter`` epochs."""
        self._check_params()
        X, y = self._validate(X, y, reset=True)
        check_classification_targets(y)
        classes, y_index = self._encode_labels(y)
        state = self._start(X, classes)
        history = self._train(state, X, y_index, int(self.num_iter))
        # The fitted attributes are set together, once training has succeeded.
        self.classes_, self.input_shape_, (self.model_, self.optimizer_) = classes, X.shape[1:], state
        self.history_, self.loss_curve_ = history, list(history.get("loss", []))
        self.n_iter_ = len(self.loss_curve_)
        self._warn_if_at_chance()
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "_MinidlClassifier":
        """Train one epoch on ``(X, y)``, continuing from the previous call (or ``fit``).

        ``classes`` (every label ``y`` may ever hold) is required on the first call, as in
        scikit-learn's ``SGDClassifier``; later calls may repeat it unchanged or leave it out.
        The model, the optimizer's state (momentum) and the shuffling stream carry over between
        calls; what is fitted on the data once (``CNNClassifier``'s input standardisation) is
        fitted on the first call's ``X``.
        """
        name = type(self).__name__
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError(f"{name}: classes must be passed on the first call to partial_fit "
                             "(every label y may hold, e.g. np.unique(y_all))")
        self._check_params()
        X, y = self._validate(X, y, reset=first)
        check_classification_targets(y)
        known = self._encode_labels(np.asarray(classes))[0] if classes is not None else self.classes_
        if not first and not np.array_equal(known, self.classes_):
            raise ValueError(
                f"{name}: classes={_preview(known)} differs from the first call's {_preview(self.classes_)}"
            )
        unseen = np.setdiff1d(y, known)
        if unseen.size:
            raise ValueError(f"{name}: y holds labels {_preview(unseen)} that are not in classes {_preview(known)}")
        state = self._start(X, known) if first else (self.model_, self.optimizer_)
        history = self._train(state, X, np.searchsorted(known, y), 1)
        if first:
            self.classes_, self.input_shape_, (self.model_, self.optimizer_) = known, X.shape[1:], state
            self.loss_curve_, self.n_iter_ = [], 0
        self.history_ = history
        self.loss_curve_ += list(history.get("loss", []))
        self.n_iter_ += 1
        self._warn_if_at_chance()
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(N, len(classes_))``, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        X, _ = self._validate(X, None, reset=False)
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label for each sample, taken from ``classes_``."""
        check_is_fitted(self, "model_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # -- training ------------------------------------------------------------------------
    def _check_params(self) -> None:
        _check_param(self, "num_iter", 0)
        _check_param(self, "batch_size", 1)

    def _start(self, X: np.ndarray, classes: np.ndarray) -> tuple[Sequential, SGD]:
        """A fresh model for training data ``X`` and its optimizer."""
        model = self._make_model(X, len(classes), _seed_from(self.random_state))
        if model.output_shape != (len(classes),):
            raise ValueError(
                f"{type(self).__name__}: the model outputs shape {model.output_shape}, but y has "
                f"{len(classes)} classes {_preview(classes)}: make the layer before SoftmaxCE a "
                f"Dense({len(classes)}), or leave SoftmaxCE out and fit appends that head"
            )
        return model, SGD(model.parameters(), lr=self.lr, momentum=self.momentum)

    def _train(self, state: tuple[Sequential, SGD], X: np.ndarray, y_index: np.ndarray, epochs: int) -> History:
        model, optimizer = state
        return model.fit(X, y_index, optimizer=optimizer, epochs=epochs, batch_size=int(self.batch_size),
                         verbose=self.verbose)

    def _warn_if_at_chance(self) -> None:
        """A mean cross-entropy still near ln K predicts no better than uniform guessing: say so, never silently."""
        k, losses = len(self.classes_), self.loss_curve_
        if k > 1 and len(losses) >= MIN_EPOCHS_TO_JUDGE and losses[-1] > CHANCE_FRACTION * np.log(k):
            warnings.warn(
                f"{type(self).__name__}: after {len(losses)} epochs the training loss is {losses[-1]:.4f}, "
                f"still at chance level (ln {k} = {np.log(k):.4f}): the model has learnt nothing. "
                "Scale the inputs (e.g. to [0, 1] or with StandardScaler), or change lr or num_iter.",
                ConvergenceWarning, stacklevel=3,
            )

    # -- helpers ---------------------------------------------------------------------------
    def _encode_labels(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.unique(y, return_inverse=True)

    def _validate(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, Any]:
        """Check ``X`` (and ``y``) the scikit-learn way and shape ``X`` as the model's input."""
        name = type(self).__name__
        shape = None
        if getattr(X, "shape", None) is None:  # lists and array-likes; data frames keep their column names
            X = np.asarray(X)
        if len(X.shape) > 2:  # images: scikit-learn validates 2-D data, so check them flattened
            X = np.asarray(X)
            if X.ndim > 4:
                raise ValueError(f"{name}: X must be (N, H, W) or (N, C, H, W) images or (N, F) rows, got shape {X.shape}")
            shape = (1, *X.shape[1:]) if X.ndim == 3 else X.shape[1:]
            if not reset and shape != self.input_shape_:
                raise ValueError(
                    f"{name}: X holds images of shape {shape} (channels, height, width), but {name} was "
                    f"fitted on {self.input_shape_}"
                )
            X = X.reshape(len(X), int(np.prod(shape)))
        dtype = [np.float64, np.float32]
        if y is None:
            X = validate_data(self, X, reset=reset, dtype=dtype)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=dtype)
        if shape is None:
            shape = self._row_shape(X.shape[1]) if reset else self.input_shape_
        return X.reshape(len(X), *shape), y


class CNNClassifier(_MinidlClassifier):
    """The blog's CNN done right: Conv2D → ReLU → MaxPool2D → Flatten → Dense → softmax, all trained.

    Parameters (the first six keep the blog's names):

    - ``num_filters=4``, ``filter_size=3``, ``pool_size=2``: the convolution and pooling.
      Both windows are capped at the image (a 1×F image gets ``1×3`` filters), so any
      image size works, down to 1×1.
    - ``num_classes=None``: with ``None`` (the scikit-learn way) the classes are the distinct
      labels of ``y`` in sorted order, whatever their type (ints, strings, ...). An int ``K``
      fixes the output layer as the blog does: labels must then be the integers ``0..K-1``,
      ``classes_`` is ``arange(K)`` even when ``y`` lacks some of them (a fold of
      cross-validation, say), and ``predict_proba`` always has ``K`` columns.
    - ``lr=0.01``, ``momentum=0.9``: SGD's step size and momentum (PyTorch's rule).
    - ``num_iter=50``: epochs (passes over the data), as ``num_iter`` in the blog.
    - ``batch_size=32``.
    - ``image_shape=None``: how flat rows ``(N, F)`` become images. ``(H, W)`` or ``(C, H, W)``
      reshapes each row; ``None`` makes a square one-channel image when ``F`` is a square
      (``load_digits().data``, 64 → 8×8) and otherwise a one-row image ``(1, 1, F)``.
    - ``standardize=True``: ``fit`` measures each channel's mean and standard deviation on
      the training images, and the model's first layer, a frozen ``BatchNorm2D`` named
      ``"standardize"``, maps ``x`` to ``(x - mean) / sqrt(var + 1e-5)``; so raw pixel values
      (``load_digits().data``, 0..16) train as well as scaled ones, and ``model_`` carries its
      scaling when saved or exported. ``False`` leaves the layer out: the blog's network as it is.
    - ``random_state=None``: seeds the weights and the shuffling; an int gives identical fits.
    - ``dtype="float32"``, ``verbose=0`` (1: a progress bar per epoch, 2: a line per epoch).

    Fitted attributes: ``model_`` (the trained :class:`~minidl.Sequential`), ``classes_``,
    ``n_features_in_`` (values per sample), ``input_shape_`` (C, H, W), ``optimizer_``,
    ``history_`` (of the last ``fit`` or ``partial_fit`` call), ``loss_curve_`` and ``n_iter_``
    (epochs trained in all).
    """

    def __init__(
        self,
        num_filters: int = 4,
        filter_size: int = 3,
        pool_size: int = 2,
        num_classes: int | None = None,
        lr: float = 0.01,
        num_iter: int = 50,
        *,
        batch_size: int = 32,
        momentum: float = 0.9,
        image_shape: Sequence[int] | None = None,
        standardize: bool = True,
        random_state: Any = None,
        dtype: str = "float32",
        verbose: int = 0,
    ) -> None:
        self.num_filters = num_filters
        self.filter_size = filter_size
        self.pool_size = pool_size
        self.num_classes = num_classes
        self.lr = lr
        self.num_iter = num_iter
        self.batch_size = batch_size
        self.momentum = momentum
        self.image_shape = image_shape
        self.standardize = standardize
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    def _make_model(self, X: np.ndarray, n_classes: int, seed: Any) -> Sequential:
        input_shape = X.shape[1:]
        _, h, w = input_shape
        _check_param(self, "filter_size", 1)
        _check_param(self, "pool_size", 1)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"CNNClassifier: standardize must be True or False, got {self.standardize!r}")
        kernel = (min(self.filter_size, h), min(self.filter_size, w))
        pool = (min(self.pool_size, h - kernel[0] + 1), min(self.pool_size, w - kernel[1] + 1))
        model = blog_cnn(
            num_filters=self.num_filters, filter_size=kernel, pool_size=pool, num_classes=n_classes,
            input_shape=input_shape, seed=seed, dtype=self.dtype,
        )
        if not self.standardize:
            return model
        # A frozen BatchNorm2D holding the training data's statistics is exactly (x - mean) / sqrt(var + eps),
        # and it travels with the model: saving, loading and export keep the scaling. It draws no random
        # numbers, so the other layers get the same initial weights as without it.
        scale = BatchNorm2D(trainable=False, name="standardize")
        model = Sequential([scale, *model.layers], input_shape=input_shape, seed=seed, dtype=self.dtype)
        axes = (0, 2, 3)
        scale.running_mean.data[...] = X.mean(axis=axes, dtype=np.float64)
        scale.running_var.data[...] = X.var(axis=axes, dtype=np.float64)
        return model

    def _row_shape(self, n_features: int) -> Shape:
        if self.image_shape is not None:
            shape = tuple(self.image_shape)
            shape = (1, *shape) if len(shape) == 2 else shape
            if len(shape) != 3 or int(np.prod(shape)) != n_features:
                raise ValueError(
                    f"CNNClassifier: image_shape={self.image_shape!r} must be (H, W) or (C, H, W) with "
                    f"H·W (·C) = {n_features}, the number of features in X"
                )
            return shape
        side = int(round(np.sqrt(n_features)))
        return (1, side, side) if side * side == n_features else (1, 1, n_features)

    def _encode_labels(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.num_classes is None:
            return super()._encode_labels(y)
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"CNNClassifier: num_classes must be None or a positive int, got {k!r}")
        if y.dtype.kind not in "iuf" or not np.all(np.isin(y, np.arange(k))):
            raise ValueError(
                f"CNNClassifier: with num_classes={k} the labels must be the integers 0..{k - 1}, got "
                f"{_preview(np.unique(y))}; use num_classes=None to take the classes from y"
            )
        return np.arange(k), y.astype(np.intp)


class SequentialClassifier(_MinidlClassifier):
    """Any minidl layer list as a scikit-learn classifier.

    ``layers``: a list of (unbuilt) layers, or of their ``to_config()`` dicts, or a function of
    no arguments returning a list of layers. Every ``fit`` trains fresh layers — rebuilt from
    the configs, or made by calling the function — so the list given is never modified and
    ``clone`` works. The classes come from ``y``, and so does the output layer: a list that
    does not end with ``SoftmaxCE`` is the body of the network, and ``fit`` appends
    ``Dense(len(classes_))`` and ``SoftmaxCE()``. A list ending with ``SoftmaxCE`` is the whole
    network, and its last layer must output one score per class.

    ``input_shape=None``: how flat rows ``(N, F)`` reach the model. ``None`` feeds them as
    feature vectors ``(F,)`` (a list starting with ``Dense``); a shape such as ``(1, 8, 8)``
    reshapes each row. Images ``(N, H, W)`` get a channel axis; ``(N, C, H, W)`` pass as they are.

    ``lr``, ``momentum``, ``num_iter``, ``batch_size``, ``random_state``, ``dtype``, ``verbose``
    and the fitted attributes are as in :class:`CNNClassifier`.
    """

    def __init__(
        self,
        layers: Sequence[Layer | dict[str, Any]] | Callable[[], Sequence[Layer]] | None = None,
        *,
        input_shape: Sequence[int] | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        num_iter: int = 50,
        batch_size: int = 32,
        random_state: Any = None,
        dtype: str = "float32",
        verbose: int = 0,
    ) -> None:
        self.layers = layers
        self.input_shape = input_shape
        self.lr = lr
        self.momentum = momentum
        self.num_iter = num_iter
        self.batch_size = batch_size
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    def _make_model(self, X: np.ndarray, n_classes: int, seed: Any) -> Sequential:
        layers = self._fresh_layers()
        if not isinstance(layers[-1], SoftmaxCE):
            layers += [Dense(n_classes), SoftmaxCE()]
        return Sequential(layers, input_shape=X.shape[1:], seed=seed, dtype=self.dtype)

    def _fresh_layers(self) -> list[Layer]:
        if self.layers is None:
            raise ValueError("SequentialClassifier: pass layers=[...] (a list of layers) or a function returning one")
        if callable(self.layers):
            layers = list(self.layers())
            if any(not isinstance(layer, Layer) or layer.built for layer in layers):
                raise TypeError("SequentialClassifier: layers() must return new, unbuilt minidl layers on every call")
            return layers
        if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, Sequence) or not self.layers:
            raise TypeError(f"SequentialClassifier: layers must be a non-empty list of layers, got {self.layers!r}")
        return [Layer.from_config(item.to_config() if isinstance(item, Layer) else item) for item in self.layers]

    def _row_shape(self, n_features: int) -> Shape:
        if self.input_shape is None:
            return (n_features,)
        shape = tuple(self.input_shape)
        if int(np.prod(shape)) != n_features:
            raise ValueError(
                f"SequentialClassifier: input_shape={shape} holds {int(np.prod(shape))} values per sample, "
                f"but X has {n_features} features"
            )
        return shape


def _check_param(estimator: BaseEstimator, name: str, minimum: int) -> None:
    """scikit-learn reports every bad hyper-parameter as a ``ValueError`` from ``fit``."""
    try:
        as_int(getattr(estimator, name), name, minimum=minimum)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{type(estimator).__name__}: {err}") from None


def _seed_from(random_state: Any) -> int | None:
    """minidl's seed for scikit-learn's ``random_state``: None, an int, or a ``RandomState`` to draw from."""
    if random_state is None or (isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)):
        return None if random_state is None else int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _preview(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(map(repr, values[:limit].tolist()))
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
