"""How long each stage of a command took, and a spinner for stages that run long.

``--verbose`` prints the time of every stage on stderr when the command ends. A stage that is
still running after :data:`SPINNER_AFTER` seconds shows a rich spinner on stderr (terminals
only; nothing is drawn into a pipe or a file), so a quick command draws nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from rich.console import Console

SPINNER_AFTER = 2.0


class StageClock:
    def __init__(self, *, verbose: bool, console: Console | None = None):
        self.verbose = verbose
        self.console = console or Console(stderr=True)
        self.timings: list[tuple[str, float]] = []
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        spinner = _DelayedSpinner(self.console, name) if self.console.is_terminal else None
        try:
            yield
        finally:
            if spinner is not None:
                spinner.stop()
            self.timings.append((name, time.perf_counter() - start))

    def note(self, text: str) -> None:
        """A line said only with --verbose (e.g. whether the cache was used)."""
        if self.verbose:
            self.console.print(text, highlight=False)

    def report(self) -> None:
        if not self.verbose:
            return
        total = time.perf_counter() - self._started
        for name, seconds in self.timings:
            self.console.print(f"[dim]time[/dim] {name:<28} {seconds:8.3f} s", highlight=False)
        self.console.print(f"[dim]time[/dim] {'total (since start)':<28} {total:8.3f} s",
                           highlight=False)


class _DelayedSpinner:
    """A rich status that appears only if the stage outlives the delay."""

    def __init__(self, console: Console, name: str):
        self._lock = threading.Lock()
        self._status = console.status(f"{name}\u2026")
        self._done = False
        self._timer = threading.Timer(SPINNER_AFTER, self._start)
        self._timer.daemon = True
        self._timer.start()

    def _start(self) -> None:
        with self._lock:
            if not self._done:
                self._status.start()

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._status.stop()
