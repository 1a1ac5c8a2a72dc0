"""What ``fit`` shows while it trains: a tqdm progress bar per epoch, or one line per epoch."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress", "PROGRESS_INTERVAL"]

#: How often (seconds) fit refreshes its progress bar; formatting it every step would cost more than a step.
PROGRESS_INTERVAL = 0.1


class Progress:
    """What ``fit`` shows: ``verbose`` 0 nothing, 1 a progress bar per epoch, 2 one line per epoch."""

    def __init__(self, verbose: int, epochs: int) -> None:
        self.verbose, self.epochs = verbose, epochs
        self._bar: Any = None
        self._last_refresh = 0.0

    def begin_epoch(self, epoch: int, samples: int | None) -> None:
        self._bar = tqdm(total=samples, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="sample",
                         disable=self.verbose != 1, leave=True, mininterval=PROGRESS_INTERVAL)
        self._last_refresh = time.perf_counter()

    def due(self, seen: int) -> bool:
        """Whether the bar wants fresh figures after ``seen`` samples (cheap: called every step)."""
        return self.verbose == 1 and (seen == self._bar.total
                                      or time.perf_counter() - self._last_refresh > PROGRESS_INTERVAL)

    def update(self, seen: int, logs: dict[str, float]) -> None:
        self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
        self._bar.update(seen - self._bar.n)
        self._last_refresh = time.perf_counter()

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.verbose == 1:  # as in Keras, the finished bar shows the epoch's every metric, val_* included
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "lr"}, refresh=False)
        self._bar.close()
        if self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs}: " + ", ".join(
                f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}" for k, v in logs.items()))

    def interrupted(self, epochs_done: int) -> None:
        if self.verbose:
            print(f"fit: interrupted; returning the history of {epochs_done} completed epoch(s); "
                  "the model keeps the weights of the last completed step")
