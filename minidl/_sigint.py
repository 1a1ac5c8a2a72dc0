"""Ctrl-C held back while the command line imports what it needs, then reported as one.

A ``KeyboardInterrupt`` raised in the middle of an import does not always surface as one: NumPy's C
start-up turns it into "PyCapsule_Import could not import module 'datetime' … bad install", and a
module left half-initialised makes a later import fail with a traceback of its own. So from the start
of ``python -m minidl`` until the command's modules are loaded, SIGINT only sets a flag;
:meth:`HeldInterrupt.release` then raises the ``KeyboardInterrupt`` at a point where it is one, and the
command line prints ``minidl: interrupted`` and exits with status 130. Standard library only.
"""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["HeldInterrupt", "HELD"]


class HeldInterrupt:
    """Holds SIGINT from :meth:`hold` until :meth:`release` (which raises ``KeyboardInterrupt`` if one came)."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    @property
    def holding(self) -> bool:
        return self._previous is not None

    def hold(self) -> None:
        """Start holding, unless already holding, off the main thread, or under a handler not Python's default
        (SIGINT ignored under ``nohup``, or the user's own handler: both are respected)."""
        if self.holding or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        try:
            self._previous = signal.signal(signal.SIGINT, self._hold)
        except ValueError:  # not the main thread, where only the main thread's handler could hold it
            pass

    def _hold(self, signum: int, frame: Any) -> None:
        self.received = True

    def release(self) -> None:
        """Restore the previous handler; raise ``KeyboardInterrupt`` if SIGINT came while holding."""
        if self.holding:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if self.received:
            self.received = False
            raise KeyboardInterrupt


#: The command line's one instance: started by ``minidl/__init__.py`` under ``python -m minidl`` (or by
#: :func:`minidl.cli.main`), released by ``main`` once the command's modules are imported.
HELD = HeldInterrupt()
