"""Harness cases for the harness tests: each call appends its case name to a shared log file."""
from __future__ import annotations

import os
import time

from benchmarks.harness import Timed


class Logged:
    """Sleeps `seconds` per call and logs `name`; returns its own time when `self_timed`."""

    def __init__(self, name: str, log: str, seconds: float, self_timed: bool):
        self.name, self.log, self.seconds, self.self_timed, self.calls = name, log, seconds, self_timed, 0

    def __call__(self):
        """One call: log, sleep."""
        with open(self.log, 'a') as log:
            log.write(f'{self.name} {os.getpid()}\n')
        time.sleep(self.seconds)
        self.calls += 1
        return Timed(0.5) if self.self_timed else None

    def extras(self) -> dict:
        """How many calls this case saw (warm-up included)."""
        return {'calls': self.calls, 'pid': os.getpid()}


def logged(threads: int, name: str, log: str, seconds: float = 0.002, self_timed: bool = False) -> Logged:
    """Harness factory of `Logged`."""
    return Logged(name, log, seconds, self_timed)
