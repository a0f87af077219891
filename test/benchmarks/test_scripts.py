"""A quick run of each benchmark script writes its JSON, with the machine's load (not timed tests)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from starpose_testing.paths import REPO_ROOT

LABELS = REPO_ROOT / 'outputs' / 'real' / 'vtest'
SCRIPTS = {
    'bench_model_latency': ['--quick', '--no-peer'],
    'bench_attention': ['--quick'],
    'bench_core': ['--quick'],
    'bench_gpu': ['--device', 'cpu', '--config', 'tiny', '--lr-sizes', '64x48', '--batches', '1', '--quick'],
}


def _run(script: str, arguments: list[str], out) -> dict:
    done = subprocess.run([sys.executable, str(REPO_ROOT / 'benchmarks' / f'{script}.py'), *arguments,
                           '--out', str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_quick_run_writes_json_with_load(script, tmp_path):
    out = tmp_path / f'{script}.json'
    _run(script, SCRIPTS[script], out)
    document = json.loads(out.read_text())
    assert document['rows'] if 'rows' in document else document['results']
    assert {'before', 'after'} <= set(document['machine'])
    assert len(document['machine']['before']['loadavg']) == 3


def test_node_benchmark_stops_its_nodes_and_measures_idle_cpu(tmp_path):
    out = tmp_path / 'node.json'
    _run('bench_node_latency', ['--quick'], out)
    document = json.loads(out.read_text())
    assert len(document['machine']['after']['loadavg']) == 3
    cases = [*document['rows'], *document['spinning'].values()]
    assert all(case['node_exit'].startswith(('exited', 'killed')) for case in cases)
    assert {'node_cpu_percent_idle', 'node_cpu_percent_serving'} <= set(document['spinning']['spinning_off'])


@pytest.mark.skipif(not (LABELS / 'annotations' / 'test').is_dir(), reason='needs starpose-label output (real footage)')
def test_real_footage_throughput_goes_through_the_harness(tmp_path):
    _run('bench_real_footage', ['--labels', str(LABELS), '--scales', '4', '--boxes', 'tight', '--methods', 'prior',
                                '--max-frames', '4'], tmp_path)
    speed = json.loads((tmp_path / 'results.json').read_text())['speed']
    assert speed['rounds'] and speed['ms_per_window_spread']['min'] <= speed['ms_per_window']
