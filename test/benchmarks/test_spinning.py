"""ONNX Runtime spinning is off by default in the node's backend (issue 15, item 5), on when asked."""
from __future__ import annotations

import pytest

from starpose_ros.core.backends.onnxruntime_backend import SPINNING_ENV, OnnxRuntimeBackend
from starpose_testing.node_harness import tiny_onnx_model


def _entries(backend) -> set[str]:
    options = backend._session.get_session_options()
    return {options.get_session_config_entry(f'session.{pool}.allow_spinning') for pool in ('intra_op', 'inter_op')}


@pytest.mark.parametrize(('env', 'argument', 'expected'), [
    (None, None, '0'), ('1', None, '1'), ('1', False, '0'), (None, True, '1')])
def test_spinning_default_env_and_argument(pytestconfig, monkeypatch, env, argument, expected):
    if env is None:
        monkeypatch.delenv(SPINNING_ENV, raising=False)
    else:
        monkeypatch.setenv(SPINNING_ENV, env)
    backend = OnnxRuntimeBackend(tiny_onnx_model(pytestconfig), intra_op_threads=1, allow_spinning=argument)
    assert _entries(backend) == {expected}
    assert backend.allow_spinning == (expected == '1')
