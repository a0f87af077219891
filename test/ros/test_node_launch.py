"""Static checks of the launch file, parameters YAML and RViz config against the real node.

launch / launch_ros are not installable here, so the launch file is checked by parsing it: valid
Python, the installed executable, files that exist, and only parameters the node declares.
"""
import ast
import importlib.metadata
import json
import math

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from starpose_ros.node import StarPoseNode
from starpose_ros.node_parameters import PARAMETERS, NodeSettings
from starpose_testing.paths import REPO_ROOT

pytestmark = pytest.mark.ros

LAUNCH_FILE = REPO_ROOT / 'launch' / 'pose.launch.py'
PARAMS_FILE = REPO_ROOT / 'config' / 'starpose.yaml'
RVIZ_FILE = REPO_ROOT / 'config' / 'starpose.rviz'
DOCS_FILE = REPO_ROOT / 'docs' / 'node.md'


def _launch_constants() -> dict:
    """Module-level constant assignments of the launch file, evaluated as literals."""
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, (ast.Constant, ast.Tuple))}


def _declared(rclpy_context) -> dict[str, object]:
    """Names and descriptors of the parameters a real node instance declares."""
    import rclpy

    plain = rclpy.create_node('plain_node_for_builtin_parameters', context=rclpy_context)
    builtin = set(plain.get_parameters_by_prefix(''))  # use_sim_time, start_type_description_service, ...
    plain.destroy_node()
    node = StarPoseNode(context=rclpy_context)
    try:
        names = [name for name in node.get_parameters_by_prefix('') if name not in builtin]
        return dict(zip(names, node.describe_parameters(names), strict=True))
    finally:
        node.destroy_node()


def test_launch_file_is_valid_python_with_a_launch_description():
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    compile(tree, str(LAUNCH_FILE), 'exec')


def test_launch_file_names_the_installed_executable_and_existing_files():
    constants = _launch_constants()
    assert constants['PACKAGE'] == 'starpose_ros'
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group='console_scripts')}
    assert scripts.get(constants['EXECUTABLE']) == 'starpose_ros.node:main'
    for key in ('PARAMS_FILE', 'RVIZ_FILE', 'FASTDDS_PROFILE'):
        path = REPO_ROOT / constants[key]
        # setup.py installs config/* into share/starpose_ros/config, which the launch file resolves
        assert path.is_file() and path.parent.name == 'config', f'{key}: {path}'


def test_launch_parameter_arguments_are_declared_by_the_node(rclpy_context):
    declared = _declared(rclpy_context)
    arguments = _launch_constants()['NODE_PARAMETER_ARGUMENTS']
    assert arguments and set(arguments) <= set(declared), set(arguments) - set(declared)
    source = LAUNCH_FILE.read_text()
    for name in arguments:
        assert f"DeclareLaunchArgument('{name}'" in source, f'launch argument {name} is never declared'


def test_params_file_documents_exactly_the_declared_parameters(rclpy_context):
    document = yaml.safe_load(PARAMS_FILE.read_text())
    values = document['/**']['ros__parameters']
    declared = _declared(rclpy_context)
    assert set(values) == set(declared), (set(values) ^ set(declared))
    for name, value in values.items():
        default = PARAMETERS[name].default
        assert type(value) is type(default), f'{name}: YAML {value!r} vs declared default {default!r}'
        assert value == default, f'{name}: YAML {value!r} vs declared default {default!r}'
        assert _has_comment(PARAMS_FILE.read_text().splitlines(), name), f'{name} is not documented'


def test_docs_table_is_the_declared_parameters():
    """docs/node.md's table is generated from PARAMETERS: a renamed, added or re-defaulted parameter fails here."""
    expected = _parameter_table()
    assert expected in DOCS_FILE.read_text(), f'docs/node.md: replace the parameter table with\n{expected}'


def _parameter_table() -> str:
    rows = ['| parameter | default | values | description |', '| --- | --- | --- | --- |']
    for name, param in PARAMETERS.items():
        limits = param.int_range or param.float_range
        allowed = ', '.join(param.choices) if param.choices else f'{limits[0]}..{limits[1]}' if limits else ''
        note = ' (read-only)' if param.read_only else ''
        rows.append(f'| `{name}` | `{json.dumps(param.default)}` | {allowed} | {param.description}{note} |')
    return '\n'.join(rows) + '\n'


