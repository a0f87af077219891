"""Linear (SCLeakyReLU) vs softmax attention: time and peak memory as the token count doubles.

Tokens are those of the paper configuration: one per 8x8 patch per frame, so a 5-frame window
gives 240 tokens at 64x48 and 960 at 128x96; the sweep doubles on through the per-pixel cases
(15360 = 64x48x5, 61440 = 128x96x5), where softmax attention explodes. Heads and head size are
the paper's too: 8 heads x 3 multi-scale token groups = 24 heads of 32 dims, batch 1.

Compared side by side, each on the same Q, K, V:
- ``linear``: ``starpose_model.attention.linear_attention`` (associative order, float32 sums);
- ``softmax``: the textbook ``softmax(Q K^T / sqrt(d)) V`` with the N x N matrix materialised;
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's fused kernel: still
  O(N^2) time, but it never holds the whole N x N matrix).
A softmax case whose N x N matrices would exceed ``--softmax-mem-gb`` or whose time, extrapolated
quadratically from the previous size, would exceed ``--max-seconds`` is not run; its time is
reported as that estimate (marked ``~``).

Peak memory is the rise of the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` before each case) over the resident set before it, so it counts every
tensor the call creates. Large tensors are mmap-backed and go back to the OS on free, which keeps
the cases independent.

Usage: ``python benchmarks/bench_attention.py [--max-tokens 61440] [--out outputs/bench_attention.json]``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from starpose_model.attention import SCLeakyReLU, linear_attention

HEADS = 24
HEAD_DIM = 32
PATCH = 8
WINDOW = 5
NAMED_SIZES = {
    WINDOW * (64 // PATCH) * (48 // PATCH): '64x48x5, 8x8 patches',
    WINDOW * (128 // PATCH) * (96 // PATCH): '128x96x5, 8x8 patches',
    WINDOW * 64 * 48: '64x48x5, per pixel',
    WINDOW * 128 * 96: '128x96x5, per pixel',
}


def _status_kb(field: str) -> int | None:
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
        return True
    except OSError:
        return False


def measure(fn, repeats: int, min_total_seconds: float = 1.0) -> tuple[float, float | None]:
    """Fastest call time and the peak memory rise in MiB.

    At least ``repeats`` timed calls after one warm-up, more (up to 50) while their total is under
    ``min_total_seconds``; the minimum is the figure least disturbed by other load on a shared CPU.
    """
    fn()
    times = []
    while len(times) < repeats or (sum(times) < min_total_seconds and len(times) < 50):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    peak_mib = None
    if _reset_peak():
        before = _status_kb('VmRSS')
        result = fn()
        peak = _status_kb('VmHWM')
        del result
        if before is not None and peak is not None:
            peak_mib = max(0, peak - before) / 1024
    return min(times), peak_mib


def softmax_attention(q, k, v):
    """Textbook softmax attention with the N x N score matrix materialised."""
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return scores.softmax(dim=-1) @ v


def run(max_tokens: int, max_seconds: float, softmax_mem_gb: float, repeats: int) -> list[dict]:
    kernel = SCLeakyReLU()
    methods = {
        'linear': lambda q, k, v: linear_attention(q, k, v, kernel),
        'softmax': softmax_attention,
        'sdpa': F.scaled_dot_product_attention,
    }
    rows = []
    previous: dict[str, tuple[int, float]] = {}
    tokens = WINDOW * (64 // PATCH) * (48 // PATCH)
    gen = torch.Generator().manual_seed(0)
    while tokens <= max_tokens:
        q, k, v = (torch.randn(1, HEADS, tokens, HEAD_DIM, generator=gen) for _ in range(3))
        row = {'tokens': tokens, 'case': NAMED_SIZES.get(tokens, '')}
        with torch.no_grad():
            for name, fn in methods.items():
                estimate = None
                if name in previous:
                    last_tokens, last_seconds = previous[name]
                    power = 1 if name == 'linear' else 2
                    estimate = last_seconds * (tokens / last_tokens) ** power
                matrix_gb = 2 * HEADS * tokens ** 2 * 4 / 1e9  # scores + softmax output, float32
                too_big = name == 'softmax' and matrix_gb > softmax_mem_gb
                if name != 'linear' and (too_big or (estimate is not None and estimate > max_seconds)):
                    row[name] = {'seconds': estimate, 'peak_mib': None, 'measured': False,
                                 'skipped_because': f'N x N matrices {matrix_gb:.1f} GB' if too_big
                                 else f'estimated {estimate:.1f} s > {max_seconds} s'}
                    previous[name] = (tokens, estimate)
                    continue
                seconds, peak = measure(lambda fn=fn, q=q, k=k, v=v: fn(q, k, v), repeats)
                row[name] = {'seconds': seconds, 'peak_mib': peak, 'measured': True}
                previous[name] = (tokens, seconds)
        rows.append(row)
        print(_format_row(row), flush=True)
        tokens *= 2
    return rows


def _cell(entry: dict) -> str:
    ms = entry['seconds'] * 1e3
    mark = '' if entry['measured'] else '~'
    mem = '' if entry['peak_mib'] is None else f" {entry['peak_mib']:.0f}M"
    return f'{mark}{ms:.3g}ms{mem}'


def _format_row(row: dict) -> str:
    linear = row['linear']['seconds']
    ratios = ' '.join(f"{row[m]['seconds'] / linear:>8.1f}x" for m in ('softmax', 'sdpa'))
    return (f"{row['tokens']:>7} {row['case']:<22} {_cell(row['linear']):>16} {_cell(row['softmax']):>18} "
            f"{_cell(row['sdpa']):>18} {ratios}")


def summarise(rows: list[dict]) -> dict:
    """Growth of linear attention per doubling and its speed-up at the paper's 128x96x5 size."""
    linear = [r['linear']['seconds'] for r in rows]
    growth = [b / a for a, b in zip(linear, linear[1:], strict=False)]
    # Below ~4k tokens per-call overhead dominates the tiny products; judge growth where work dominates.
    large = [g for r, g in zip(rows[1:], growth, strict=False) if r['tokens'] > 3840]
    by_tokens = {r['tokens']: r for r in rows}
    summary = {'linear_growth_per_doubling': growth, 'max_growth_above_3840_tokens': max(large) if large else None}
    for tokens, label in NAMED_SIZES.items():
        if tokens in by_tokens:
            row = by_tokens[tokens]
            summary[label] = {m: row[m]['seconds'] / row['linear']['seconds'] for m in ('softmax', 'sdpa')}
            summary[label]['estimated'] = [m for m in ('softmax', 'sdpa') if not row[m]['measured']]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--max-tokens', type=int, default=WINDOW * 128 * 96, help='largest token count (doubling)')
    parser.add_argument('--max-seconds', type=float, default=10.0, help='skip softmax cases estimated slower')
    parser.add_argument('--softmax-mem-gb', type=float, default=2.0, help='skip materialised N x N above this')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', type=Path, default=Path('outputs/bench_attention.json'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'batch 1, {HEADS} heads x {HEAD_DIM} dims, float32, {args.threads} threads; '
          'cell = fastest time and peak memory rise; ratios = time / linear time (~ = extrapolated, not run)')
    print(f"{'tokens':>7} {'case':<22} {'linear':>16} {'softmax (N x N)':>18} {'sdpa':>18} {'softmax/lin':>9} "
          f"{'sdpa/lin':>9}")
    rows = run(args.max_tokens, args.max_seconds, args.softmax_mem_gb, args.repeats)
    summary = summarise(rows)
    print('linear growth per doubling:', ' '.join(f'{g:.2f}' for g in summary['linear_growth_per_doubling']))
    print(f"max growth per doubling above 3840 tokens: {summary['max_growth_above_3840_tokens']:.2f} (target <= 2.2)")
    for label in NAMED_SIZES.values():
        if label in summary:
            entry = summary[label]
            print(f"{label}: softmax/linear {entry['softmax']:.1f}x, sdpa/linear {entry['sdpa']:.1f}x"
                  + (f" (estimated: {', '.join(entry['estimated'])})" if entry['estimated'] else ''))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        'config': {'heads': HEADS, 'head_dim': HEAD_DIM, 'batch': 1, 'dtype': 'float32', 'threads': args.threads,
                   'cpu_count': os.cpu_count(), 'torch': torch.__version__, 'patch': PATCH, 'window': WINDOW},
        'rows': rows, 'summary': summary}, indent=2, default=lambda x: None if isinstance(x, float) and
        math.isnan(x) else x))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
