"""``Sequential``: the chain of layers, a layer itself; the outermost one is the model
(shape pass, ``summary``, saving, and Keras-style ``fit / evaluate / predict`` over :mod:`minidl.training`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import inference, saving, training
from .backend import get_backend
from .callbacks import Callback, History
from .inputs import channels_first_hint, raise_if_not_finite
from .layers import containers
from .layers.base import Buffer, Layer, Parameter, Shape
from .layers.containers import at_layer
from .layers.losses import Loss
from .model_checks import check_nested_losses, check_seed, float_dtype, input_dtype_of, require_built, split_loss
from .optim import Optimizer
from .sources import as_source, batch_size_for
from .summary import model_repr, print_summary

__all__ = ["Sequential", "load"]


class Sequential(containers.Sequential, register=False):
    """The model: layers applied one after another, with a seed, a dtype, a loss and ``fit``.

    A :class:`minidl.layers.Sequential` (the chain) with what training needs; nested in another
    model or container it is a plain chain (and saves and loads as one).

    Args:
        layers: the layers, in order; kept as ``.layers``. A :class:`~minidl.layers.Loss` (such as
            ``SoftmaxCE``) ending the list becomes ``loss``: ``Sequential([..., SoftmaxCE()])``.
        input_shape: the per-sample shape, e.g. ``(1, 8, 8)`` for single-channel 8×8 images; without
            it the model is built from the first batch it sees. A nested ``Sequential`` needs none:
            the outer model's shape pass builds it.
        seed: fixes the initial weights and the shuffling of ``fit`` (outermost model only).
        dtype: float32 or float64 (outermost model only; nested layers take the outer one's).
        loss: what ``fit`` and ``evaluate`` minimise and what ``predict`` turns the outputs into
            (outermost model only); kept as ``.loss``. ``fit`` needs one.
        input_dtype: what ``X`` is converted to: ``None`` for ``dtype`` (floats), or an integer
            type such as ``"int64"`` for token ids (the first layer, e.g. an ``Embedding``, takes
            them); the layers still compute in ``dtype``.

    Shape:
        ``(N, *input_shape) -> (N, *output_shape of the last layer)``.

    Example::

        stem = Sequential([Conv2D(8, 3, padding="same"), ReLU()])
        model = Sequential([stem, Flatten(), Dense(10)], input_shape=(1, 8, 8), seed=0, loss=SoftmaxCE())
        # the same model: Sequential([stem, Flatten(), Dense(10), SoftmaxCE()], input_shape=(1, 8, 8), seed=0)
    """

    def __init__(
        self,
        layers: Iterable[Layer | Loss],
        input_shape: Sequence[int] | None = None,
        seed: int | None = None,
        dtype: Any = "float32",
        *,
        loss: Loss | None = None,
        input_dtype: Any = None,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        layers, loss = split_loss(layers, loss)
        super().__init__(layers, trainable=trainable, name=name)
        check_nested_losses(self.named_layers())
        #: What ``fit`` minimises (``SoftmaxCE``, ``SigmoidBCE``, ``MSE``, a user's), or ``None``.
        self.loss: Loss | None = loss
        self.dtype = float_dtype(dtype)
        self.input_dtype = input_dtype_of(input_dtype)
        check_seed(seed)
        self.seed = seed
        init_seq, shuffle_seq = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seq)
        self._shuffle_rng = np.random.default_rng(shuffle_seq)
        self.optimizer: Optimizer | None = None
        #: Set by a callback (e.g. ``EarlyStopping``) to end ``fit`` after the current epoch.
        self.stop_training = False
        #: The ``History`` of the last ``fit`` (``None`` before one).
        self.history: History | None = None
        self._fitting = False
        if input_shape is not None:
            self.build(input_shape)

    # -- structure ---------------------------------------------------------------------
    def build(self, input_shape: Sequence[int], rng: np.random.Generator | None = None, dtype: Any = None) -> Shape:
        """The shape pass (see :meth:`Layer.build`) with the model's own seed and dtype at the top;
        a nested ``Sequential`` gets the outer model's ``rng`` and ``dtype``."""
        top, rng = rng is None, self._init_rng if rng is None else rng
        try:
            return super().build(input_shape, rng, self.dtype if dtype is None else dtype)
        except ValueError as err:
            hint = channels_first_hint(tuple(input_shape)) if top else ""
            if not hint:
                raise
            raise ValueError(f"{err}{hint}") from None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        output_shape = super().compute_output_shape(input_shape)
        if self.loss is not None:  # refused here, in the shape pass, before any weight is made
            at_layer(len(self.layers), self.loss, output_shape, self.loss.check_shape)
        return output_shape

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        super().create_parameters(input_shape, rng, dtype)
        if self.loss is not None and self.output_shape is not None:  # build set output_shape first
            self.loss.build(self.output_shape, dtype)

    def named_parameters(self) -> dict[str, Parameter]:
        self._require_built("named_parameters")
        return super().named_parameters()

    def named_buffers(self) -> dict[str, Buffer]:
        self._require_built("named_buffers")
        return super().named_buffers()

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, loss, weights, dtype and seed to ``path`` atomically; see :mod:`minidl.saving`."""
        saving.save(self, path)

    def load_weights(self, path: str | os.PathLike, strict: bool = True) -> saving.LoadResult:
        """Load the weights saved at ``path`` into this model; see :func:`minidl.saving.load_weights`."""
        return saving.load_weights(self, path, strict=strict)

    @contextmanager
    def training_session(self, history: History) -> Iterator[None]:
        """What ``fit`` holds the model in: ``history`` becomes ``model.history``, ``stop_training`` starts
        ``False``, and a ``fit`` inside it (from a callback) raises ``RuntimeError``.

        Args:
            history: the ``History`` this session records into.

        Example::

            with model.training_session(History()):
                ...  # one training run (minidl.training.Trainer uses it)
        """
        if self._fitting:
            raise RuntimeError("fit: this model is already training (fit was called from inside fit, e.g. a callback)")
        self.history, self.stop_training, self._fitting = history, False, True
        try:
            yield
        finally:
            self._fitting = False

    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """Print the tree of layers with each one's output shape and parameter count, then the totals
        (see :func:`minidl.summary.print_summary`)."""
        self._require_built("summary")
        print_summary(self, print_fn)

    # -- computation -------------------------------------------------------------------
    def forward_backward(self, x: Any, y: Any) -> tuple[float, np.ndarray]:
        """One training pass on a batch: forward, loss, backward. Fills every ``.grad``; updates nothing.

        Returns ``(loss, outputs)``, ``outputs`` being the model's outputs (a classifier's logits).
        Gradients are overwritten, not accumulated. ``x`` and ``y`` are checked and converted as
        ``fit`` does; a NaN or infinite loss raises ``FloatingPointError``.
        """
        training.require_loss(self, "forward_backward")
        loss, logits = training.forward_backward(self, *training.prepare(self, x, y, "x", "y"))
        raise_if_not_finite(np.array(loss), "forward_backward: the loss")  # before a custom loop steps on it
        return loss, logits

    def fit(
        self,
        X: Any,
        y: Any = None,
        optimizer: Optimizer | str | None = None,
        epochs: int = 1,
        batch_size: int | None = None,
        validation_data: tuple[Any, Any] | Any | None = None,
        shuffle: bool = True,
        verbose: int = 1,
        callbacks: Sequence[Callback] = (),
        steps_per_epoch: int | None = None,
    ) -> History:
        """Train with mini-batch gradient descent; returns per-epoch ``loss``, the loss's metrics
        (``accuracy`` for SoftmaxCE/SigmoidBCE, ``mae`` for MSE), their ``val_*`` and the learning
        rate ``lr`` each epoch trained with. ``y``'s form is the loss's: class labels for
        SoftmaxCE, 0/1 targets for SigmoidBCE, numbers of the output's shape for MSE.

        Without ``optimizer``, the model's previous one is reused, or ``SGD(lr=0.01)`` is made; a name
        (``"sgd"``, ``"adam"``, ``"adamw"``: :data:`minidl.recipes.OPTIMIZERS`) makes that optimizer with its
        default settings, as Keras does.
        ``verbose``: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        ``callbacks``: :class:`~minidl.callbacks.Callback` objects, e.g. ``EarlyStopping`` or a
        learning-rate schedule such as ``minidl.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)``.
        The loop itself is :class:`minidl.training.Trainer`.

        Data that does not fit in memory (docs/data.md, :mod:`minidl.sources`): ``X`` may be a
        ``np.memmap``, read and checked batch by batch, or an iterable of ``(X_batch, y_batch)`` with
        ``y=None``, its batches used as given (``batch_size``, 32 for arrays, is refused with it); a
        generator is read once, ``steps_per_epoch`` batches an epoch. ``validation_data`` may be such an iterable too.

        Training never loses work:

        - If the loss or the gradients of a step become NaN or infinite, ``fit`` raises
          :class:`~minidl.guard.NonFiniteLossError` (a ``FloatingPointError``) naming the epoch,
          the step and the last finite loss, *before* applying that step's update: the model
          keeps the weights of the last finite step. ``error.history`` holds the completed epochs;
          callbacks' ``on_train_end`` runs first (so ``EarlyStopping`` can restore its best weights).
        - Ctrl-C (``KeyboardInterrupt``) stops training after the step in flight: ``fit``
          returns normally with the history of the completed epochs and
          ``history.interrupted == True``; the model holds the weights of the last completed
          step (including the steps of the interrupted epoch) and can be used or trained further.
          An interrupt that lands inside ``optimizer.step()`` (a second Ctrl-C) is re-raised after
          ``on_train_end``: that update may be half-applied.
        - ``fit`` called from inside ``fit`` (e.g. a callback) raises ``RuntimeError``; an optimizer
          holding parameters of another model is refused before any work.
        """
        trainer = training.Trainer(self, optimizer, callbacks=callbacks, verbose=verbose)
        with get_backend().execution():  # the backend's thread and BLAS policy (minidl/backend, minidl/threads.py)
            return trainer.fit(X, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                               shuffle=shuffle, steps_per_epoch=steps_per_epoch)

    def evaluate(self, X: Any, y: Any = None, batch_size: int | None = None, steps: int | None = None
                 ) -> dict[str, float]:
        """Mean loss and the loss's metrics (``accuracy``, ``mae``, ...) on ``(X, y)``, in inference mode.

        ``X`` may be a memmap or an iterable of ``(X_batch, y_batch)`` (then ``y=None``; ``steps``
        batches if given, and no ``batch_size``), as for ``fit``; ``batch_size`` is 256 unless given."""
        training.require_loss(self, "evaluate")
        batch_size = batch_size_for(X, batch_size, 256, "evaluate")
        with get_backend().execution():
            result = training.evaluate(self, as_source(self, X, y, "X", "y", steps), batch_size=batch_size)
        raise_if_not_finite(np.array(result["loss"]), "evaluate: the loss")
        return result

    def predict(self, X: Any, batch_size: int | None = None, steps: int | None = None) -> np.ndarray:
        """Predictions for ``X``, computed in chunks of ``batch_size`` (256); the loss decides what they are.

        SoftmaxCE: the class index, shape (N,). SigmoidBCE: 0/1 labels, (N,) for one output, else
        (N, K). MSE (and losses that do not override ``Loss.predict``): the values, (N, *output).
        Without a loss: the last layer's outputs.
        """
        with get_backend().execution():
            return inference.predict(self, X, batch_size, steps=steps)

    def predict_proba(self, X: Any, batch_size: int | None = None, steps: int | None = None) -> np.ndarray:
        """Class probabilities for ``X``: (N, K) with SoftmaxCE, ``σ(z)`` of the output's shape with SigmoidBCE.

        Only classifier losses have probabilities; for any other model this is a ``ValueError``.
        """
        with get_backend().execution():
            return inference.predict(self, X, batch_size, proba=True, steps=steps)

    def generate(self, prompt_tokens: Any, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None) -> np.ndarray:
        """Extend token ids by sampling from this causal language model; see :func:`minidl.generation.generate`."""
        from .generation import generate

        return generate(self, prompt_tokens, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed)

    def _require_built(self, what: str) -> None:
        require_built(self.built, what)

    def __repr__(self) -> str:
        return model_repr(self)


def load(path: str | os.PathLike) -> Sequential:
    """Rebuild the model saved at ``path``: same architecture, loss, weights, dtype and seed.

    Its predictions equal the saved model's bit for bit. The optimizer is not saved; the
    shuffling of a later ``fit`` restarts from the seed. Loading runs no code from the file
    and allocates no more than the arrays the file declares (see :func:`minidl.saving.read`).

    Args:
        path: a file written by ``model.save``.

    Example::

        model.save("digits.npz")
        same = minidl.load("digits.npz")
    """
    saved = saving.read(path)
    try:
        model = Sequential(saved.layers, loss=saved.loss, **saved.settings)
    except (TypeError, ValueError) as err:
        raise saved.bad(f"the saved architecture does not build: {err}") from None
    try:
        model.load_state_dict(saved.arrays)
    except ValueError as err:  # non-finite values
        raise saved.bad(str(err)) from None
    return model
