"""Acceptance 1: the node's lifecycle through the standard lifecycle services, from another process.

A missing or corrupt model fails configure with a readable message while the node stays alive;
after fixing `model_path` the node configures, activates (subscriptions and publishers appear;
a silent publisher on the image topic gets a warning pointing to the Fast DDS profile),
deactivates (subscriptions go away, publishers stay until cleanup), cleans up, configures again
and shuts down.
"""
import pytest
from lifecycle_msgs.msg import Transition
from sensor_msgs.msg import Image

from starpose_testing.node_harness import NodeProcess, RosClient, tiny_onnx_model

pytestmark = pytest.mark.ros

NAMESPACE = '/t_lifecycle'


@pytest.fixture
def model(request):
    return tiny_onnx_model(request.config)


def test_lifecycle_via_services(rclpy_context, tmp_path, model):
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'this is not an ONNX protobuf' * 10)
    node = NodeProcess(tmp_path / 'node.log', NAMESPACE, {'model_path': str(tmp_path / 'missing.onnx'),
                                                          'no_image_warning_s': 1.0})
    client = RosClient(rclpy_context)
    graph = client.node
    try:
        assert client.get_state(node.fqn) == 'unconfigured'

        # missing model: failed transition, readable reason, node alive and still unconfigured
        assert not client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE)
        assert client.get_state(node.fqn) == 'unconfigured' and node.alive()
        assert client.wait_for(lambda: 'missing.onnx' in node.log() and 'not found' in node.log(), 5), node.log()

        # corrupt model: the same
        assert all(r.successful for r in client.set_parameters(node.fqn, model_path=str(corrupt)))
        assert not client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE)
        assert client.get_state(node.fqn) == 'unconfigured' and node.alive()
        assert 'corrupt.onnx' in node.log()

        # a good model: configure, activate -> interfaces exist
        assert all(r.successful for r in client.set_parameters(node.fqn, model_path=str(model)))
        assert client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE)
        assert client.get_state(node.fqn) == 'inactive'
        assert graph.count_subscribers(f'{NAMESPACE}/image') == 0
        # publishers are made at configure (the lifecycle talker's way): the topics exist while inactive
        assert client.wait_for(lambda: graph.count_publishers(f'{NAMESPACE}/poses') == 1, 10)
        assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVATE)
        assert client.get_state(node.fqn) == 'active'
        for topic in ('poses', 'sr_crops', 'sr_mosaic', 'overlay', 'markers'):
            assert client.wait_for(lambda t=topic: graph.count_publishers(f'{NAMESPACE}/{t}') == 1, 10), topic
        assert client.wait_for(lambda: graph.count_subscribers(f'{NAMESPACE}/image') == 1, 10)
        assert client.wait_for(lambda: graph.count_subscribers(f'{NAMESPACE}/detections') == 1, 10)

        # a publisher on the image topic that delivers nothing (e.g. a camera without the Fast DDS
        # profile) makes the node point to the profile
        silent_camera = graph.create_publisher(Image, f'{NAMESPACE}/image', 1)
        assert client.wait_for(lambda: 'FASTDDS_DEFAULT_PROFILES_FILE' in node.log(), 10), node.log()
        graph.destroy_publisher(silent_camera)

        # deactivate: subscriptions are gone, publishers stay (inactive); cleanup removes them
        assert client.change_state(node.fqn, Transition.TRANSITION_DEACTIVATE)
        assert client.get_state(node.fqn) == 'inactive'
        assert client.wait_for(lambda: graph.count_subscribers(f'{NAMESPACE}/image') == 0, 10)
        assert graph.count_publishers(f'{NAMESPACE}/poses') == 1
        assert client.change_state(node.fqn, Transition.TRANSITION_CLEANUP)
        assert client.get_state(node.fqn) == 'unconfigured'
        assert client.wait_for(lambda: graph.count_publishers(f'{NAMESPACE}/poses') == 0, 10)
        assert client.change_state(node.fqn, Transition.TRANSITION_CONFIGURE)
        assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVATE)
        assert client.change_state(node.fqn, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert client.get_state(node.fqn) == 'finalized'
        assert node.alive()
    finally:
        client.close()
        exit_code = node.stop()
    assert exit_code == 0, node.log()
    assert 'Traceback' not in node.log(), node.log()
