"""Files that appear whole or not at all: every model, engine and checkpoint writer goes through here.

A writer fills a temporary file beside the target and renames it over the target (atomic on one
file system), so a crash, a full disk or Ctrl-C never leaves half a file where a reader looks.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto `path` if the block succeeds and removed if not.

    The temporary is created on entry, so an unwritable folder fails before any work is done.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through `atomic_path`."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
