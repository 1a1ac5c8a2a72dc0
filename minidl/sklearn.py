"""scikit-learn estimators: minidl models inside ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``.

- :class:`CNNClassifier` — the blog post's ``CNN`` class with the blog's parameter names,
  built on :func:`minidl.presets.blog_cnn`.
- :class:`SequentialClassifier` — any layer list (or a function returning one).
- :class:`SequentialRegressor` — any layer list trained with ``MSE``, for regression.

Both follow scikit-learn's estimator rules: ``__init__`` only stores its arguments, every
``fit`` builds and trains a fresh model (``model_``), class labels can be any values
(``classes_``), and with a fixed ``random_state`` two fits give identical models.
``partial_fit(X, y, classes=None)`` trains one epoch per call, keeping the model and the
optimizer's state between calls (incremental searches such as dask-ml's ``HyperbandSearchCV``).

Input ``X``: images ``(N, H, W)`` (one channel, as ``load_digits().images``) or
``(N, C, H, W)``, or flat rows ``(N, F)`` (see each class for how rows become model inputs). The
``Sequential*`` estimators also take sequences: real-valued ``(N, T, D)`` (for a recurrent or
attention network), and padded token ids ``(N, T)`` for a network starting with an ``Embedding``,
such as the presets ``text_cnn``/``text_lstm`` (``SequentialClassifier(presets.text_lstm(V))``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .callbacks import History
from .config import from_config
from .layers import MSE, BatchNorm2D, Dense, Embedding, Layer, Loss, SoftmaxCE
from .layers.base import as_int
from .model import Sequential
from .optim import SGD
from .presets import blog_cnn
from .training import NotLearningWarning, not_learning

__all__ = ["CNNClassifier", "SequentialClassifier", "SequentialRegressor"]

Shape = tuple[int, ...]


class _MinidlEstimator(BaseEstimator):
    """What every minidl estimator shares: ``fit``, ``partial_fit``'s loop, input checks and the optimizer.

    Subclasses say how to make the model (``_make_model``), how flat rows become model inputs
    (``_row_shape``) and what the targets are: ``_fit_targets(y) -> (spec, targets)`` for a fresh
    fit, where ``spec`` is what the model's output must match (the classes, or the number of
    outputs), ``_targets(y, spec)`` for later ``partial_fit`` calls, and ``_keep_spec(spec)``.
    """

    _validate_y: dict[str, Any] = {}  # extra arguments of scikit-learn's validate_data for y
    _samples = "images"  # what a sample of more than one axis is, for the messages
    _x_forms = "(N, H, W) or (N, C, H, W) images or (N, F) rows"  # the X it takes, for the messages

    def _make_model(self, X: np.ndarray, n_outputs: int, seed: Any) -> Sequential:
        """A fresh, built model for training data ``X`` (N, *input_shape)."""
        raise NotImplementedError

    def _row_shape(self, n_features: int) -> Shape:
        """Per-sample model input shape for flat rows of ``n_features`` values."""
        raise NotImplementedError

    def _sample_shape(self, shape: Shape) -> Shape:
        """The model input shape for samples of ``shape`` (more than one axis): here images, one channel if 2-D."""
        return (1, *shape) if len(shape) == 2 else shape

    def _takes_ids(self, reset: bool) -> bool:
        """Whether ``X`` holds integer token ids (the network starts with an ``Embedding``)."""
        return False

    # -- scikit-learn API ----------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> _MinidlEstimator:
        """Build a fresh model for ``X`` and ``y`` and train it for ``num_iter`` epochs."""
        self._check_params()
        X, y = self._validate(X, _require_y(self, y), reset=True)
        spec, targets = self._fit_targets(y)
        state = self._start(X, spec)
        history = self._train(state, X, targets, int(self.num_iter))
        self._keep(spec, X, state, history, first=True)  # the fitted attributes, together, once training succeeded
        return self

    def _partial_fit(self, X: Any, y: Any, first_spec: Callable[[np.ndarray], Any]) -> _MinidlEstimator:
        """One epoch on ``(X, y)``; the first call builds the model for ``first_spec(y)``."""
        first = not hasattr(self, "model_")
        self._check_params()
        X, y = self._validate(X, _require_y(self, y), reset=first)
        spec = first_spec(y) if first else self._spec()
        targets = self._targets(y, spec)
        state = self._start(X, spec) if first else (self.model_, self.optimizer_)
        self._keep(spec, X, state, self._train(state, X, targets, 1), first=first)
        return self

    # -- training ------------------------------------------------------------------------
    def _check_params(self) -> None:
        _check_param(self, "num_iter", 0)
        _check_param(self, "batch_size", 1)

    def _start(self, X: np.ndarray, spec: Any) -> tuple[Sequential, SGD]:
        """A fresh model for training data ``X`` and its optimizer."""
        n_outputs = self._n_outputs(spec)
        model = self._make_model(X, n_outputs, _seed_from(self.random_state))
        if model.output_shape != (n_outputs,):
            loss = type(model.loss).__name__ if model.loss is not None else "the loss"
            raise ValueError(
                f"{type(self).__name__}: the model outputs shape {model.output_shape}, but y has "
                f"{self._describe(spec)}: make the layer before {loss} a Dense({n_outputs}), or leave "
                f"{loss} out and fit appends that loss"
            )
        return model, SGD(model.parameters(), lr=self.lr, momentum=self.momentum)

    def _train(self, state: tuple[Sequential, SGD], X: np.ndarray, targets: np.ndarray, epochs: int) -> History:
        model, optimizer = state
        with warnings.catch_warnings():  # the estimator judges its whole loss_curve_ (partial_fit's calls too)
            warnings.simplefilter("ignore", NotLearningWarning)
            return model.fit(X, targets, optimizer=optimizer, epochs=epochs, batch_size=int(self.batch_size),
                             verbose=self.verbose)

    def _keep(self, spec: Any, X: np.ndarray, state: tuple[Sequential, SGD], history: History, first: bool) -> None:
        self._keep_spec(spec)
        if first:
            self.model_, self.optimizer_ = state
            self.input_shape_: Shape = tuple(state[0].input_shape or X.shape[1:])  # built by _start
            self.loss_curve_: list[float] = []
        self.history_ = history
        self.loss_curve_ = self.loss_curve_ + list(history.get("loss", []))
        self.n_iter_ = len(self.loss_curve_)
        self._check_progress()

    def _check_progress(self) -> None:
        """After training: warn about what a user should know (the classifiers: a loss at chance level)."""

    # -- helpers ---------------------------------------------------------------------------
    def _validate(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, Any]:
        """Check ``X`` (and ``y``) the scikit-learn way and shape ``X`` as the model's input."""
        name = type(self).__name__
        ids = self._takes_ids(reset)
        shape = None
        if getattr(X, "shape", None) is None:  # lists and array-likes; data frames keep their column names
            X = np.asarray(X)
        if len(X.shape) > 2:  # images, sequences: scikit-learn validates 2-D data, so check them flattened
            X = np.asarray(X)
            if X.ndim > 4 or ids:
                forms = "(N, T) token ids (its network starts with an Embedding)" if ids else self._x_forms
                raise ValueError(f"{name}: X must be {forms}, got shape {X.shape}")
            shape = self._sample_shape(X.shape[1:])
            if not reset and shape != self.input_shape_ and (1, *shape) != self.input_shape_:
                axes = " (channels, height, width)" if len(shape) == 3 else ""
                raise ValueError(f"{name}: X holds {self._samples} of shape {shape}{axes}, but {name} was "
                                 f"fitted on {self.input_shape_}")
            X = X.reshape(len(X), int(np.prod(shape)))
        dtype = "numeric" if ids else [np.float64, np.float32]  # token ids stay integers
        if y is None:
            X = validate_data(self, X, reset=reset, dtype=dtype)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=dtype, **self._validate_y)
        if ids:
            X = _token_ids(X, name)
        if not reset:
            shape = self.input_shape_
        elif shape is None:
            shape = self._row_shape(X.shape[1])
        return X.reshape(len(X), *shape), y


