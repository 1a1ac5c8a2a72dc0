"""``Sequential``: a stack of layers with Keras-style ``fit / evaluate / predict``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from tqdm.auto import tqdm

from .callbacks import Callback, History
from .guard import NonFiniteLossError, TrainingGuard
from .layers.base import Buffer, Layer, Parameter, Shape, _as_shape, as_int
from .layers.losses import SoftmaxCE
from .optim import SGD, Optimizer

if TYPE_CHECKING:
    from .saving import LoadResult

#: How often (seconds) fit refreshes its progress bar; formatting it every step would cost more than a step.
PROGRESS_INTERVAL = 0.1


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
        loss, logits = self._forward_backward(*self._prepare(x, y, "x", "y"))
        _raise_if_not_finite(np.array(loss), "forward_backward: the loss")  # before a custom loop steps on it
        return loss, logits

    def _forward_backward(self, x: np.ndarray, y: np.ndarray, input_grad: bool = True) -> tuple[float, np.ndarray]:
        """``forward_backward`` without the checks. ``input_grad=False`` (fit) calls the first layer's
        ``backward_params``: nobody reads the gradient of the data, and a Conv2D then skips computing it."""
        # The body of backward() inlined: this runs once per step, and at batch 1 every call counts.
        *body, head = self.layers
        logits = x
        for layer in body:
            logits = layer.forward(logits, training=True)
        loss = head.loss(logits, y)
        grad = head.backward()
        for layer in body[:0:-1]:
            grad = layer.backward(grad)
        if body:
            (body[0].backward if input_grad else body[0].backward_params)(grad)
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
        """
        self._require_head("fit")
        as_int(epochs, "epochs", minimum=0)
        as_int(batch_size, "batch_size", minimum=1)
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"fit: shuffle must be a bool, got {shuffle!r}")
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
            raise TypeError(f"fit: callbacks must be a list of Callback objects, got a {type(callbacks).__name__}")
        callbacks = list(callbacks)
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks[{i}] must be a minidl Callback, got {type(cb).__name__}")
        X, y = self._prepare(X, y, "X", "y")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(
                    f"fit: validation_data must be a pair (X_val, y_val), got {type(validation_data).__name__}"
                    + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
                )
            val = self._prepare(*validation_data, "validation_data[0]", "validation_data[1]")
        if optimizer is None:
            optimizer = self.optimizer or SGD(self.parameters(), lr=0.01)
        elif not isinstance(optimizer, Optimizer):
            raise TypeError(f"fit: optimizer must be a minidl Optimizer such as SGD, got {optimizer!r}")
        own = {id(p) for p in self.parameters()}
        foreign = [p for p in optimizer.params if id(p) not in own]
        if len(foreign) == len(optimizer.params):
            raise ValueError(
                "fit: the optimizer holds none of this model's parameters; make it with "
                "SGD(model.parameters(), ...) for this model"
            )
        if foreign:  # they would be stepped with whatever stale .grad they hold
            raise ValueError(
                f"fit: the optimizer also holds {len(foreign)} parameter(s) of another model "
                f"(shapes {[p.shape for p in foreign]}); make it with model.parameters() of this model only"
            )
        if self._fitting:
            raise RuntimeError("fit: this model is already training (fit was called from inside fit, e.g. a callback)")
        previous_optimizer, self.optimizer = self.optimizer, optimizer
        history = History()
        history.interrupted = False
        self.history = history
        self.stop_training = False
        try:
            for cb in callbacks:
                cb.set_model(self)
                cb.on_train_begin()
        except BaseException:
            self.optimizer = previous_optimizer  # a refused fit leaves nothing behind for the next one
            raise
        self._fitting = True
        try:
            return self._fit_guarded(X, y, val if validation_data is not None else None, optimizer, epochs,
                                     batch_size, shuffle, verbose, callbacks, history)
        finally:
            self._fitting = False

    def _fit_guarded(self, X, y, val, optimizer, epochs, batch_size, shuffle, verbose, callbacks,
                     history) -> History:
        guard = TrainingGuard(optimizer, self.named_buffers().values())
        diverged = None
        try:
            with guard:
                self._fit_epochs(X, y, val, optimizer, epochs, batch_size, shuffle, verbose, callbacks, history,
                                 guard)
        except NonFiniteLossError as err:
            err.history, diverged = history, err
        except KeyboardInterrupt:
            if guard.updating:  # a forced stop (a second Ctrl-C) inside optimizer.step: nothing is consistent
                for cb in callbacks:
                    cb.on_train_end()
                raise
            history.interrupted = True
            self.stop_training = True
            if verbose:
                print(f"fit: interrupted; returning the history of {len(history.epoch)} completed epoch(s); "
                      "the model keeps the weights of the last completed step")
        for cb in callbacks:  # also after a NaN stop, so callbacks can restore or save what they hold
            cb.on_train_end()
        if diverged is not None:
            raise diverged
        return history

    def _fit_epochs(self, X, y, val, optimizer, epochs, batch_size, shuffle, verbose, callbacks, history,
                    guard) -> None:
        n = len(X)
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            if shuffle:
                order = self._shuffle_rng.permutation(n)
                Xe, ye = X[order], y[order]  # one gather per epoch keeps every batch contiguous
            else:
                Xe, ye = X, y
            guard.begin_epoch()
            logs = self._run_epoch(Xe, ye, optimizer, batch_size, callbacks,
                                   desc=f"Epoch {epoch + 1}/{epochs}", verbose=verbose, epoch=epoch, guard=guard)
            guard.end_epoch(epoch, steps=-(-n // batch_size))
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate(*val, batch_size=256).items()})
            logs["lr"] = optimizer.lr  # the rate this epoch trained with; a schedule may change it at epoch end
            history.append(logs)
            if verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}"
                                                                   for k, v in logs.items()))
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            guard.check_interrupt()
            if self.stop_training:
                break

    def _run_epoch(self, X, y, optimizer, batch_size, callbacks, desc, verbose, epoch, guard) -> dict[str, float]:
        n = len(X)
        total_loss, seen = 0.0, 0
        # argmax writes straight into one buffer; accuracy is counted only when someone reads it
        preds = np.empty(n, dtype=np.intp)
        bar = tqdm(total=n, desc=desc, unit="sample", disable=verbose != 1, leave=True, mininterval=PROGRESS_INTERVAL)
        last_refresh = time.perf_counter()
        forward_backward, step_fn = self._forward_backward, optimizer.step  # data was checked once, by fit
        for step, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            yb = y[start:stop]
            loss, logits = forward_backward(X[start:stop], yb, False)
            guard.check_step(loss, epoch, step)  # before the update: a NaN step is never applied
            guard.updating = True
            step_fn()
            guard.updating = False
            total_loss += loss * (stop - start)
            logits.argmax(axis=1, out=preds[start:stop])
            seen = stop
            for cb in callbacks:
                cb.on_batch_end(step, {"loss": loss, "size": stop - start})
            if verbose == 1 and (seen == n or time.perf_counter() - last_refresh > PROGRESS_INTERVAL):
                accuracy = np.count_nonzero(preds[:seen] == y[:seen]) / seen
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", accuracy=f"{accuracy:.4f}", refresh=False)
                bar.update(seen - bar.n)
                last_refresh = time.perf_counter()
            guard.check_interrupt()
        bar.close()
        return {"loss": total_loss / n, "accuracy": int(np.count_nonzero(preds == y)) / n}

    def evaluate(self, X: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
        """Mean loss and accuracy on ``(X, y)``, in inference mode."""
        self._require_head("evaluate")
        as_int(batch_size, "batch_size", minimum=1)
        result = self._evaluate(*self._prepare(X, y, "X", "y"), batch_size=batch_size)
        _raise_if_not_finite(np.array(result["loss"]), "evaluate: the loss")
        return result

    def _evaluate(self, X: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
        head = self.head
        total_loss, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            logits = xb
            for layer in self.layers[:-1]:
                logits = layer.forward(logits, training=False)
            total_loss += head.loss(logits, yb) * len(yb)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
        return {"loss": total_loss / len(X), "accuracy": correct / len(X)}

    def predict_proba(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Model outputs for ``X`` (class probabilities with a SoftmaxCE head), computed in chunks."""
        as_int(batch_size, "batch_size", minimum=1)
        X = self._prepare(X, None, "X", None)[0]
        chunks = [self.forward(X[s:s + batch_size]) for s in range(0, len(X), batch_size)]
        out = np.concatenate(chunks)
        _raise_if_not_finite(out, "predict_proba: the outputs")
        return out

    def predict(self, X: Any, batch_size: int = 256) -> np.ndarray:
        """Predicted class index for each sample, shape (N,)."""
        return self.predict_proba(X, batch_size=batch_size).argmax(axis=1)

    # -- input checks --------------------------------------------------------------------
    def _prepare(self, X: Any, y: Any, x_name: str, y_name: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate and convert data once, before any work: float array of the model's dtype, int labels."""
        X = _as_array(X, x_name)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{x_name} must be a numeric array, got {_describe(X)}")
        if X.ndim >= 1 and len(X) == 0:
            raise ValueError(f"{x_name} is empty (shape {X.shape})")
        if not self.built:
            if X.ndim < 2:
                raise ValueError(f"{x_name} must have a batch axis and at least one feature axis, got shape {X.shape}")
            try:
                self.build(X.shape[1:])
            except ValueError as err:
                if X.ndim != 3:
                    raise
                try:  # (N, H, W) images for a model whose first layer wants (C, H, W): one channel
                    self.build((1, *X.shape[1:]))
                except ValueError:
                    raise err from None
        expected = self.input_shape
        if X.ndim == len(expected) and len(expected) == 3 and expected[0] == 1:
            X = X[:, None]  # (N, H, W) images for a single-channel model, as the blog's data is
        if X.shape[1:] != expected or X.ndim != len(expected) + 1:
            raise ValueError(
                f"{x_name} has shape {X.shape}, but the model expects (N, {', '.join(map(str, expected))})"
            )
        with np.errstate(over="ignore"):  # values beyond the dtype's range become inf, reported just below
            X = np.ascontiguousarray(X, dtype=self.dtype)
        bad = np.size(X) - np.count_nonzero(np.isfinite(X))
        if bad:
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
            raise ValueError(
                f"{x_name} contains {bad} NaN or infinite value(s) (first at index {where}) after conversion to "
                f"{self.dtype}; clean or rescale the data"
            )
        if y_name is None:
            return X, None
        y = _as_array(y, y_name)
        if y.ndim != 1 or len(y) != len(X):
            hint = ""
            if y.ndim == 2 and y.shape == (len(X), self.output_shape[0]):
                hint = "; one-hot labels? pass y.argmax(axis=1)"
            raise ValueError(f"{y_name} must have shape ({len(X)},) to match {x_name}, got {y.shape}{hint}")
        if y.dtype.kind == "f":
            fractional = ~np.isfinite(y) | (y != np.round(y))
            if fractional.any():
                raise TypeError(
                    f"{y_name} must hold integer class labels, got dtype {y.dtype} with non-integer values "
                    f"such as {y[fractional][0]}"
                )
            y = y.astype(np.intp)
        if y.dtype.kind not in "biu":
            raise TypeError(
                f"{y_name} must hold integer class labels 0..K-1, got {_describe(y)}; encode other labels first "
                "(e.g. sklearn.preprocessing.LabelEncoder)"
            )
        classes = self.output_shape[0]
        if y.min() < 0 or y.max() >= classes:
            raise ValueError(
                f"{y_name} holds labels in [{y.min()}, {y.max()}], but the model has {classes} classes (0..{classes - 1})"
            )
        return X, y.astype(np.intp, copy=False)

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


def _raise_if_not_finite(values: np.ndarray, what: str) -> None:
    """A NaN or inf result is an error, never a silent answer."""
    if not np.isfinite(values).all():
        raise FloatingPointError(
            f"{what} came out NaN or infinite: the inputs are too large for the model's dtype "
            "or the weights have diverged"
        )


def _as_array(value: Any, arg: str) -> np.ndarray:
    """``np.asarray`` that names the argument when the data is ragged or not array-like."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{arg} could not be made into an array: are its nested sequences of different lengths (ragged)?"
        ) from None


def _describe(a: np.ndarray) -> str:
    if a.dtype == object and a.ndim == 0:
        return f"{type(a.item()).__name__} {a.item()!r}"
    return f"an array of dtype {a.dtype} and shape {a.shape}"
