"""Newest-wins hand-over from a producer (the ROS executor) to one worker thread.

When the model is slower than the camera, queueing frames only adds latency. A single slot
holds the newest item; putting a new one over an unconsumed one drops the old and counts it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestSlot:
    """A one-item, thread-safe mailbox where the newest item replaces an unread one."""

    def __init__(self):
        self._condition = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Offer an item; returns True when it replaced an unread one (which is then dropped)."""
        with self._condition:
            replaced = self._full
            self.dropped += int(replaced)
            self._item, self._full = item, True
            self._condition.notify()
            return replaced

    def get(self, timeout: float | None = None) -> Any:
        """Take the newest item, waiting up to `timeout` s; None on timeout or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._full or self._closed, timeout)
            if not self._full or self._closed:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake and stop all waiters; later gets return None and the unread item is dropped."""
        with self._condition:
            self._closed = True
            self._item, self._full = None, False
            self._condition.notify_all()


class LatestWorker:
    """A daemon thread that runs `handle(item)` on the newest item of a `LatestSlot`.

    Exceptions from `handle` go to `on_error(item, exc)` and the loop continues with the next
    item, so one bad frame never stops processing.
    """

    def __init__(self, handle: Callable[[Any], None], on_error: Callable[[Any, BaseException], None],
                 name: str = 'starpose-worker'):
        self.slot = LatestSlot()
        self._handle = handle
        self._on_error = on_error
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Hand over an item; True when an unprocessed one was dropped for it."""
        return self.slot.put(item)

    @property
    def dropped(self) -> int:
        """Items replaced before the worker got to them."""
        return self.slot.dropped

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the item in progress; returns False if the thread is still busy after `timeout`."""
        self._stopping.set()
        self.slot.close()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            item = self.slot.get()  # sleeps until an item or `stop` (close wakes it): no polling while idle
            if item is None:
                continue
            try:
                self._handle(item)
            except Exception as error:  # noqa: BLE001 - reported, and the next frame is processed
                self._on_error(item, error)
