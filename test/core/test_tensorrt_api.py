"""The TensorRT API the engine code uses, checked without TensorRT: tensorrt-stubs and mypy.

`scripts/typecheck_tensorrt.py` (run by scripts/test.sh) type-checks the modules that call
TensorRT; here it is shown to reject a misspelt API, every `trt.X.Y` name in those modules is
looked up in the stubs, and none of the APIs TensorRT 11 removed is used (no 11.x stubs exist,
so the code keeps to what 10.x and 11.x share).
"""
from __future__ import annotations

import ast
import importlib.util
import sysconfig
from pathlib import Path

from starpose_testing.paths import REPO_ROOT

BACKENDS = REPO_ROOT / 'starpose_ros' / 'core' / 'backends'
TENSORRT_MODULES = [BACKENDS / 'tensorrt_build.py', BACKENDS / 'tensorrt_runtime.py']
STUB = Path(sysconfig.get_paths()['purelib']) / 'tensorrt_bindings' / 'tensorrt.pyi'
# Removed in TensorRT 11 (weak typing, implicit quantisation; migration guide, Python API list).
REMOVED_IN_11 = {'FP16', 'INT8', 'BF16', 'OBEY_PRECISION_CONSTRAINTS', 'PREFER_PRECISION_CONSTRAINTS', 'DIRECT_IO',
                 'platform_has_fast_fp16', 'platform_has_fast_int8', 'int8_calibrator', 'set_calibration_profile',
                 'IInt8EntropyCalibrator2', 'IInt8MinMaxCalibrator', 'IInt8Calibrator', 'set_output_type',
                 'set_quantization_flag', 'device_memory_size', 'BuilderFlag'}

def _typecheck():
    spec = importlib.util.spec_from_file_location('typecheck_tensorrt', REPO_ROOT / 'scripts' / 'typecheck_tensorrt.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trt_chains(path: Path) -> set[tuple[str, ...]]:
    """Every attribute chain rooted at the module alias `trt`, e.g. ('Logger', 'WARNING')."""
    chains = set()
    for node in ast.walk(ast.parse(path.read_text())):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == 'trt' and parts:
            chains.add(tuple(reversed(parts)))
    return chains


def _stub_names(folder: Path) -> dict[str, set[str]]:
    """Module-level names of the (repaired) stubs ('' key) and each class's members, with its bases'."""
    assert STUB.is_file(), 'tensorrt-stubs is not installed: bash scripts/setup.sh (requirements-typecheck.txt)'
    stubs = _typecheck().repaired_stubs(folder)
    tree = ast.parse((stubs / 'tensorrt_bindings' / 'tensorrt.pyi').read_text())
    classes, bases, module = {}, {}, set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            module.add(node.name)
            classes[node.name] = {getattr(t, 'id', getattr(t, 'name', None)) for item in node.body
                                  for t in ([item] if isinstance(item, ast.FunctionDef | ast.ClassDef)
                                            else getattr(item, 'targets', [getattr(item, 'target', None)]))}
            bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]
        elif isinstance(node, ast.FunctionDef):
            module.add(node.name)
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            module.update(getattr(t, 'id', None) for t in getattr(node, 'targets', [getattr(node, 'target', None)]))
    package = ast.parse((stubs / 'tensorrt' / '__init__.pyi').read_text())  # what `import tensorrt` re-exports
    for node in package.body:
        if isinstance(node, ast.ImportFrom):
            module.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            module.update(getattr(t, 'id', None) for t in getattr(node, 'targets', [getattr(node, 'target', None)]))
    for name in list(classes):
        stack = list(bases[name])
        while stack:
            base = stack.pop()
            classes[name] |= classes.get(base, set())
            stack += bases.get(base, [])
    return {'': module, **classes}


def _missing(chains: set[tuple[str, ...]], names: dict[str, set[str]]) -> list[tuple[str, ...]]:
    return sorted(chain for chain in chains
                  if chain[0] not in names[''] or (len(chain) > 1 and chain[1] not in names.get(chain[0], set())))


def test_every_tensorrt_name_the_code_uses_is_in_the_stubs(tmp_path):
    names = _stub_names(tmp_path)
    used = set().union(*(_trt_chains(path) for path in TENSORRT_MODULES))
    assert ('NetworkDefinitionCreationFlag', 'STRONGLY_TYPED') in used  # the walk sees real uses
    assert _missing(used, names) == []
    misspelt = {('NetworkDefinitionCreationFlag', 'STRONGLY_TYPE'), ('Loger',)}
    assert _missing(misspelt, names) == sorted(misspelt)


def test_no_api_removed_in_tensorrt_11_is_used():
    used = {node.attr for path in [*TENSORRT_MODULES, BACKENDS / 'tensorrt_backend.py']
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}
    assert not used & REMOVED_IN_11


def test_type_check_passes_and_rejects_a_misspelt_api(tmp_path):
    typecheck = _typecheck()
    status, report = typecheck.run()
    assert status == 0, report
    misspelt = tmp_path / 'misspelt_build.py'
    source = TENSORRT_MODULES[0].read_text()
    assert 'config.get_timing_cache()' in source
    misspelt.write_text(source.replace('config.get_timing_cache()', 'config.get_timing_caches()'))
    status, report = typecheck.run([str(misspelt)])
    assert status == 1 and '"IBuilderConfig" has no attribute "get_timing_caches"' in report
