"""Re-reads the aliases a worker follows (the served one and SHADOW_ALIAS) every MODEL_REFRESH_S on a
thread of its own, posts or not: an idle worker names a promotion within MODEL_REFRESH_S plus the load,
and the first post after it does not pay the load."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class AliasFollower:
    """Runs each look (name -> callable) every `interval_s` on a daemon thread. A look that fails keeps
    what was loaded; the failure is logged once (again only when it changes), its recovery too."""

    MIN_INTERVAL_S = 0.2  # MODEL_REFRESH_S=0 (look at every batch) must not spin on the database

    def __init__(self, looks: dict[str, Callable[[], None]], interval_s: float) -> None:
        self.looks = looks
        self.interval_s = max(interval_s, self.MIN_INTERVAL_S)
        self._failing: dict[str, str] = {}  # look -> the error logged
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topicq-alias-follower", daemon=True)

    def start(self) -> AliasFollower:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """No look after this returns (unless one outlasts `timeout_s`): a stopped worker reports nothing."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:  # a first look at once: a challenger is loaded before the first batch
            for name, look in self.looks.items():
                if self._stopping.is_set():
                    return
                self._look(name, look)
            if self._stopping.wait(self.interval_s):
                return

    def _look(self, name: str, look: Callable[[], None]) -> None:
        try:
            look()
        except Exception as exc:  # noqa: BLE001 - the worker keeps serving what it loaded
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self._failing.get(name) != error:
                self._failing[name] = error
                log.warning("cannot re-read %s, keeping what is loaded: %s", name, error)
            return
        if self._failing.pop(name, None) is not None:
            log.info("re-reading %s again", name)
