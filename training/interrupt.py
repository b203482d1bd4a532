"""Stop a training run cleanly on Ctrl-C or SIGTERM: finish the step, checkpoint, exit.

The first SIGINT/SIGTERM only sets a flag. Each step reads it after its optimizer update, summed over
ranks with the step's metrics (so every rank stops after the same step); the loop then writes a
checkpoint of the finished steps and raises ``TrainingStopped``; ``--resume latest`` continues exactly there. A
second signal restores the previous handler and stops at once, as Ctrl-C normally does.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(KeyboardInterrupt):
    """The run stopped on a signal after checkpointing; ``signum`` is the signal, ``checkpoint`` the folder."""

    def __init__(self, message: str, signum: int, checkpoint: str | None) -> None:
        super().__init__(message)
        self.signum, self.checkpoint = signum, checkpoint


class StopRequest:
    """Context manager: while active, SIGINT/SIGTERM set ``signum`` instead of ending the process.
    Inactive (never set) outside the main thread, where Python cannot install handlers."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: stopping after this step with a checkpoint (send it again to stop at once)",
                    signal.Signals(signum).name)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
