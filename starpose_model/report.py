"""Parameters and FLOPs per component of each configuration, side by side with the paper's numbers.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products and
convolutions as 2 FLOPs per multiply-accumulate and ignores element-wise work (norms,
activations, the bicubic skip). The paper's GFLOPs columns follow the usual vision convention of
one multiply-accumulate per "FLOP" (HRNet-W48 at 256x192 is 14.6 "GFLOPs" there, about 15.7 G
MACs by this counter), so this tool reports GMACs = counted FLOPs / 2.

The models are built on the ``meta`` device: shapes only, no memory, no weights, so the report
is quick even for HRNet-W48.

Usage: ``starpose-model-report [--configs paper tiny] [--ablations] [--json PATH]``
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from starpose_model.config import ABLATIONS, config_names, get_config
from starpose_model.contract import HR_SIZE
from starpose_model.hrnet import build_pose_net
from starpose_model.star_pose import StarPoseSR

FLOP_COUNTER = 'torch.utils.flop_counter.FlopCounterMode (FLOPs = 2 x MACs; reported GMACs = FLOPs / 2)'

# Submodules of StarPoseSR that make up each reported component.
SR_COMPONENTS = {
    'shallow conv': ('shallow',),
    'patch tokens + 3D PE': ('embed', 'pos_encoding'),
    'transformer layers': ('layers', 'norm'),
    'CNN branch': ('cnn_branch',),
    'AFFM': ('fusions',),
    'upsampler + bicubic skip': ('unembed', 'reconstruct', 'skip'),
}

# The paper's figures (Tables 1-3) and the official HRNet-W48 counts (SPEC section 6).
PAPER = {
    'sr_params_m': 7.9,
    'total_params_m': 72.7,
    'pose_params_m': {'hrnet_w48': 63.6},
    'total_gflops': {'128x96': 6.75, '64x48': 1.71},
    'hrnet_w48_gflops': {'256x192': 14.6, '128x96': 3.65, '64x48': 0.91},
}
NOTE = ("The paper's STAR-Pose GFLOPs (6.75 @128x96, 1.71 @64x48) cannot include HRNet-W48 at 256x192 (14.6): they "
        'fit either an SR-only count or SR + the pose net run at the LR size (6.75 - 3.65 = 3.1 and 1.71 - 0.91 = 0.8 '
        'for the SR part). Here the pose net always runs on the 256x192 SR output, so SR-only and SR + pose net are '
        'reported separately.')


def _params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def gmacs_per_module(module: nn.Module, *inputs: torch.Tensor) -> dict[str, float]:
    """GMACs of one call per module path (FlopCounterMode's hierarchy; 'Global' is the whole call)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(*inputs)
    return {name: sum(ops.values()) / 2e9 for name, ops in counter.get_flop_counts().items()}


def count_gmacs(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Multiply-accumulates (G) of one call, the convention of the paper's and HRNet's "GFLOPs"."""
    return gmacs_per_module(module, *inputs).get('Global', 0.0)


def _submodule_macs(per_module: dict[str, float], root: str, model: nn.Module, name: str) -> float:
    """GMACs of ``model.<name>``; a ModuleList has no forward of its own, so its children are summed."""
    module = getattr(model, name)
    if module is None:
        return 0.0
    if isinstance(module, nn.ModuleList):
        return sum(per_module.get(f'{root}.{name}.{i}', 0.0) for i in range(len(module)))
    return per_module.get(f'{root}.{name}', 0.0)


def sr_report(config) -> dict:
    """Parameters (M) and GMACs of each SR component at the config's input size, for batch 1."""
    with torch.device('meta'):
        model = StarPoseSR(config).eval()
        frames = torch.rand(1, config.window, 3, *config.lr_size)
    per_module = gmacs_per_module(model, frames)
    total_macs = per_module.get('Global', 0.0)
    root = type(model).__name__
    components = {}
    for label, names in SR_COMPONENTS.items():
        components[label] = {
            'params_m': sum(_params(getattr(model, n)) for n in names) / 1e6,
            'gmacs': sum(_submodule_macs(per_module, root, model, n) for n in names),
        }
    return {'input': 'x'.join(map(str, config.lr_size)), 'components': components,
            'params_m': _params(model) / 1e6, 'gmacs': total_macs}


def pose_report(arch: str) -> dict:
    """Parameters (M) of a pose net and its GMACs at 256x192 (batch 1).

    Also the GMACs it would have on the LR crop (128x96, 64x48), scaled by pixel count from the
    256x192 count as the paper's Bicubic+HRNet columns are (3.65 = 14.6 / 4, 0.91 = 14.6 / 16):
    HRNet itself needs inputs divisible by 32, which 64x48 is not.
    """
    with torch.device('meta'):
        model = build_pose_net(arch).eval()
        images = torch.rand(1, 3, *HR_SIZE)
    hr_gmacs = count_gmacs(model, images)
    gmacs = {f'{h}x{w}': hr_gmacs * h * w / (HR_SIZE[0] * HR_SIZE[1]) for h, w in (HR_SIZE, (128, 96), (64, 48))}
    return {'arch': arch, 'params_m': _params(model) / 1e6, 'gmacs': gmacs}


def build_report(names: list[str]) -> dict:
    """The full report for config names (``paper``, ``tiny`` or ``paper:<ablation>``), both scales each."""
    hr_key = 'x'.join(map(str, HR_SIZE))
    pose_cache: dict[str, dict] = {}
    configs = {}
    for name in names:
        preset, _, ablation = name.partition(':')
        entry = {}
        for scale in (2, 4):
            config = get_config(preset, ablation or None, scale=scale)
            sr = sr_report(config)
            if config.pose_arch not in pose_cache:
                pose_cache[config.pose_arch] = pose_report(config.pose_arch)
            pose = pose_cache[config.pose_arch]
            sr['sr_plus_pose'] = {'params_m': sr['params_m'] + pose['params_m'],
                                  'gmacs': sr['gmacs'] + pose['gmacs'][hr_key], 'pose_input': hr_key}
            entry[f'scale{scale}'] = sr
        entry['pose_net'] = pose_cache[get_config(preset).pose_arch]
        configs[name] = entry
    return {'flop_counter': FLOP_COUNTER, 'batch': 1, 'paper': PAPER, 'note': NOTE, 'configs': configs}


def format_report(report: dict) -> str:
    """Plain-text tables: one per configuration, components as rows, both input sizes as columns."""
    lines = [f"FLOP counter: {report['flop_counter']}; batch 1.", '']
    paper = report['paper']
    for name, entry in report['configs'].items():
        s2, s4, pose = entry['scale2'], entry['scale4'], entry['pose_net']
        lines.append(f"config {name}: SR input {s2['input']} (x2) and {s4['input']} (x4); pose net {pose['arch']} "
                     f"on the 256x192 SR output")
        header = f"{'component':<34}{'params M (x2)':>14}{'GMACs 128x96':>14}{'params M (x4)':>14}{'GMACs 64x48':>13}"
        lines += [header, '-' * len(header)]
        for label in SR_COMPONENTS:
            a, b = s2['components'][label], s4['components'][label]
            lines.append(f"{label:<34}{a['params_m']:>14.3f}{a['gmacs']:>14.3f}{b['params_m']:>14.3f}{b['gmacs']:>13.3f}")
        other2 = s2['gmacs'] - sum(c['gmacs'] for c in s2['components'].values())
        other4 = s4['gmacs'] - sum(c['gmacs'] for c in s4['components'].values())
        if abs(other2) > 1e-6 or abs(other4) > 1e-6:
            lines.append(f"{'(outside the components)':<34}{'':>14}{other2:>14.3f}{'':>14}{other4:>13.3f}")
        rows = [
            ('SR total', s2['params_m'], s2['gmacs'], s4['params_m'], s4['gmacs']),
            (f"pose net {pose['arch']} @256x192", pose['params_m'], pose['gmacs']['256x192'],
             pose['params_m'], pose['gmacs']['256x192']),
            ('SR + pose net (pose @256x192)', s2['sr_plus_pose']['params_m'], s2['sr_plus_pose']['gmacs'],
             s4['sr_plus_pose']['params_m'], s4['sr_plus_pose']['gmacs']),
            ('SR + pose net @LR size (scaled)', s2['sr_plus_pose']['params_m'],
             s2['gmacs'] + pose['gmacs']['128x96'], s4['sr_plus_pose']['params_m'],
             s4['gmacs'] + pose['gmacs']['64x48']),
        ]
        for label, p2, g2, p4, g4 in rows:
            lines.append(f'{label:<34}{p2:>14.3f}{g2:>14.3f}{p4:>14.3f}{g4:>13.3f}')
        lines.append(f"{'paper: SR (Table 3)':<34}{paper['sr_params_m']:>14.1f}{'':>14}{paper['sr_params_m']:>14.1f}")
        lines.append(f"{'paper: HRNet-W48 (Tables 1-2)':<34}{paper['pose_params_m']['hrnet_w48']:>14.1f}"
                     f"{paper['hrnet_w48_gflops']['256x192']:>14.2f}{paper['pose_params_m']['hrnet_w48']:>14.1f}"
                     f"{paper['hrnet_w48_gflops']['256x192']:>13.2f}")
        lines.append(f"{'paper: STAR-Pose total (Tables 1-2)':<34}{paper['total_params_m']:>14.1f}"
                     f"{paper['total_gflops']['128x96']:>14.2f}{paper['total_params_m']:>14.1f}"
                     f"{paper['total_gflops']['64x48']:>13.2f}")
        lines.append('')
    lines.append(report['note'])
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``starpose-model-report``."""
    choices = [*config_names(), *(f'paper:{a}' for a in ABLATIONS)]
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', nargs='+', default=list(config_names()), choices=choices,
                        help='configurations to report (paper:<ablation> for a Table 4 ablation)')
    parser.add_argument('--ablations', action='store_true', help='also report the four paper ablations')
    parser.add_argument('--json', type=Path, help='write the report as JSON to this path')
    args = parser.parse_args(argv)
    names = list(args.configs) + ([f'paper:{a}' for a in ABLATIONS] if args.ablations else [])
    report = build_report(list(dict.fromkeys(names)))
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
