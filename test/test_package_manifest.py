"""package.xml declares exactly the ROS packages the node and launch file import (rosdep installs from it)."""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ET

from starpose_testing.paths import REPO_ROOT

OPTIONAL = {'vision_msgs'}  # imported only if installed: the node falls back to starpose_msgs
ROS_PACKAGES = ('rclpy', 'launch', 'launch_ros')


def _is_ros_package(name: str) -> bool:
    return name in ROS_PACKAGES or name.endswith(('_msgs', '_interfaces'))


def test_every_imported_ros_package_is_declared_and_no_other():
    imported = set()
    for path in [*(REPO_ROOT / 'starpose_ros').rglob('*.py'), *(REPO_ROOT / 'launch').glob('*.py')]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            imported |= {name.split('.')[0] for name in names if _is_ros_package(name.split('.')[0])}
    declared = {element.text for element in ET.parse(REPO_ROOT / 'package.xml').getroot()
                if element.tag in ('depend', 'exec_depend')}
    assert imported - OPTIONAL <= declared, f'imported but not declared: {sorted(imported - OPTIONAL - declared)}'
    unused = {name for name in declared if not name.startswith('python3-')} - imported  # cv_bridge was one
    assert not unused, f'declared but never imported: {sorted(unused)}'
