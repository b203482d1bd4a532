"""Progress for people and for logs: a tqdm bar on a terminal, a periodic one-line report elsewhere.

A bar redrawn with carriage returns turns a log file into one endless line, so when the stream is
not a terminal ``progress`` returns a ``LineProgress`` that prints a plain line every
``E5RAG_PROGRESS_SECONDS`` seconds (default 30) from a timer thread, so a line comes even while one
long step (a batch of generations) runs; 0 prints on every update instead.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

DEFAULT_EVERY_S = 30.0


def progress_interval() -> float:
    """Seconds between progress lines: ``$E5RAG_PROGRESS_SECONDS`` if set, else 30."""
    raw = os.environ.get("E5RAG_PROGRESS_SECONDS", "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_EVERY_S
    except ValueError:
        return DEFAULT_EVERY_S


class LineProgress:
    """A tqdm-like counter (``update``, ``close``, context manager) that prints
    ``"{desc}: {n}/{total} {unit} (p%), r {unit}/s, {elapsed} s[, status()]"`` lines: every
    ``every_s`` seconds until closed, or on every update when ``every_s`` is 0."""

    def __init__(self, total: int, desc: str, unit: str, *, initial: int = 0, every_s: float | None = None,
                 stream: IO[str] | None = None, status: Callable[[], str] | None = None) -> None:
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, int(initial)
        self.every_s = progress_interval() if every_s is None else float(every_s)
        self.stream = stream if stream is not None else sys.stderr
        self.status = status
        self._initial = self.n
        self._start = time.monotonic()
        self._printed_n: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._timer: threading.Thread | None = None
        if self.every_s > 0:
            self._timer = threading.Thread(target=self._every, name=f"progress-{desc}", daemon=True)
            self._timer.start()

    def _every(self) -> None:
        while not self._closed.wait(self.every_s):
            self.print_line()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.every_s <= 0:
            self.print_line()

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        extra = f", {self.status()}" if self.status is not None else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}, {_rate(rate)} {self.unit}/s, {elapsed:.0f} s{extra}"

    def print_line(self) -> None:
        with self._lock:
            print(self.line(), file=self.stream, flush=True)
            self._printed_n = self.n

    def close(self) -> None:
        """Stop the timer; a last line if lines were printed and the count moved since (short runs
        stay quiet)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._timer is not None:
            self._timer.join()
        if self._printed_n is not None and self._printed_n != self.n:
            self.print_line()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int, desc: str, unit: str, *, initial: int = 0, enabled: bool = True,
             stream: IO[str] | None = None, status: Callable[[], str] | None = None) -> Any:
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a ``LineProgress``; a disabled
    tqdm when not ``enabled``. All three take ``update(n)`` and work as context managers."""
    stream = stream if stream is not None else sys.stderr
    if enabled and not _isatty(stream):
        return LineProgress(total, desc, unit, initial=initial, stream=stream, status=status)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, file=stream)


def _rate(per_s: float) -> str:
    """Two significant digits for slow rates (0.014), whole numbers for fast ones (312)."""
    return f"{per_s:.0f}" if per_s >= 10 else f"{per_s:.2g}"


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False
