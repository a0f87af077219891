"""What the command-line tools share: argparse value types, the output check, SIGTERM handling.

A bad number is argparse's one-line error; an output that cannot be created is refused before any
expensive work; SIGTERM (`timeout`, `docker stop`) ends a tool like Ctrl-C, so its outputs close.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
from pathlib import Path


def count(minimum: int):
    """Integers >= `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be >= {minimum}, got {value}')
        return value
    return parse


def number(low: float, high: float = math.inf):
    """Floats in [low, high] (NaN is refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f'must be in [{low:g}, {high:g}], got {text}')
        return value
    return parse


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so one `except KeyboardInterrupt` handles both."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def creatable(path: Path) -> str | None:
    """Why `path` cannot be created (its nearest existing parent is not a writable folder), or None."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f'{parent} is a file, not a folder'
    if not os.access(parent, os.W_OK | os.X_OK):
        return f'{parent} is not writable'
    return None
