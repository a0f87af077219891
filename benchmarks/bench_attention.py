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

Two phases, each in a child process with the same settings:
- time: the methods at one token count in interleaved rounds (`benchmarks/harness.py`, one
  process: they share PyTorch's pool and never run at once), with glibc's malloc told to keep freed memory
  (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``/``MALLOC_TOP_PAD_``). With glibc's
  defaults every tensor over the mmap threshold is a fresh mapping whose pages are zero-filled
  on first touch at each call; beyond ~10k tokens that kernel work outgrows the arithmetic and
  hides the algorithm's scaling (the reason PyTorch keeps a caching allocator on GPUs).
- memory: one call per case with glibc's defaults, so freed tensors go back to the OS and the
  rise of the process's peak resident set (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``) over the resident set before the call counts every tensor the call
  creates.

Headlines: per-round ratios sdpa/linear (the baseline a reader would pick) and naive/linear,
and the growth per doubling of linear attention fitted once per round (its spread).

Usage: ``python benchmarks/bench_attention.py [--max-tokens 61440] [--quick] [--out outputs/bench_attention.json]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy
import torch
import torch.nn.functional as F
from harness import Case, Plan, compare, fmt_spread, machine, quick_plan, ratio, report, spread

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


def peak_rise_mib(fn) -> float | None:
    """Rise of the peak resident set during one call, in MiB (None where /proc cannot tell)."""
    if not _reset_peak():
        return None
    before = _status_kb('VmRSS')
    result = fn()
    peak = _status_kb('VmHWM')
    del result
    if before is None or peak is None:
        return None
    return max(0, peak - before) / 1024


def softmax_attention(q, k, v):
    """Textbook softmax attention with the N x N score matrix materialised."""
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return scores.softmax(dim=-1) @ v


def _methods() -> dict:
    kernel = SCLeakyReLU()
    return {
        'linear': lambda q, k, v: linear_attention(q, k, v, kernel),
        'softmax': softmax_attention,
        'sdpa': F.scaled_dot_product_attention,
    }


def _token_counts(max_tokens: int) -> list[int]:
    counts = [WINDOW * (64 // PATCH) * (48 // PATCH)]
    while counts[-1] * 2 <= max_tokens:
        counts.append(counts[-1] * 2)
    return counts


def attention_call(threads: int, method: str, tokens: int):
    """Harness factory: one attention method on fixed random Q, K, V of `tokens` tokens."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, tokens, HEAD_DIM, generator=gen) for _ in range(3))
    fn = _methods()[method]

    def call():
        with torch.no_grad():
            return fn(q, k, v)
    return call


def time_phase(args) -> list[dict]:
    """Per token count, the methods that fit the limits in interleaved rounds; estimates for the others.

    A skipped softmax/SDPA case is estimated quadratically from its last measured median.
    """
    rows = []
    previous: dict[str, tuple[int, float]] = {}
    plan = quick_plan() if args.quick else Plan(rounds=args.rounds, calls_per_round=3, max_warmup_s=10.0)
    for tokens in _token_counts(args.max_tokens):
        row = {'tokens': tokens, 'case': NAMED_SIZES.get(tokens, '')}
        runnable = []
        for name in _methods():
            matrix_gb = 2 * HEADS * tokens ** 2 * 4 / 1e9  # scores + softmax output, float32
            too_big = name == 'softmax' and matrix_gb > args.softmax_mem_gb
            estimate = None
            if name != 'linear' and name in previous:
                last_tokens, last_seconds = previous[name]
                estimate = last_seconds * (tokens / last_tokens) ** 2
            if too_big or (estimate is not None and estimate > args.max_seconds):
                row[name] = {'seconds': estimate if estimate is not None else float('nan'), 'measured': False,
                             'skipped_because': f'N x N matrices {matrix_gb:.1f} GB' if too_big
                             else f'estimated {estimate:.1f} s > {args.max_seconds} s'}
            else:
                runnable.append(Case(name, attention_call, args.threads, {'method': name, 'tokens': tokens}))
        result = compare(runnable, plan, in_process=True)
        for case in runnable:
            timed = result['cases'][case.name]
            row[case.name] = {'seconds': timed['seconds']['median'], 'spread': timed['seconds'],
                              'round_seconds': timed['round_seconds'], 'measured': True}
        row['over_linear'] = {case.name: ratio(result, case.name, 'linear') for case in runnable[1:]}
        for name in _methods():
            previous[name] = (tokens, row[name]['seconds'])
        print(f"  timed {tokens} tokens: linear {row['linear']['seconds'] * 1e3:.3g} ms", flush=True)
        rows.append(row)
    return rows


def memory_phase(args, timed: list[dict]) -> list[dict]:
    """Peak memory rise of each case the time phase ran."""
    gen = torch.Generator().manual_seed(0)
    methods = _methods()
    for row in timed:
        q, k, v = (torch.randn(1, HEADS, row['tokens'], HEAD_DIM, generator=gen) for _ in range(3))
        with torch.no_grad():
            for name, fn in methods.items():
                if row[name]['measured']:
                    fn(q, k, v)  # warm-up: one-off allocations of the op itself
                    row[name]['peak_mib'] = peak_rise_mib(lambda fn=fn, q=q, k=k, v=v: fn(q, k, v))
                else:
                    row[name]['peak_mib'] = None
        del q, k, v
    return timed


def run_phase_in_child(phase: str, args, rows_in: list[dict] | None = None) -> list[dict]:
    """Run one phase in a fresh interpreter (the malloc settings must be in place before start-up)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if phase == 'time':
        env.update(MALLOC_MMAP_THRESHOLD_=str(2 ** 32), MALLOC_TRIM_THRESHOLD_=str(2 ** 32),
                   MALLOC_TOP_PAD_=str(2 ** 30))
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / 'rows.json'
        if rows_in is not None:
            rows_path.write_text(json.dumps(rows_in))
        command = [sys.executable, __file__, '--phase', phase, '--rows', str(rows_path),
                   '--max-tokens', str(args.max_tokens), '--max-seconds', str(args.max_seconds),
                   '--softmax-mem-gb', str(args.softmax_mem_gb), '--rounds', str(args.rounds),
                   '--threads', str(args.threads)] + (['--quick'] if args.quick else [])
        subprocess.run(command, env=env, check=True)
        return json.loads(rows_path.read_text())


def _cell(entry: dict) -> str:
    ms = entry['seconds'] * 1e3
    mark = '' if entry['measured'] else '~'
    mem = '' if entry['peak_mib'] is None else f" {entry['peak_mib']:.0f}M"
    return f'{mark}{ms:.3g}ms{mem}'


def _ratio_cell(row: dict, method: str) -> str:
    if method in row['over_linear']:
        return fmt_spread(row['over_linear'][method], 1, 'x')
    return f"~{row[method]['seconds'] / row['linear']['seconds']:.0f}x"


def _format_row(row: dict) -> str:
    return (f"{row['tokens']:>7} {row['case']:<22} {_cell(row['linear']):>16} {_cell(row['softmax']):>18} "
            f"{_cell(row['sdpa']):>18} {_ratio_cell(row, 'sdpa'):>20} {_ratio_cell(row, 'softmax'):>20}")


def fitted_growth(points: list[tuple[int, float]]) -> float:
    """2^p of ``time ~ tokens^p``, least squares in log-log space: the growth per doubling."""
    exponent = numpy.polyfit(numpy.log2([t for t, _ in points]), numpy.log2([s for _, s in points]), 1)[0]
    return float(2 ** exponent)


def summarise(rows: list[dict]) -> dict:
    """Growth of linear attention per doubling (with its spread over rounds) and the ratios at the named sizes.

    The growth is fitted over the cases from 3840 tokens on (below that per-call overhead
    dominates the tiny products), once per round: min / median / max of those fits.
    """
    linear = [r['linear']['seconds'] for r in rows]
    large = [r for r in rows if r['tokens'] >= 3840]
    summary = {'linear_growth_per_doubling': [b / a for a, b in zip(linear, linear[1:], strict=False)],
               'fitted_growth_per_doubling_from_3840_tokens': None}
    if len(large) >= 2:
        rounds = len(large[0]['linear']['round_seconds'])
        summary['fitted_growth_per_doubling_from_3840_tokens'] = spread(
            [fitted_growth([(r['tokens'], r['linear']['round_seconds'][i]) for r in large]) for i in range(rounds)])
    by_tokens = {r['tokens']: r for r in rows}
    for tokens, label in NAMED_SIZES.items():
        if tokens in by_tokens:
            row = by_tokens[tokens]
            summary[label] = {m: row['over_linear'].get(m, row[m]['seconds'] / row['linear']['seconds'])
                              for m in ('softmax', 'sdpa')}
            summary[label]['estimated'] = [m for m in ('softmax', 'sdpa') if not row[m]['measured']]
    return summary


def _print_summary(summary: dict) -> None:
    print('linear growth per doubling (medians):', ' '.join(f'{g:.2f}' for g in summary['linear_growth_per_doubling']))
    if summary['fitted_growth_per_doubling_from_3840_tokens'] is not None:
        print(f"from 3840 tokens on, fitted growth per doubling over rounds: "
              f"{fmt_spread(summary['fitted_growth_per_doubling_from_3840_tokens'], 2)} (target <= 2.2)")
    for label in NAMED_SIZES.values():
        if label in summary:
            entry = summary[label]
            cells = [f'{m}/linear ' + (fmt_spread(entry[m], 1, 'x') if isinstance(entry[m], dict) else
                                        f'~{entry[m]:.0f}x (estimated)') for m in ('sdpa', 'softmax')]
            print(f"{label}: {', '.join(cells)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--max-tokens', type=int, default=WINDOW * 128 * 96, help='largest token count (doubling)')
    parser.add_argument('--max-seconds', type=float, default=10.0, help='skip softmax cases estimated slower')
    parser.add_argument('--softmax-mem-gb', type=float, default=2.0, help='skip materialised N x N above this')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1, help='1: two PyTorch threads on a shared CPU scatter')
    parser.add_argument('--quick', action='store_true', help='up to 3840 tokens, 2 rounds')
    parser.add_argument('--out', type=Path, default=Path('outputs/bench_attention.json'))
    parser.add_argument('--phase', choices=('time', 'memory'), help=argparse.SUPPRESS)
    parser.add_argument('--rows', type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.max_tokens = min(args.max_tokens, 3840)
    torch.set_num_threads(args.threads)
    if args.phase == 'time':
        args.rows.write_text(json.dumps(time_phase(args)))
        return 0
    if args.phase == 'memory':
        args.rows.write_text(json.dumps(memory_phase(args, json.loads(args.rows.read_text()))))
        return 0

    load_before = machine()
    print(f'batch 1, {HEADS} heads x {HEAD_DIM} dims, float32, {args.threads} thread(s), all methods')
    rows = run_phase_in_child('memory', args, run_phase_in_child('time', args))
    print('cell = median time over rounds and peak memory rise; ratio = per-round time / linear time, '
          'median [min-max]; ~ = extrapolated, not run')
    print(f"{'tokens':>7} {'case':<22} {'linear':>16} {'naive softmax':>18} {'sdpa (fused)':>18} "
          f"{'sdpa/linear':>20} {'naive/linear':>20}")
    for row in rows:
        print(_format_row(row))
    summary = summarise(rows)
    _print_summary(summary)
    report(args.out, {'benchmark': 'attention', 'quick': args.quick,
                      'config': {'heads': HEADS, 'head_dim': HEAD_DIM, 'batch': 1, 'dtype': 'float32',
                                 'threads': args.threads, 'torch': torch.__version__, 'patch': PATCH,
                                 'window': WINDOW, 'rounds': args.rounds},
                      'rows': rows, 'summary': summary}, load_before)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
