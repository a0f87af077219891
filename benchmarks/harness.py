"""The timing harness every benchmark uses, so that figures survive a shared, loaded CPU.

A comparison is a list of `Case`s. Each case builds its callable once (in its own process by
default, so one runtime's thread pool never runs beside another's), warms up until its times are
stable, then the cases are timed in interleaved rounds (A, B, A, B ...): a load spike hits every
case of a round alike, so the per-round ratio between two cases is the trustworthy figure and
the absolute times are context. Threads are stated per case and must be equal across the cases
of one comparison. `report()` adds the machine's load average (before and after) and CPU count.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One timed thing: `factory(threads=..., **kwargs)` returns the callable to time.

    The callable may return a `Timed` (the seconds it measured itself, e.g. a round trip that
    first waits for the system under test to settle) and may have `extras()`: figures it kept on
    the side, fetched once after the last round (that is also where it releases what it holds).

    `factory` must be a module-level function of a file whose top level imports what `python`
    (the case's interpreter, default this one) has: the case's process loads that file by path.
    `units` is what one call does (e.g. the batch size) for per-unit figures; `env` is set in the
    case's process before anything is imported there (e.g. malloc settings).
    """

    name: str
    factory: Callable[..., Callable[[], object]]
    threads: int
    kwargs: dict = field(default_factory=dict)
    units: float = 1.0
    env: dict = field(default_factory=dict)
    python: str | None = None


@dataclass(frozen=True)
class Timed:
    """What a case's callable returns when it timed itself.

    Recognised by its class flag, not by identity: a case file may reach this module as
    `harness` or as `benchmarks.harness`, two module objects.
    """

    seconds: float
    harness_timed = True


@dataclass(frozen=True)
class Plan:
    """How long to warm up and how many rounds to time.

    Warm-up stops once the last `stable_window` calls lie within `stable_tolerance` of their
    median (or after `max_warmup_calls` / `max_warmup_s`); each round times `calls_per_round`
    calls per case and keeps their median; `settle_s` separates cases so that one runtime's
    spinning threads have gone to sleep before the next case starts.
    """

    rounds: int = 7
    calls_per_round: int = 3
    stable_window: int = 3
    stable_tolerance: float = 0.1
    max_warmup_calls: int = 20
    max_warmup_s: float = 20.0
    settle_s: float = 0.05


def limit_threads(threads: int) -> None:
    """Give the math libraries of this process `threads` threads (before they start their pools)."""
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ[name] = str(threads)
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(threads)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    result = fn()
    return result.seconds if getattr(result, 'harness_timed', False) else time.perf_counter() - start


def _extras(fn) -> dict:
    return fn.extras() if hasattr(fn, 'extras') else {}


