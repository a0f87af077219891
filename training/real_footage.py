"""Real footage with people, fetched from the Debian archive into a cache, with a fixed split.

`vtest.avi` (OpenCV's sample clip, BSD-3-Clause like OpenCV: a static camera over a pedestrian
street, 768x576, 10 fps, 795 frames, people about 60-140 px tall) ships in Debian's `opencv-doc`
package. Frames 0-299 are the **test** split: nothing is trained or tuned on them. Frames 300-744
train, 745-794 validate (where to stop, which checkpoint to keep).

    starpose-fetch-footage            # prints the cached path, fetching on first use
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VTEST_MEMBER = './usr/share/doc/opencv-doc/examples/data/vtest.avi'
VTEST_FRAMES = 795
SPLITS = {'test': range(0, 300), 'train': range(300, 745), 'val': range(745, 795)}


class FootageError(RuntimeError):
    """The footage cannot be fetched; the message says why and what to do."""


def cache_dir() -> Path:
    """`$STARPOSE_CACHE`, else `$XDG_CACHE_HOME/starpose`, else `~/.cache/starpose`."""
    if os.environ.get('STARPOSE_CACHE'):
        return Path(os.environ['STARPOSE_CACHE'])
    base = os.environ.get('XDG_CACHE_HOME') or str(Path.home() / '.cache')
    return Path(base) / 'starpose'


def fetch_vtest(cache: Path | None = None) -> Path:
    """Path of the cached `vtest.avi`, downloading `opencv-doc` with apt-get on first use."""
    target = (cache or cache_dir()) / 'vtest.avi'
    if target.is_file():
        return target
    for tool in ('apt-get', 'dpkg-deb', 'tar'):
        if shutil.which(tool) is None:
            raise FootageError(f'fetching vtest.avi needs {tool} (Debian/Ubuntu); or copy vtest.avi to {target}')
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        _run(['apt-get', 'download', 'opencv-doc'], tmp)
        debs = sorted(Path(tmp).glob('opencv-doc_*.deb'))
        if not debs:
            raise FootageError('apt-get download opencv-doc produced no .deb (is the package index reachable?)')
        deb = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', str(debs[0])], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        tar = subprocess.run(['tar', '-x', '-C', tmp, VTEST_MEMBER], stdin=deb.stdout, capture_output=True,
                             check=False)
        deb.stdout.close()
        deb_err = deb.stderr.read()
        deb.wait()
        if deb.returncode or tar.returncode:
            raise FootageError(f'extracting vtest.avi from {debs[0].name} failed: '
                               f'{(deb_err or tar.stderr).decode(errors="replace").strip()}')
        os.replace(Path(tmp) / VTEST_MEMBER, target)
    return target


def _run(command: list[str], cwd: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ['no output'])[-1]
        raise FootageError(f"{' '.join(command)} failed: {last}")


def main(argv: list[str] | None = None) -> int:
    """`starpose-fetch-footage`: fetch vtest.avi into the cache and print its path and split."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cache', type=Path, default=None, help='cache folder (default: %(default)s -> '
                        f'{cache_dir()})')
    args = parser.parse_args(argv)
    try:
        path = fetch_vtest(args.cache)
    except FootageError as error:
        print(f'starpose-fetch-footage: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the clip is moved into the cache only when complete
        print('starpose-fetch-footage: interrupted; the cache is unchanged', file=sys.stderr)
        return 130
    print(path)
    for name, frames in SPLITS.items():
        print(f'  {name}: frames {frames.start}-{frames.stop - 1}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
