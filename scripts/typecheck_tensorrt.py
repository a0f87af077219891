"""Type-check the modules that call TensorRT against tensorrt-stubs with mypy (no GPU needed).

    python scripts/typecheck_tensorrt.py            # the modules in mypy-tensorrt.ini
    python scripts/typecheck_tensorrt.py FILE...    # other files, same stubs and settings

tensorrt-stubs 10.13 installs as a plain `tensorrt` package without a `py.typed` marker, and
four of its signatures are not valid Python (parameters named `in`, a required parameter after
defaulted ones), so mypy would skip or reject it. A repaired copy is written to
build/typecheck-stubs and given to mypy through MYPYPATH; the repairs touch only those lines.
"""
from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'mypy-tensorrt.ini'
STUB_PACKAGES = ('tensorrt', 'tensorrt_bindings')
# (pattern, replacement) pairs that turn the stub's invalid signatures into valid ones.
REPAIRS = ((re.compile(r'(?<=[(,] )in: '), 'in_: '),
           (re.compile(r'(channel_axis: int)\)'), r'\1 = ...)'))


def repaired_stubs(target: Path = ROOT / 'build' / 'typecheck-stubs') -> Path:
    """Copy the installed tensorrt-stubs to `target` with the invalid signatures repaired."""
    site = Path(sysconfig.get_paths()['purelib'])
    for package in STUB_PACKAGES:
        stubs = sorted((site / package).glob('*.pyi'))
        if not stubs:
            raise SystemExit(f'typecheck: {site / package} has no .pyi files; '
                             'install requirements-typecheck.txt (bash scripts/setup.sh)')
        (target / package).mkdir(parents=True, exist_ok=True)
        for stub in stubs:
            text = stub.read_text()
            for pattern, replacement in REPAIRS:
                text = pattern.sub(replacement, text)
            (target / package / stub.name).write_text(text)
    return target


def run(files: list[str] | None = None) -> tuple[int, str]:
    """Run mypy with mypy-tensorrt.ini on `files` (default: its own list); (exit status, report)."""
    from mypy import api

    os.environ['MYPYPATH'] = str(repaired_stubs())
    stdout, stderr, status = api.run(['--config-file', str(CONFIG), *(files or [])])
    return status, stdout + stderr


if __name__ == '__main__':
    exit_status, report = run(sys.argv[1:])
    print(report, end='')
    sys.exit(exit_status)
