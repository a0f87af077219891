"""ROS tests: no node process outlives the test that started it (a leaked node skews every later run).

Nodes of module-scoped fixtures exist before the test starts and are left to their fixture.
"""
import pytest

from starpose_testing.node_harness import NodeProcess


@pytest.fixture(autouse=True)
def _no_leftover_nodes():
    before = len(NodeProcess.started)
    yield
    NodeProcess.kill_leftovers(keep=before)


@pytest.fixture(autouse=True, scope='module')
def _no_leftover_module_nodes():
    yield
    NodeProcess.kill_leftovers()
