"""The layers' arrows point one way, and no module imports itself round a circle.

    starpose_model  <-  starpose_training (data, training, metrics; no ROS package)
          ^
          +--------  starpose_ros.core (the ROS-free runtime)  <-  the rclpy node
                                                                <-  the offline bag tools (may use the metrics)

Every import counts, also the ones inside functions (which no import graph drawn from module
headers shows). A failure names the importing file, line and the rule it breaks.
"""
from __future__ import annotations

import ast
from pathlib import Path

from starpose_testing.paths import REPO_ROOT

PACKAGE_DIRS = {'starpose_model': REPO_ROOT / 'starpose_model', 'starpose_ros': REPO_ROOT / 'starpose_ros',
                'starpose_training': REPO_ROOT / 'training'}


def layer(module: str) -> str:
    """The layer a module belongs to."""
    if module.startswith('starpose_ros.core'):
        return 'core'
    if module.startswith('starpose_ros.bag_tools'):
        return 'bag tools'
    if module.startswith('starpose_ros'):
        return 'node'  # node.py, its node_* parts and ros_conversions: the modules that import rclpy
    return module.split('.')[0]


ALLOWED = {  # layer -> the layers it may import
    'starpose_model': {'starpose_model'},
    'starpose_training': {'starpose_training', 'starpose_model'},
    'core': {'core', 'starpose_model'},
    'node': {'node', 'core', 'starpose_model'},
    'bag tools': {'bag tools', 'core', 'starpose_model', 'starpose_training'},
}


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob('*.py'):
            parts = path.relative_to(folder).with_suffix('').parts
            name = '.'.join((package, *parts[:-1])) if parts[-1] == '__init__' else '.'.join((package, *parts))
            modules[name] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement, at any depth."""
    found = []
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join([*anchor, base] if base else anchor)
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition('.')[0]
            if target and target != module:
                found.append((target, node.lineno))
    return found


def import_graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    modules = project_modules()
    known = set(modules)
    return modules, {name: imports_of(name, path, known) for name, path in modules.items()}


def test_every_import_follows_the_layers():
    modules, graph = import_graph()
    wrong = [f'{modules[m].relative_to(REPO_ROOT)}:{line}: {layer(m)} imports {target} ({layer(target)})'
             for m, targets in graph.items() for target, line in targets
             if layer(target) not in ALLOWED[layer(m)]]
    assert not wrong, 'imports against the layers:\n' + '\n'.join(sorted(wrong))


def test_no_import_cycles():
    _modules, graph = import_graph()
    edges = {m: sorted({t for t, _ in targets if not m.startswith(t + '.')}) for m, targets in graph.items()}
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 'open'
        for target in edges[module]:
            if state.get(target) == 'open':
                cycles.append(' -> '.join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 'done'

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, 'import cycles:\n' + '\n'.join(cycles)