class _MinidlClassifier(ClassifierMixin, _MinidlEstimator):
    """Classifiers: labels of any type (``classes_``), ``partial_fit(X, y, classes)``, ``predict_proba``."""

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> _MinidlClassifier:
        """Train one epoch on ``(X, y)``, continuing from the previous call (or ``fit``).

        ``classes`` (every label ``y`` may ever hold) is required on the first call, as in
        scikit-learn's ``SGDClassifier``; later calls may repeat it unchanged or leave it out.
        The model, the optimizer's state (momentum) and the shuffling stream carry over between
        calls; what is fitted on the data once (``CNNClassifier``'s input standardisation) is
        fitted on the first call's ``X``.
        """
        name = type(self).__name__
        if not hasattr(self, "model_") and classes is None:
            raise ValueError(f"{name}: classes must be passed on the first call to partial_fit "
                             "(every label y may hold, e.g. np.unique(y_all))")
        known = None if classes is None else self._encode_labels(np.asarray(classes))[0]
        if known is not None and hasattr(self, "model_") and not np.array_equal(known, self.classes_):
            raise ValueError(
                f"{name}: classes={_preview(known)} differs from the first call's {_preview(self.classes_)}"
            )
        return self._partial_fit(X, y, lambda y: known)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(N, len(classes_))``, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        X, _ = self._validate(X, None, reset=False)
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label for each sample, taken from ``classes_``."""
        check_is_fitted(self, "model_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # -- the targets: class labels --------------------------------------------------------------
    def _fit_targets(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_classification_targets(y)
        return self._encode_labels(y)

    def _targets(self, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        unseen = np.setdiff1d(y, classes)
        if unseen.size:
            raise ValueError(
                f"{type(self).__name__}: y holds labels {_preview(unseen)} that are not in classes {_preview(classes)}"
            )
        return np.searchsorted(classes, y)

    def _encode_labels(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.unique(y, return_inverse=True)

    def _spec(self) -> np.ndarray:
        return self.classes_

    def _keep_spec(self, classes: np.ndarray) -> None:
        self.classes_ = classes

    def _n_outputs(self, classes: np.ndarray) -> int:
        return len(classes)

    def _describe(self, classes: np.ndarray) -> str:
        return f"{len(classes)} classes {_preview(classes)}"

    def _check_progress(self) -> None:
        """A mean cross-entropy still near ln K predicts no better than uniform guessing: say so, never silently."""
        why = not_learning(len(self.classes_), self.loss_curve_)  # the criterion fit itself uses
        if why is not None:
            warnings.warn(
                f"{type(self).__name__}: {why}. "
                "Scale the inputs (e.g. to [0, 1] or with StandardScaler), or change lr or num_iter.",
                ConvergenceWarning, stacklevel=4,
            )


class CNNClassifier(_MinidlClassifier):
    """The blog's CNN done right: Conv2D → ReLU → MaxPool2D → Flatten → Dense → softmax, all trained.

    The first six arguments keep the blog's names.

    Args:
        num_filters: convolution filters (the blog's 4 score 0.93 in 5-fold cross-validation on
            ``load_digits()``, 16 score 0.96).
        filter_size: the convolution window; capped at the image (a 1×F image gets ``1×3``
            filters), so any image size works, down to 1×1.
        pool_size: the max-pooling window, capped at what the convolution leaves.
        num_classes: with ``None`` (the scikit-learn way) the classes are the distinct labels of
            ``y`` in sorted order, whatever their type (ints, strings, ...). An int ``K`` fixes the
            output layer as the blog does: labels must then be the integers ``0..K-1``, ``classes_``
            is ``arange(K)`` even when ``y`` lacks some of them (a fold of cross-validation, say),
            and ``predict_proba`` always has ``K`` columns.
        lr: SGD's step size.
        num_iter: epochs (passes over the data), as ``num_iter`` in the blog.
        batch_size: samples per step.
        momentum: SGD's momentum (PyTorch's rule).
        image_shape: how flat rows ``(N, F)`` become images. ``(H, W)`` or ``(C, H, W)`` reshapes
            each row; ``None`` makes a square one-channel image when ``F`` is a square
            (``load_digits().data``, 64 → 8×8) and otherwise a one-row image ``(1, 1, F)``.
        standardize: ``fit`` measures each channel's mean and standard deviation on the training
            images, and the model's first layer, a frozen ``BatchNorm2D`` named ``"standardize"``,
            maps ``x`` to ``(x - mean) / sqrt(var + 1e-5)``; so raw pixel values
            (``load_digits().data``, 0..16) train as well as scaled ones, and ``model_`` carries its
            scaling when saved or exported. ``False`` leaves the layer out: the blog's network as it is.
        random_state: seeds the weights and the shuffling; an int gives identical fits.
        dtype: the model's floating dtype.
        verbose: 0 silent, 1 a progress bar per epoch, 2 a line per epoch.

    Fitted attributes: ``model_`` (the trained :class:`~minidl.Sequential`), ``classes_``,
    ``n_features_in_`` (values per sample), ``input_shape_`` (C, H, W), ``optimizer_``,
    ``history_`` (of the last ``fit`` or ``partial_fit`` call), ``loss_curve_`` and ``n_iter_``
    (epochs trained in all).

    Example::

        from sklearn.datasets import load_digits
        from sklearn.model_selection import cross_val_score
        X, y = load_digits(return_X_y=True)
        cross_val_score(CNNClassifier(random_state=0), X, y, cv=5).mean()   # about 0.96
    """

    def __init__(
        self,
        num_filters: int = 16,
        filter_size: int = 3,
        pool_size: int = 2,
        num_classes: int | None = None,
        lr: float = 0.05,
        num_iter: int = 20,
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

    def _make_model(self, X: np.ndarray, n_outputs: int, seed: Any) -> Sequential:
        input_shape = X.shape[1:]
        _, h, w = input_shape
        _check_param(self, "filter_size", 1)
        _check_param(self, "pool_size", 1)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"CNNClassifier: standardize must be True or False, got {self.standardize!r}")
        kernel = (min(self.filter_size, h), min(self.filter_size, w))
        pool = (min(self.pool_size, h - kernel[0] + 1), min(self.pool_size, w - kernel[1] + 1))
        model = blog_cnn(
            num_filters=self.num_filters, filter_size=kernel, pool_size=pool, num_classes=n_outputs,
            input_shape=input_shape, seed=seed, dtype=self.dtype,
        )
        if not self.standardize:
            return model
        # A frozen BatchNorm2D holding the training data's statistics is exactly (x - mean) / sqrt(var + eps),
        # and it travels with the model: saving, loading and export keep the scaling. It draws no random
        # numbers, so the other layers get the same initial weights as without it.
        scale = BatchNorm2D(trainable=False, name="standardize")
        model = Sequential([scale, *model.layers], input_shape=input_shape, seed=seed, dtype=self.dtype,
                           loss=model.loss)
        axes = (0, 2, 3)
        assert scale.running_mean is not None and scale.running_var is not None  # built by Sequential(input_shape=)
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


class _LayerList:
    """The ``layers`` and ``input_shape`` of the ``Sequential*`` estimators: fresh layers on every fit.

    ``layers`` is a list of layers (or their configs), a model (a preset such as ``text_lstm(V)``), or
    a function returning either. A list ending with a ``whole_if_last`` loss, or a model with a loss,
    is the whole network; anything else is its body, and ``fit`` appends ``Dense(outputs)`` and a
    ``default_loss()``.
    """

    default_loss: type[Loss]
    whole_if_last: type[Loss]
    # the estimator's constructor parameters, which the concrete Sequential* estimators set
    layers: Any
    input_shape: Sequence[int] | None
    dtype: Any
    _samples = "samples"
    _x_forms = "(N, F) rows, (N, T, D) sequences, or (N, H, W) or (N, C, H, W) images"

    def _make_model(self, X: np.ndarray, n_outputs: int, seed: Any) -> Sequential:
        shape = X.shape[1:]
        try:
            return self._build(shape, n_outputs, seed)
        except ValueError:
            if len(shape) != 2:
                raise
            try:  # (N, H, W) images for layers that want (C, H, W): one channel, as Sequential.fit reads them
                return self._build((1, *shape), n_outputs, seed)
            except ValueError:
                pass
            raise

    def _build(self, input_shape: Shape, n_outputs: int, seed: Any) -> Sequential:
        layers, input_dtype, _ = self._network()
        if not isinstance(layers[-1], self.whole_if_last):
            layers += [Dense(n_outputs), self.default_loss()]
        return Sequential(layers, input_shape=input_shape, seed=seed, dtype=self.dtype, input_dtype=input_dtype)

    def _network(self) -> tuple[list[Layer | Loss], Any, Shape | None]:
        """Fresh, unbuilt layers (a loss last if the network has one), the input dtype (``"int64"`` for a
        network starting with an ``Embedding``) and the input shape of a model given as ``layers``."""
        name = type(self).__name__
        given = self.layers
        if given is None:
            raise ValueError(f"{name}: pass layers=[...] (a list of layers, or a model such as a preset) or a "
                             "function returning one")
        if callable(given) and not isinstance(given, Layer):
            given = given()
            if not isinstance(given, Sequential):
                given = list(given)
                if any(not isinstance(layer, (Layer, Loss)) or (isinstance(layer, Layer) and layer.built)
                       for layer in given):
                    raise TypeError(f"{name}: layers() must return new, unbuilt minidl layers (or a model) on "
                                    "every call")
        if isinstance(given, Sequential):  # a preset: its layers and loss, afresh; its seed gives way to ours
            parts = [*given.layers, *([given.loss] if given.loss is not None else [])]
            return [from_config(part.to_config()) for part in parts], given.input_dtype, given.input_shape
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or not given:
            raise TypeError(f"{name}: layers must be a non-empty list of layers or a model, got {given!r}")
        layers = [from_config(item.to_config() if isinstance(item, (Layer, Loss)) else item) for item in given]
        return layers, "int64" if isinstance(layers[0], Embedding) else None, None

    def _takes_ids(self, reset: bool) -> bool:
        if reset:
            return self._network()[1] is not None
        dtype = self.model_.input_dtype  # type: ignore[attr-defined]  # fitted by _MinidlEstimator
        return dtype is not None and dtype.kind in "iu"

    def _sample_shape(self, shape: Shape) -> Shape:
        return shape  # sequences (T, D) as they are; images (H, W) get their channel in _make_model

    def _row_shape(self, n_features: int) -> Shape:
        if self.input_shape is None:
            own = self._network()[2]  # a model's own input shape: digits_gru's (8, 8) for (N, 64) rows
            return tuple(own) if own is not None and int(np.prod(own)) == n_features else (n_features,)
        shape = tuple(self.input_shape)
        rest = int(np.prod([n for n in shape if n != -1]))
        if shape.count(-1) == 1 and rest > 0 and n_features % rest == 0:  # numpy's -1: what the rest leaves
            shape = tuple(n_features // rest if n == -1 else n for n in shape)
        if int(np.prod(shape)) != n_features or min(shape) < 1:
            holds = (f"takes a multiple of {rest} values per sample" if -1 in shape
                     else f"holds {int(np.prod(shape))} values per sample")
            raise ValueError(f"{type(self).__name__}: input_shape={tuple(self.input_shape)} {holds}, but X has "
                             f"{n_features} features")
        return shape


class SequentialClassifier(_LayerList, _MinidlClassifier):
    """Any minidl layer list as a scikit-learn classifier.

    The classes come from ``y``, and so does the output layer: a list that does not end with
    ``SoftmaxCE`` is the body of the network, and ``fit`` appends ``Dense(len(classes_))`` and
    ``SoftmaxCE()``. A list ending with ``SoftmaxCE`` is the whole network, and its last layer must
    output one score per class. The fitted attributes are as in :class:`CNNClassifier`.

    Args:
        layers: a list of (unbuilt) layers, or of their ``to_config()`` dicts; a model, such as a
            preset (``presets.text_lstm(V)``, ``presets.digits_gru()``), whose layers, loss and
            ``input_dtype`` are taken (its seed is not: ``random_state`` seeds the network); or a
            function of no arguments returning either. Every ``fit`` trains fresh layers (rebuilt
            from the configs, or made by calling the function), so what is given is never trained
            and ``clone`` works. A network starting with an ``Embedding`` takes integer token ids
            ``(N, T)``, 0 padding.
        input_shape: how flat rows ``(N, F)`` reach the model. ``None`` feeds them as feature
            vectors ``(F,)`` (a list starting with ``Dense``, or token ids), or in the input shape
            of a model given as ``layers`` when it holds ``F`` values; a shape such as ``(1, 8, 8)``
            reshapes each row, and one axis may be ``-1`` (``(-1, 1)``: a sequence of ``F`` steps of
            one value). Sequences ``(N, T, D)`` and images ``(N, C, H, W)`` pass as they are; images
            ``(N, H, W)`` get a channel axis if the first layer wants one (``Conv2D``), and are
            sequences of ``H`` steps otherwise.
        lr: as in :class:`CNNClassifier`.
        momentum: as in :class:`CNNClassifier`.
        num_iter: as in :class:`CNNClassifier`.
        batch_size: as in :class:`CNNClassifier`.
        random_state: as in :class:`CNNClassifier`.
        dtype: as in :class:`CNNClassifier`.
        verbose: as in :class:`CNNClassifier`.

    Example::

        from minidl.layers import Dense, ReLU
        clf = SequentialClassifier([Dense(64), ReLU()], random_state=0).fit(X, y)
        clf.predict_proba(X[:3]), clf.score(X, y)
        text = SequentialClassifier(presets.text_cnn(vocab_size), random_state=0).fit(token_ids, y)
    """

    default_loss = SoftmaxCE
    whole_if_last = SoftmaxCE

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


class SequentialRegressor(RegressorMixin, _LayerList, _MinidlEstimator):
    """Any minidl layer list as a scikit-learn regressor, trained with ``MSE``.

    A list that does not end with a loss is the body of the network, and ``fit`` appends
    ``Dense(n_outputs_)`` and ``MSE()``; a list ending with a loss (``MSE``, or your own such as a
    Huber loss) is the whole network, and its output must have one value per target.

    ``y``: ``(N,)`` (one target; ``predict`` returns ``(N,)``) or ``(N, K)`` (``K`` targets;
    ``predict`` returns ``(N, K)``), any numbers. ``score`` is R² (scikit-learn's regressors').
    ``partial_fit(X, y)`` trains one epoch per call, keeping the model and the optimizer's state.

    Fitted attributes: ``model_``, ``n_outputs_``, ``target_mean_`` and ``target_scale_`` (each
    ``(n_outputs_,)``), ``n_features_in_``, ``input_shape_``, ``optimizer_``, ``history_``
    (per-epoch loss and ``mae``, in standardised units), ``loss_curve_``, ``n_iter_``.

    Args:
        layers: as in :class:`SequentialClassifier`.
        input_shape: as in :class:`SequentialClassifier`.
        lr: as in :class:`CNNClassifier`.
        momentum: as in :class:`CNNClassifier`.
        num_iter: as in :class:`CNNClassifier`.
        batch_size: as in :class:`CNNClassifier`.
        standardize_targets: the model learns ``(y - target_mean_) / target_scale_`` (each
            target's mean and standard deviation on the training data, or on the first
            ``partial_fit`` call's), and ``predict`` maps its outputs back. The squared error, and
            so the size of each SGD step, is then independent of the targets' units: without it,
            targets in the hundreds make ``lr=0.01`` diverge. ``model_`` works in the standardised
            units.
        random_state: as in :class:`CNNClassifier`.
        dtype: as in :class:`CNNClassifier`.
        verbose: as in :class:`CNNClassifier`.

    Example::

        >>> reg = SequentialRegressor([Dense(32), ReLU()], random_state=0).fit(X, y)  # doctest: +SKIP
        >>> reg.predict(X[:3]), reg.score(X, y)                                       # doctest: +SKIP
    """

    default_loss = MSE
    whole_if_last = Loss
    _validate_y = {"multi_output": True, "y_numeric": True}

    def __init__(
        self,
        layers: Sequence[Layer | dict[str, Any]] | Callable[[], Sequence[Layer]] | None = None,
        *,
        input_shape: Sequence[int] | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        num_iter: int = 50,
        batch_size: int = 32,
        standardize_targets: bool = True,
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
        self.standardize_targets = standardize_targets
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    def partial_fit(self, X: Any, y: Any) -> SequentialRegressor:
        """Train one epoch on ``(X, y)``, continuing from the previous call (or ``fit``).

        The first call builds the model for ``y``'s number of targets; the model, the optimizer's
        state and the shuffling stream carry over between calls.
        """
        return self._partial_fit(X, y, lambda y: self._fit_targets(y)[0])

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values: ``(N,)`` for one target, ``(N, n_outputs_)`` for several."""
        check_is_fitted(self, "model_")
        X, _ = self._validate(X, None, reset=False)
        out = self.model_.predict(X) * self.target_scale_ + self.target_mean_
        return out[:, 0] if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    # -- the targets: values, standardised -------------------------------------------------------
    def _fit_targets(self, y: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        if not isinstance(self.standardize_targets, (bool, np.bool_)):
            raise ValueError(f"SequentialRegressor: standardize_targets must be True or False, "
                             f"got {self.standardize_targets!r}")
        y = _as_columns(y)
        mean, scale = np.zeros(y.shape[1]), np.ones(y.shape[1])
        if self.standardize_targets:
            mean, scale = y.mean(axis=0), y.std(axis=0)
            scale[scale == 0] = 1.0  # a constant target: shift it, nothing to scale
        spec = (mean, scale)
        return spec, self._targets(y, spec)

    def _targets(self, y: np.ndarray, spec: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean, scale = spec
        y = _as_columns(y)
        if y.shape[1] != len(mean):
            raise ValueError(
                f"{type(self).__name__}: y has {y.shape[1]} target(s) per sample, but the model was "
                f"fitted on {len(mean)}"
            )
        return (y - mean) / scale

    def _spec(self) -> tuple[np.ndarray, np.ndarray]:
        return self.target_mean_, self.target_scale_

    def _keep_spec(self, spec: tuple[np.ndarray, np.ndarray]) -> None:
        self.target_mean_, self.target_scale_ = spec
        self.n_outputs_ = len(self.target_mean_)

    def _n_outputs(self, spec: tuple[np.ndarray, np.ndarray]) -> int:
        return len(spec[0])

    def _describe(self, spec: tuple[np.ndarray, np.ndarray]) -> str:
        return f"{len(spec[0])} target(s) per sample"


def _as_columns(y: Any) -> np.ndarray:
    """Targets as float64 columns ``(N, K)``."""
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(len(y), -1)


def _require_y(estimator: BaseEstimator, y: Any) -> Any:
    if y is None:  # scikit-learn's wording, which its estimator checks look for
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None")
    return y


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


def _token_ids(X: np.ndarray, name: str) -> np.ndarray:
    """``X`` as int64 token ids: whole numbers from 0 on (an ``Embedding`` checks the top of the range)."""
    if X.dtype.kind == "f" and not np.array_equal(X, np.round(X)):
        bad = X[X != np.round(X)][0]
        raise ValueError(f"{name}: X must hold integer token ids (its network starts with an Embedding), got "
                         f"{X.dtype} values such as {bad.item()!r}")
    if X.size and X.min() < 0:
        raise ValueError(f"{name}: X must hold token ids >= 0 (0 pads), got {X.min().item()!r}")
    return X.astype(np.int64, copy=False)


def _preview(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(map(repr, values[:limit].tolist()))
    return f"[{shown}{', ...' if len(values) > limit else ''}]"
