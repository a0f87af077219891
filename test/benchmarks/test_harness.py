"""The benchmark harness: interleaved rounds, one process per case, equal threads, load in the JSON."""
from __future__ import annotations

import json
import os

import pytest

from benchmarks.harness import Case, Plan, compare, machine, ratio, report
from starpose_testing.bench_cases import logged

PLAN = Plan(rounds=3, calls_per_round=2, stable_window=2, stable_tolerance=10.0, max_warmup_calls=2, settle_s=0.0)


def _cases(log, **extra) -> list[Case]:
    return [Case(name, logged, 1, {'name': name, 'log': str(log), **extra}) for name in ('a', 'b')]


@pytest.mark.parametrize('in_process', [False, True])
def test_rounds_alternate_between_cases_after_each_warm_up(tmp_path, in_process):
    log = tmp_path / 'calls.log'
    result = compare(_cases(log), PLAN, in_process=in_process)
    calls = [line.split() for line in log.read_text().splitlines()]
    warmups = result['cases']['a']['warmup_calls'] + result['cases']['b']['warmup_calls']
    timed = [name for name, _ in calls[warmups:]]
    assert timed == (['a'] * 2 + ['b'] * 2) * 3  # A, B, A, B ... with calls_per_round calls each
    assert result['order'] == ['a', 'b'] * 3
    pids = {name: {pid for n, pid in calls if n == name} for name in ('a', 'b')}
    if in_process:
        assert pids['a'] == pids['b'] == {str(os.getpid())}
    else:  # each case in its own process, not this one
        assert len(pids['a'] | pids['b']) == 2 and str(os.getpid()) not in pids['a'] | pids['b']
    a = result['cases']['a']
    assert len(a['round_seconds']) == 3 and a['seconds']['min'] <= a['seconds']['median'] <= a['seconds']['max']
    assert a['extras']['calls'] == a['warmup_calls'] + 6


def test_self_timed_calls_and_paired_ratio(tmp_path):
    result = compare(_cases(tmp_path / 'log', self_timed=True), PLAN)
    assert result['cases']['a']['round_seconds'] == [0.5] * 3
    assert ratio(result, 'a', 'b') == {'min': 1.0, 'median': 1.0, 'max': 1.0}


def test_unequal_threads_are_refused(tmp_path):
    cases = [Case('a', logged, 1, {'name': 'a', 'log': str(tmp_path / 'log')}),
             Case('b', logged, 2, {'name': 'b', 'log': str(tmp_path / 'log')})]
    with pytest.raises(ValueError, match='equal threads'):
        compare(cases, PLAN)


def test_a_failing_case_names_itself(tmp_path):
    case = Case('broken', logged, 1, {'name': 'x', 'log': str(tmp_path / 'log'), 'unknown': 1})
    with pytest.raises(RuntimeError, match='case broken: TypeError'):
        compare([case], PLAN)


def test_report_records_the_machine_load(tmp_path):
    before = machine()
    report(tmp_path / 'out' / 'r.json', {'rows': [1]}, before)
    document = json.loads((tmp_path / 'out' / 'r.json').read_text())
    assert document['rows'] == [1]
    for moment in ('before', 'after'):
        assert len(document['machine'][moment]['loadavg']) == 3
        assert document['machine'][moment]['cpu_count'] == os.cpu_count()
