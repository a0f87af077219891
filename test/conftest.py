"""Test-wide guards and the fixtures that more than one test folder uses.

DDS stays on this machine and each test session gets its own ROS domain: set before anything
imports rclpy, so every node and every child process a test starts inherits them; a test
cannot forget it.

Layout: test/<folder> mirrors a package (model, training, core, ros = the node, bag_tools).
`test` is no package (it would shadow the stdlib's `test`): pytest imports test files with
--import-mode=importlib. Helpers shared by test files are the `starpose_testing` package in
test/helpers/ (on pytest's pythonpath and on the children's PYTHONPATH), a name that shadows
nothing, unlike `test`, `ros` or `core`. Test files import helpers, never a conftest.
"""
import hashlib
import os

import pytest

from starpose_testing.paths import HELPERS, REPO_ROOT

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_LOCALHOST_ONLY', None)  # deprecated twin; conflicts with the range on Jazzy+
os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(REPO_ROOT / 'config' / 'fastdds_profile.xml'))
os.environ.setdefault('OMP_NUM_THREADS', '2')
# Children find the helpers as the tests do (`python -m starpose_testing.<helper>`).
os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [str(HELPERS), os.environ.get('PYTHONPATH')]))


@pytest.fixture(scope='session', autouse=True)
def _dds_stays_local():
    """Fail loudly if something changed the discovery range after start-up."""
    yield
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context for one test, shut down afterwards."""
    import rclpy


    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


# Real models for the core's and the bag tools' tests: one randomly initialised `tiny` StarPose,
# exported once. The ONNX export takes tens of seconds on a small CPU, so the files are cached
# under pytest's temporary root, keyed by a hash of the model's source code and the torch/onnx
# versions: any change to `starpose_model` gives a fresh export.
MODEL_SOURCES = REPO_ROOT / 'starpose_model'


def _cache_key() -> str:
    import onnx
    import torch

    digest = hashlib.sha256(f'{torch.__version__} {onnx.__version__}'.encode())
    for source in sorted(MODEL_SOURCES.glob('*.py')):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope='session')
def tiny_model_files(tmp_path_factory):
    """(onnx path, .pt checkpoint path) of the same random `tiny` model ('last' target frame)."""
    import torch

    from starpose_model.checkpoint import save_checkpoint
    from starpose_model.export import export_onnx, random_model

    folder = tmp_path_factory.getbasetemp().parent / 'starpose-core-models' / _cache_key()
    onnx_path, checkpoint = folder / 'tiny.onnx', folder / 'tiny.pt'
    if not (onnx_path.is_file() and checkpoint.is_file()):
        torch.set_num_threads(2)
        staging = tmp_path_factory.mktemp('tiny_model')
        model = random_model('tiny', seed=0)
        export_onnx(model, staging / 'tiny.onnx')
        save_checkpoint(staging / 'tiny.pt', model.sr_net, model.pose_net, model.config)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ('tiny.pt', 'tiny.onnx'):  # atomic renames: a parallel session never sees half a file
            os.replace(staging / name, folder / name)
    return onnx_path, checkpoint


@pytest.fixture(scope='session')
def tiny_center_checkpoint(tmp_path_factory):
    """A random `tiny` checkpoint whose target frame is the window's centre."""
    import torch

    from starpose_model.checkpoint import save_checkpoint
    from starpose_model.config import get_config
    from starpose_model.hrnet import build_pose_net
    from starpose_model.star_pose import StarPoseSR

    torch.manual_seed(1)
    config = get_config('tiny', target_frame='center')
    folder = tmp_path_factory.mktemp('tiny_center')
    return save_checkpoint(folder / 'tiny_center.pt', StarPoseSR(config), build_pose_net(config.pose_arch), config)
