"""Pair camera images with their detections by exact header stamp, with bounded buffers.

Images and detections for the same camera frame carry the same header stamp (a detector node
copies its input's header). Either side may arrive first, and a detector may lag by a few
frames, so both sides wait in small buffers. Once a stamp is paired, anything older still
waiting can no longer be paired in order and is expired. Items older than the last pair are
out of order and dropped; a run of them (a replayed or restarted stream) resets the pairer.
Every dropped item is counted, nothing grows without bound.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class PairingCounters:
    """What the pairer has dropped and why (monotonic, for diagnostics)."""

    paired: int = 0
    expired_images: int = 0  # no detections arrived before a newer pair or the buffer overflowed
    expired_detections: int = 0
    out_of_order_images: int = 0  # stamp older than the last pair: dropped
    out_of_order_detections: int = 0
    duplicate_images: int = 0  # same stamp twice on one side: the second is dropped
    duplicate_detections: int = 0
    restarts: int = 0  # stamps jumped back for a run of items: buffers cleared, pairing restarted

    def as_dict(self) -> dict[str, int]:
        """Counters by name, for diagnostics messages and reports."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Pair:
    """An image and its detections (None in images-only mode) sharing one stamp."""

    stamp_ns: int
    image: Any
    detections: Any


class StampPairer:
    """Exact-stamp pairing of two streams with at most `max_pending` items waiting per side.

    With `images_only` (a built-in detector instead of a detection topic) every in-order image
    is returned at once with `detections=None`. Not thread-safe: call from one thread.
    """

    def __init__(self, max_pending: int = 30, images_only: bool = False, restart_after: int = 5):
        if max_pending < 1:
            raise ValueError(f'max_pending must be >= 1, got {max_pending}')
        if restart_after < 1:
            raise ValueError(f'restart_after must be >= 1, got {restart_after}')
        self.max_pending = max_pending
        self.images_only = images_only
        self.restart_after = restart_after
        self.counters = PairingCounters()
        self._images: dict[int, Any] = {}
        self._detections: dict[int, Any] = {}
        self._last_paired: int | None = None
        self._backwards_run = {'images': 0, 'detections': 0}

    @property
    def pending(self) -> tuple[int, int]:
        """Numbers of images and detection sets waiting for their partner."""
        return len(self._images), len(self._detections)

    def reset(self) -> None:
        """Forget everything waiting and the last paired stamp (e.g. after a time jump)."""
        self.counters.expired_images += len(self._images)
        self.counters.expired_detections += len(self._detections)
        self._images.clear()
        self._detections.clear()
        self._last_paired = None
        self._backwards_run = {'images': 0, 'detections': 0}

    def add_image(self, stamp_ns: int, image: Any) -> Pair | None:
        """Offer an image; return its pair if the detections are already here (or not needed)."""
        if not self._accept('images', stamp_ns):
            return None
        if self.images_only:
            return self._emit(stamp_ns, image, None)
        if stamp_ns in self._detections:
            return self._emit(stamp_ns, image, self._detections.pop(stamp_ns))
        return self._wait('images', stamp_ns, image)

    def add_detections(self, stamp_ns: int, detections: Any) -> Pair | None:
        """Offer the detections of one frame; return the pair if its image is already here."""
        if self.images_only:
            self.counters.expired_detections += 1
            return None
        if not self._accept('detections', stamp_ns):
            return None
        if stamp_ns in self._images:
            return self._emit(stamp_ns, self._images.pop(stamp_ns), detections)
        return self._wait('detections', stamp_ns, detections)

    def _accept(self, side: str, stamp_ns: int) -> bool:
        """Drop duplicates and items older than the last pair; restart after a run of the latter."""
        waiting = self._images if side == 'images' else self._detections
        if stamp_ns in waiting:
            self._count(f'duplicate_{side}')
            return False
        if self._last_paired is not None and stamp_ns <= self._last_paired:
            self._backwards_run[side] += 1
            if self._backwards_run[side] < self.restart_after:
                name = f'out_of_order_{side}' if stamp_ns < self._last_paired else f'duplicate_{side}'
                self._count(name)
                return False
            self.counters.restarts += 1
            self.reset()
        self._backwards_run[side] = 0
        return True

    def _count(self, name: str, amount: int = 1) -> None:
        setattr(self.counters, name, getattr(self.counters, name) + amount)

    def _wait(self, side: str, stamp_ns: int, item: Any) -> None:
        waiting = self._images if side == 'images' else self._detections
        waiting[stamp_ns] = item
        while len(waiting) > self.max_pending:
            oldest = min(waiting)
            del waiting[oldest]
            self._count(f'expired_{side}')
        return None

    def _emit(self, stamp_ns: int, image: Any, detections: Any) -> Pair:
        """Record the pair and expire everything older that is still waiting on either side."""
        self._last_paired = stamp_ns
        self.counters.paired += 1
        for side, waiting in (('images', self._images), ('detections', self._detections)):
            stale = [stamp for stamp in waiting if stamp < stamp_ns]
            for stamp in stale:
                del waiting[stamp]
            self._count(f'expired_{side}', len(stale))
        return Pair(stamp_ns, image, detections)