def warm_up(fn: Callable[[], object], plan: Plan) -> int:
    """Call `fn` until its last times are stable; return how many calls that took."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < plan.max_warmup_calls and time.perf_counter() - started < plan.max_warmup_s:
        times.append(_timed(fn))
        recent = times[-plan.stable_window:]
        if len(recent) == plan.stable_window:
            middle = statistics.median(recent)
            if all(abs(t - middle) <= plan.stable_tolerance * middle for t in recent):
                break
    return len(times)


def time_round(fn: Callable[[], object], calls: int) -> float:
    """Median seconds per call over `calls` calls."""
    return statistics.median(_timed(fn) for _ in range(calls))


def _serve() -> None:
    """Case process (`python harness.py serve`): build, warm up, then time one round per request.

    Requests and answers are pickles on stdin and on a private copy of stdout; the real stdout
    is pointed at stderr so that a library's prints cannot corrupt the answers.
    """
    answers = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)
    requests = sys.stdin.buffer

    def answer(kind: str, value) -> None:
        pickle.dump((kind, value), answers)
        answers.flush()

    path, name, threads, kwargs, plan = pickle.load(requests)
    limit_threads(threads)
    try:
        spec = importlib.util.spec_from_file_location('_bench_case_module', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = getattr(module, name)(threads=threads, **kwargs)
        answer('ready', warm_up(fn, plan))
    except Exception as error:  # the parent reports it with the case's name
        answer('error', f'{type(error).__name__}: {error}')
        return
    while pickle.load(requests) == 'round':
        answer('round', time_round(fn, plan.calls_per_round))
    answer('extras', _extras(fn))


class _InProcess:
    """A case built in this process (for cases that share one runtime's pool anyway)."""

    def __init__(self, case: Case, plan: Plan):
        self.fn = case.factory(threads=case.threads, **case.kwargs)
        self.warmup_calls = warm_up(self.fn, plan)
        self.plan = plan

    def round(self) -> float:
        return time_round(self.fn, self.plan.calls_per_round)

    def extras(self) -> dict:
        return _extras(self.fn)

    def close(self) -> None:
        self.fn = None


class _Child:
    """A case in its own interpreter (`case.python`, this one by default), driven over pipes."""

    def __init__(self, case: Case, plan: Plan):
        here = Path(__file__).resolve().parent
        path = os.pathsep.join([str(here.parent), str(here), os.environ.get('PYTHONPATH', '')])
        env = {**os.environ, 'PYTHONPATH': path, 'OMP_NUM_THREADS': str(case.threads), **case.env}
        self.name = case.name
        self.process = subprocess.Popen([case.python or sys.executable, __file__, 'serve'], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send((inspect.getfile(case.factory), case.factory.__name__, case.threads, case.kwargs, plan))
        self.warmup_calls = self._expect('ready')

    def _send(self, message) -> None:
        pickle.dump(message, self.process.stdin)
        self.process.stdin.flush()

    def _expect(self, kind: str):
        try:
            got, value = pickle.load(self.process.stdout)
        except EOFError:
            raise RuntimeError(f'case {self.name}: its process died (exit code {self.process.wait()})') from None
        if got == 'error':
            raise RuntimeError(f'case {self.name}: {value}')
        return value

    def round(self) -> float:
        self._send('round')
        return self._expect('round')

    def extras(self) -> dict:
        self._send('stop')
        return self._expect('extras')

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def spread(values: list[float]) -> dict:
    """The min / median / max of a list (the form every figure takes in the JSON)."""
    return {'min': min(values), 'median': statistics.median(values), 'max': max(values)}


def compare(cases: list[Case], plan: Plan, in_process: bool = False) -> dict:
    """Time `cases` in interleaved rounds; seconds per call and per unit, per case and per round.

    Raises ValueError when the cases do not state the same thread count.
    """
    threads = {case.threads for case in cases}
    if len(threads) != 1:
        raise ValueError(f'compared cases must use equal threads, got {sorted(threads)}')
    if len({case.name for case in cases}) != len(cases):
        raise ValueError('case names must differ')
    runners: list = []
    try:
        for case in cases:
            runners.append((_InProcess if in_process else _Child)(case, plan))
        rounds: dict[str, list[float]] = {case.name: [] for case in cases}
        order: list[str] = []
        for _ in range(plan.rounds):
            for case, runner in zip(cases, runners, strict=True):
                time.sleep(plan.settle_s)
                rounds[case.name].append(runner.round())
                order.append(case.name)
        extras = [runner.extras() for runner in runners]
    finally:
        for runner in runners:
            runner.close()
    results = {}
    for case, runner, extra in zip(cases, runners, extras, strict=True):
        seconds = rounds[case.name]
        results[case.name] = {
            'threads': case.threads, 'units': case.units, 'warmup_calls': runner.warmup_calls, 'extras': extra,
            'round_seconds': seconds, 'seconds': spread(seconds),
            'ms_per_unit': spread([1000 * s / case.units for s in seconds]),
            'units_per_s': spread([case.units / s for s in seconds]),
        }
    return {'threads': threads.pop(), 'rounds': plan.rounds, 'calls_per_round': plan.calls_per_round,
            'separate_processes': not in_process, 'order': order, 'cases': results}


def ratio(result: dict, slow: str, fast: str, per_unit: bool = True) -> dict:
    """Per-round time ratio slow / fast (paired within each round), as min / median / max."""
    a, b = result['cases'][slow], result['cases'][fast]
    scale = (b['units'] / a['units']) if per_unit else 1.0
    return spread([sa / sb * scale for sa, sb in zip(a['round_seconds'], b['round_seconds'], strict=True)])


def machine() -> dict:
    """What the figures depend on: CPU count, load average now, versions."""
    return {'cpu_count': os.cpu_count(), 'loadavg': list(os.getloadavg()), 'python': platform.python_version(),
            'machine': platform.machine(), 'processor': platform.processor(), 'platform': platform.platform()}


def report(path: Path, payload: dict, load_before: dict) -> dict:
    """Write `payload` with the machine's load before (given) and after (now) as JSON at `path`."""
    document = {**payload, 'machine': {'before': load_before, 'after': machine()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=float))
    print(f'wrote {path}  (load average {load_before["loadavg"][0]:.2f} -> {os.getloadavg()[0]:.2f}, '
          f'{os.cpu_count()} CPUs)')
    return document


def fmt_spread(values: dict, digits: int = 1, suffix: str = '') -> str:
    """'median [min-max]' for tables."""
    return (f'{values["median"]:.{digits}f}{suffix} [{values["min"]:.{digits}f}-{values["max"]:.{digits}f}]')


def quick_plan() -> Plan:
    """A plan for smoke runs and tests: seconds, not minutes."""
    return Plan(rounds=2, calls_per_round=1, stable_window=2, stable_tolerance=1.0, max_warmup_calls=2,
                max_warmup_s=5.0, settle_s=0.0)


if __name__ == '__main__' and sys.argv[1:] == ['serve']:
    _serve()
