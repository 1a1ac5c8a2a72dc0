"""Hooks into ``Sequential.fit``, the Keras way, and the ``History`` that ``fit`` returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Sequential


class History(dict):
    """Per-epoch metrics: ``history["loss"][e]``; ``history.history`` is the same dict, as in Keras."""

    @property
    def history(self) -> dict[str, list[float]]:
        return self

    @property
    def epoch(self) -> list[int]:
        return list(range(len(self.get("loss", []))))

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.setdefault(key, []).append(value)


class Callback:
    """Subclass and override any hook. ``self.model`` is set before training starts.

    Setting ``model.stop_training = True`` in a hook ends ``fit`` after the current epoch.
    """

    model: Sequential

    def set_model(self, model: Sequential) -> None:
        self.model = model

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None: ...

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...
