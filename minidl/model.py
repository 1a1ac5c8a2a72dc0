"""``Sequential``: a stack of layers with Keras-style ``fit / evaluate / predict``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import training
from .callbacks import Callback, History
from .inputs import prepare_inputs, raise_if_not_finite
from .layers.base import Buffer, Layer, Parameter, Shape, _as_shape, as_int
from .layers.losses import SoftmaxCE
from .optim import Optimizer

if TYPE_CHECKING:
    from .saving import LoadResult

class Sequential:
    """Layers applied one after another; the last may be a :class:`SoftmaxCE` loss head.

    ``input_shape`` is the per-sample shape, e.g. ``(1, 8, 8)`` for single-channel 8×8
    images; without it the model is built from the first batch it sees. ``seed`` fixes
    the initial weights and the shuffling of ``fit``; ``dtype`` is float32 or float64.
    """

    def __init__(
        self,
        layers: Iterable[Layer],
        input_shape: Sequence[int] | None = None,
        seed: int | None = None,
        dtype: Any = "float32",
    ) -> None:
        if isinstance(layers, Layer) or not isinstance(layers, Iterable):
            raise TypeError(f"Sequential: layers must be a list of Layer objects, got {layers!r}")
        self.layers: list[Layer] = list(layers)
        if not self.layers:
            raise ValueError("Sequential: got an empty layer list")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a minidl Layer")
        if len({id(layer) for layer in self.layers}) != len(self.layers):
            raise ValueError("Sequential: the same layer object appears twice; create a new one for each place")
        heads = [i for i, layer in enumerate(self.layers) if isinstance(layer, SoftmaxCE)]
        if len(heads) > 1:
            raise ValueError(f"Sequential: a model has one SoftmaxCE loss head, found one at each of positions {heads}")
        if heads and heads[0] != len(self.layers) - 1:
            raise ValueError(
                f"Sequential: SoftmaxCE must be the last layer, found at position {heads[0]} "
                f"of {len(self.layers)} (followed by {type(self.layers[heads[0] + 1]).__name__})"
            )
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            self.dtype = None
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"Sequential: dtype must be float32 or float64, got {dtype!r}")
        if seed is not None:
            for entropy in seed if isinstance(seed, (list, tuple)) else [seed]:  # SeedSequence takes lists too
                as_int(entropy, "seed", "Sequential")
        self.seed = seed
        init_seq, shuffle_seq = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seq)
        self._shuffle_rng = np.random.default_rng(shuffle_seq)
        self.optimizer: Optimizer | None = None
        self.stop_training = False
        self._fitting = False
        self.input_shape: Shape | None = None
        if input_shape is not None:
            self.build(input_shape)

    # -- structure ---------------------------------------------------------------------
    def build(self, input_shape: Sequence[int]) -> Shape:
        """Run the shape pass: build every layer for ``input_shape`` and return the model's output shape."""
        shape = _as_shape(input_shape, "Sequential")
        self.input_shape = shape
        rng_state = self._init_rng.bit_generator.state
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.build(shape, rng=self._init_rng, dtype=self.dtype)
            except (ValueError, TypeError) as err:
                # A failed build leaves no trace: the next build draws the weights a first build would.
                self.input_shape = None
                self._init_rng.bit_generator.state = rng_state
                raise type(err)(f"layer {i} ({type(layer).__name__}) got input shape {shape}: {err}") from None
        return shape

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    @property
    def output_shape(self) -> Shape | None:
        return self.layers[-1].output_shape

    @property
    def head(self) -> SoftmaxCE | None:
        last = self.layers[-1]
        return last if isinstance(last, SoftmaxCE) else None

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def named_parameters(self) -> dict[str, Parameter]:
        """``{"0.weight": Parameter, ...}``: layer index, dot, attribute name (PyTorch's naming)."""
        self._require_built("named_parameters")
        return {f"{i}.{k}": p for i, layer in enumerate(self.layers) for k, p in layer.named_parameters().items()}

    def parameters(self) -> list[Parameter]:
        return list(self.named_parameters().values())

    def named_buffers(self) -> dict[str, Buffer]:
        """``{"1.running_mean": Buffer, ...}``: saved, never trained state, named like parameters."""
        self._require_built("named_buffers")
        return {f"{i}.{k}": b for i, layer in enumerate(self.layers) for k, b in layer.named_buffers().items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat ``name → array`` copy of every parameter and buffer."""
        return {k: p.data.copy() for k, p in (self.named_parameters() | self.named_buffers()).items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (in place, so optimizers keep working). Checks names and shapes."""
        params = self.named_parameters() | self.named_buffers()
        if strict:
            missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
            if missing or unexpected:
                raise KeyError(f"load_state_dict: missing parameters {missing}, unexpected {unexpected}")
        values = {}
        for name, p in params.items():  # check everything before writing anything: no half-loaded model
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: parameter {name!r} has shape {p.shape}, the state has {value.shape}")
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: parameter {name!r} must be numeric, the state has dtype {value.dtype}")
            values[name] = value
        for name, value in values.items():
            params[name].data[...] = value

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights, dtype and seed to ``path`` atomically; see :mod:`minidl.saving`."""
        from . import saving  # saving imports this module

        saving.save(self, path)

    def load_weights(self, path: str | os.PathLike, strict: bool = True) -> LoadResult:
        """Load the weights saved at ``path`` into this model; see :func:`minidl.saving.load_weights`."""
        from . import saving

        return saving.load_weights(self, path, strict=strict)

    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """Print one row per layer: name, output shape, parameter count; then the totals.

        As in Keras, buffers (e.g. BatchNorm2D's running statistics) count as non-trainable parameters.
        """
        self._require_built("summary")
        rows = [("Layer (type)", "Output shape", "Param #")]
        for i, layer in enumerate(self.layers):
            count = sum(p.size for p in layer.parameters()) + sum(b.size for b in layer.buffers())
            rows.append((f"{i}: {layer.name}", str((None, *layer.output_shape)), f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(widths) + 4)
        fmt = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
        params = self.parameters()
        total = sum(p.size for p in params) + sum(b.size for b in self.named_buffers().values())
        trainable = sum(p.size for p in params if p.trainable)
        print_fn("\n".join([
            f"Sequential: input (None, {', '.join(map(str, self.input_shape))}), dtype {self.dtype}",
            line, fmt(rows[0]), line, *map(fmt, rows[1:]), line,
            f"Total params: {total:,}", f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}",
        ]))

    # -- computation -------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Run every layer; with a SoftmaxCE head the result is class probabilities."""
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Back-propagate ``grad_out`` through the layers below the head; returns ``dL/dx``."""
        body = self.layers[:-1] if self.head is not None else self.layers
        for layer in reversed(body):
            grad_out = layer.backward(grad_out)
        return grad_out

    def forward_backward(self, x: Any, y: Any) -> tuple[float, np.ndarray]:
        """One training pass on a batch: forward, loss, backward. Fills every ``.grad``; updates nothing.

        Returns ``(loss, logits)``. Gradients are overwritten, not accumulated. ``x`` and ``y``
        are checked and converted as ``fit`` does; a NaN or infinite loss raises ``FloatingPointError``.
        """
        self._require_head("forward_backward")
        loss, logits = training.forward_backward(self, *training.prepare(self, x, y, "x", "y"))
        raise_if_not_finite(np.array(loss), "forward_backward: the loss")  # before a custom loop steps on it
        return loss, logits

    def fit(
        self,
        X: Any,
        y: Any,
        optimizer: Optimizer | None = None,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        verbose: int = 1,
        callbacks: Sequence[Callback] = (),
    ) -> History:
        """Train with mini-batch gradient descent; returns per-epoch ``loss``/``accuracy`` (and ``val_*``)
        and the learning rate ``lr`` each epoch trained with.

        Without ``optimizer``, the model's previous one is reused, or ``SGD(lr=0.01)`` is made.
        ``verbose``: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        ``callbacks``: :class:`~minidl.callbacks.Callback` objects, e.g. ``EarlyStopping`` or a
        learning-rate schedule such as ``minidl.optim.CosineAnnealingLR(optimizer, T_max=epochs)``.
        The loop itself is :class:`minidl.training.Trainer`.

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
        return trainer.fit(X, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                           shuffle=shuffle)

    def evaluate(self, X: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and accuracy on ``(X, y)``, in inference mode."""
        self._require_head("evaluate")
        as_int(batch_size, "batch_size", minimum=1)
        result = training.evaluate(self, *training.prepare(self, X, y, "X", "y"), batch_size=batch_size)
        raise_if_not_finite(np.array(result["loss"]), "evaluate: the loss")
        return result

    def predict_proba(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Model outputs for ``X`` (class probabilities with a SoftmaxCE head), computed in chunks."""
        as_int(batch_size, "batch_size", minimum=1)
        X = prepare_inputs(self, X, "X")
        chunks = [self.forward(X[s:s + batch_size]) for s in range(0, len(X), batch_size)]
        out = np.concatenate(chunks)
        raise_if_not_finite(out, "predict_proba: the outputs")
        return out

    def predict(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Predicted class index for each sample, shape (N,)."""
        return self.predict_proba(X, batch_size=batch_size).argmax(axis=1)

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"Sequential.{what}: the model is not built; pass input_shape= or call build()")

    def _require_head(self, what: str) -> SoftmaxCE:
        if self.head is None:
            raise ValueError(f"Sequential.{what} needs a loss layer: end the model with SoftmaxCE()")
        return self.head

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner},\n], input_shape={self.input_shape}, seed={self.seed}, dtype='{self.dtype}')"

