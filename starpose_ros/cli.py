"""argparse value types of the command-line tools: a bad number is argparse's one-line error.

Also the check that an output can be created, made before any expensive work.
"""
from __future__ import annotations

import argparse
import math
import os
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
