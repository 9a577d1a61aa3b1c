"""The loop watchdog: a warning, naming the attempts, when the event loop stops answering.

An `async def` task that blocks (`time.sleep`, a blocking socket, a long computation)
stops everything the loop does: the API, the scheduler, the other async tasks. The
watchdog is a thread that, while attempts run in the loop, asks the loop to run a
no-op every `threshold / 10` seconds; a request not answered within `threshold` seconds
means the loop is blocked, and the warning names the attempts running in it (one of
them is the culprit). A second line says how long the loop was blocked once it answers.
While no attempt runs in the loop the thread sleeps on an event and costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

THRESHOLD = 1.0  # seconds without an answer before the loop counts as blocked
ADVICE = ("an async task must not block: await anyio.sleep() instead of time.sleep(), "
          "or make it a plain def (it then runs in a worker process)")


class LoopWatchdog:
    def __init__(self, running: Callable[[], list[str]], *, threshold: float = THRESHOLD
                 ) -> None:
        self.running = running  # the attempts running in the loop now, by reference
        self.threshold = threshold
        self._watch = threading.Event()  # set while attempts may run in the loop
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start watching the running loop (call from it)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="dagd loop watchdog",
                                        daemon=True)
        self._thread.start()

    def attempt_started(self) -> None:
        """An attempt started in the loop: watch it (cheap when already watching)."""
        if not self._watch.is_set():
            self._watch.set()

    def stop(self) -> None:
        self._stopping.set()
        self._watch.set()
        if self._thread is not None:
            self._thread.join(timeout=self.threshold * 2)

    def _run(self) -> None:
        assert self._loop is not None
        answered = threading.Event()
        while not self._stopping.is_set():
            if not self.running():
                self._watch.clear()
                if not self.running():  # none started between the look and the clear
                    self._watch.wait()
                continue
            answered.clear()
            asked = time.monotonic()
            try:
                self._loop.call_soon_threadsafe(answered.set)
            except RuntimeError:
                return  # the loop is closed
            if not answered.wait(self.threshold):
                self._blocked(answered, asked)
            self._stopping.wait(self.threshold / 10)

    def _blocked(self, answered: threading.Event, asked: float) -> None:
        names = ", ".join(self.running()) or "none (dagd's own code)"
        log.warning("the event loop has not answered for %.1fs: the API and the scheduler "
                    "are stalled; running in the loop: %s (%s)",
                    time.monotonic() - asked, names, ADVICE)
        while not answered.wait(self.threshold) and not self._stopping.is_set():
            pass
        if answered.is_set():
            log.warning("the event loop was blocked for %.1fs; running in the loop: %s",
                        time.monotonic() - asked, names)