def _has_comment(lines: list[str], name: str) -> bool:
    """An inline comment, or a comment line above the block of parameter lines that holds `name`."""
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(f'{name}:'))
    if '#' in lines[index]:
        return True
    while index > 0 and ':' in lines[index - 1] and not lines[index - 1].strip().startswith('#'):
        index -= 1
    return lines[index - 1].strip().startswith('#')


def test_params_file_loads_through_the_rcl_parser(rclpy_context):
    node = StarPoseNode(context=rclpy_context, cli_args=['--ros-args', '--params-file', str(PARAMS_FILE),
                                                         '-p', 'max_tracks:=7'])
    try:
        assert node.get_parameter('person_class_ids').value == ['person', '0']
        assert node.get_parameter('image_reliability').value == 'best_effort'
        assert node.get_parameter('max_tracks').value == 7
    finally:
        node.destroy_node()


def test_every_parameter_has_a_descriptor_with_description_and_constraints(rclpy_context):
    for name, descriptor in _declared(rclpy_context).items():
        assert len(descriptor.description) > 15, name
        if descriptor.type == ParameterType.PARAMETER_INTEGER:
            assert descriptor.integer_range, f'{name}: no integer range'
        if descriptor.type == ParameterType.PARAMETER_DOUBLE:
            assert descriptor.floating_point_range, f'{name}: no floating point range'
        if PARAMETERS[name].choices:
            assert all(choice in descriptor.additional_constraints for choice in PARAMETERS[name].choices), name
    read_only = {name for name, descriptor in _declared(rclpy_context).items() if descriptor.read_only}
    assert {'image_transport', 'image_reliability', 'detections_type'} <= read_only


def test_out_of_range_and_unknown_choice_values_are_refused(rclpy_context):
    from rclpy.parameter import Parameter

    node = StarPoseNode(context=rclpy_context)
    try:
        results = node.set_parameters([Parameter('max_tracks', value=0), Parameter('backend', value='tensorflow'),
                                       Parameter('min_detection_score', value=math.inf),
                                       Parameter('image_reliability', value='reliable'),
                                       Parameter('detector', value='hog')])
        assert [r.successful for r in results] == [False, False, False, False, True]
        assert 'onnxruntime' in results[1].reason
    finally:
        node.destroy_node()


def test_rviz_config_shows_the_overlay_image_and_markers():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    displays = {d['Class']: d for d in config['Visualization Manager']['Displays']
                if d.get('Enabled', True) and 'Topic' in d}
    assert displays['rviz_default_plugins/Image']['Topic']['Value'] == '/overlay'
    assert displays['rviz_default_plugins/MarkerArray']['Topic']['Value'] == '/markers'
    assert set(displays['rviz_default_plugins/MarkerArray']['Namespaces']) == {'skeleton', 'joints', 'track_ids'}


def test_launch_keeps_a_users_fast_dds_profile():
    tree = ast.parse(LAUNCH_FILE.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, 'id', None) == 'SetEnvironmentVariable']
    (call,) = calls
    name, value = call.args
    assert name.value == 'FASTDDS_DEFAULT_PROFILES_FILE'
    # the value is the variable itself, the shipped profile only as its default
    assert value.func.id == 'EnvironmentVariable' and value.args[0].value == name.value
    assert [k.arg for k in value.keywords] == ['default_value']


def test_bad_start_up_values_fail_configure_not_the_process(rclpy_context):
    from rclpy.parameter import Parameter

    node = StarPoseNode(context=rclpy_context, cli_args=[
        '--ros-args', '-p', 'max_batch:=0', '-p', 'hog_upscale:=2', '-p', 'detector:=hog'])
    try:
        assert node.get_parameter('hog_upscale').value == 2.0  # an integer for a double is that double
        assert node.get_parameter('max_batch').value == 16  # refused: the default, and configure fails
        assert node.get_parameter('detector').value == 'hog'
        assert node.trigger_configure().name == 'FAILURE'  # the process lives, the transition fails
        assert all(r.successful for r in node.set_parameters([Parameter('max_batch', value=8)]))
        assert node._bad_start_values == {}
    finally:
        node.destroy_node()


def test_filters_that_keep_nobody_fail_configure(rclpy_context):
    from rclpy.parameter import Parameter

    node = StarPoseNode(context=rclpy_context)
    try:
        assert not node.set_parameters([Parameter('min_detection_score', value=math.nan)])[0].successful
        assert node.set_parameters([Parameter('person_class_ids', value=['', ' '])])[0].successful
        with pytest.raises(ValueError, match='person_class_ids is empty'):
            NodeSettings.from_node(node)
    finally:
        node.destroy_node()
