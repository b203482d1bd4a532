"""StopRequest: the first SIGINT/SIGTERM only asks for a stop, the second stops at once, and the
previous handlers come back afterwards. Real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from e5rag.training.interrupt import StopRequest


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_asks_second_stops_and_handlers_are_restored(signum):
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        with StopRequest() as stop:
            os.kill(os.getpid(), signum)
            assert stop.requested and stop.signum == signum  # the run goes on to the end of its step
            os.kill(os.getpid(), signum)
            pytest.fail("the second signal did not stop at once")
    assert signal.getsignal(signum) is before


def test_outside_the_main_thread_nothing_is_installed():
    seen = {}

    def run():
        with StopRequest() as stop:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["requested"] = stop.requested

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "requested": False}
