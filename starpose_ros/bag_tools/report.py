"""The bag-evaluation report: JSON for machines, markdown with PNG plots for people.

`write_report` takes the summary `starpose-bag-eval` collected and writes `report.json`,
`report.md` and, under `plots/`, the latency of every stage over the run, per-joint AP bars
(when ground truth was given) and a filmstrip of LR crop / SR crop / pose for a few tracks.
Nothing here reads bags or runs models.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from starpose_model.crops import warp_crop
from starpose_ros.core import drawing
from starpose_ros.core.backends.base import SR_HEIGHT
from starpose_ros.core.types import PersonResult

STAGE_ORDER = ('read', 'detect', 'track', 'crop', 'infer', 'decode', 'draw', 'write', 'total')


def latency_summary(series: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """p50 / p95 / max / mean milliseconds of every stage, in pipeline order."""
    ordered = sorted(series, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER))
    return {stage: {'p50': float(np.percentile(series[stage], 50)), 'p95': float(np.percentile(series[stage], 95)),
                    'max': float(np.max(series[stage])), 'mean': float(np.mean(series[stage]))}
            for stage in ordered if series[stage]}


class FilmstripSampler:
    """Keeps a few evenly spread (LR crop, SR crop with pose) samples of the first tracks seen.

    Memory stays bounded on any bag: when a track has `per_track` samples, every other one is
    dropped and the sampling stride doubles.
    """

    def __init__(self, lr_size: tuple[int, int], layout: str, min_keypoint_score: float, tracks: int = 3,
                 per_track: int = 6):
        self.lr_size, self.layout, self.min_keypoint_score = lr_size, layout, min_keypoint_score
        self.tracks, self.per_track = tracks, per_track
        self.samples: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        self._stride: dict[str, int] = {}
        self._seen: dict[str, int] = {}

    def add(self, frame_index: int, image_rgb: np.ndarray, person: PersonResult) -> None:
        """Offer one person of one frame; keeps it if its track is sampled and the stride says so."""
        track = person.track_id
        if track not in self.samples:
            if len(self.samples) >= self.tracks:
                return
            self.samples[track], self._stride[track], self._seen[track] = [], 1, 0
        seen = self._seen[track]
        self._seen[track] = seen + 1
        if seen % self._stride[track]:
            return
        # the person's HR-crop affine scaled down to the LR size: the region the model was given
        lr_crop = warp_crop(image_rgb, person.image_to_crop * (self.lr_size[0] / SR_HEIGHT), self.lr_size)
        pose = drawing.sr_mosaic([person], self.layout, 1, self.min_keypoint_score)
        self.samples[track].append((frame_index, lr_crop, pose))
        if len(self.samples[track]) >= self.per_track:
            self.samples[track] = self.samples[track][::2]
            self._stride[track] *= 2

    def image(self) -> np.ndarray | None:
        """Rows of (LR crop upscaled, SR crop with pose) per track and sample; None if empty."""
        rows = []
        for track, samples in self.samples.items():
            cells = []
            for frame_index, lr_crop, pose in samples:
                lr_big = cv2.resize(lr_crop, (pose.shape[1], pose.shape[0]), interpolation=cv2.INTER_NEAREST)
                cell = np.concatenate([lr_big, pose], axis=0)
                cv2.putText(cell, f'{track} #{frame_index}', (4, cell.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                            (255, 255, 255), 2, cv2.LINE_AA)
                cells.append(cell)
            if cells:
                rows.append(cells)
        if not rows:
            return None
        width = max(len(cells) for cells in rows)
        blank = np.zeros_like(rows[0][0])
        sheet = np.concatenate([np.concatenate(cells + [blank] * (width - len(cells)), axis=1) for cells in rows],
                               axis=0)
        return cv2.resize(sheet, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # keeps the PNG small


def _plot_latency(series: dict[str, list[float]], path: Path) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4), dpi=100)
    for stage in latency_summary(series):
        axis.plot(np.arange(len(series[stage])), series[stage], label=stage, linewidth=1.2 if stage == 'total' else 0.8)
    axis.set_xlabel('frame')
    axis.set_ylabel('ms')
    axis.set_title('latency per stage over the run')
    axis.set_yscale('log')
    axis.grid(True, which='both', alpha=0.3)
    axis.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _plot_joint_ap(names: list[str], ap: list[float], path: Path) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 3.5), dpi=100)
    values = [0.0 if math.isnan(v) else v for v in ap]
    axis.bar(range(len(names)), values, color='tab:blue')
    axis.set_xticks(range(len(names)), names, rotation=45, ha='right', fontsize=8)
    axis.set_ylim(0, 100)
    axis.set_ylabel('AP (%)')
    axis.set_title('PoseTrack per-joint AP (PCKh@0.5)')
    axis.grid(True, axis='y', alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _cell(value) -> str:
    if isinstance(value, float):
        return 'n/a' if math.isnan(value) else f'{value:.2f}'
    return str(value)


def markdown(report: dict, plots: dict[str, str]) -> str:
    """The human-readable report (plots linked relative to the report file)."""
    run, counts = report['run'], report['counts']
    lines = [f"# Bag evaluation: {run['bag']}", '',
             f"Model `{run['model']}` ({run['backend']}), images `{run['image_topic']}`, "
             f"detections: {run['detections']}.", '']
    if report.get('error'):
        lines += [f"**Stopped early:** {report['error']} (results below cover the frames processed before).", '']
    lines += ['| frames | results | persons | tracks | throughput (frames/s) | wall time (s) |',
              '| --- | --- | --- | --- | --- | --- |',
              f"| {counts['frames']} | {counts['results']} | {counts['persons']} | {counts['tracks']} | "
              f"{report['throughput_fps']:.2f} | {report['wall_time_s']:.1f} |", '']
    warnings = {k: v for k, v in counts.items() if k not in ('frames', 'results', 'persons', 'tracks') and v}
    if warnings:
        lines += ['Counted: ' + ', '.join(f'{k} {v}' for k, v in warnings.items()) + '.', '']
    lines += ['## Latency per stage (ms)', '', '| stage | p50 | p95 | max | mean |', '| --- | --- | --- | --- | --- |']
    lines += [f"| {stage} | {s['p50']:.2f} | {s['p95']:.2f} | {s['max']:.2f} | {s['mean']:.2f} |"
              for stage, s in report['latency_ms'].items()]
    if 'latency' in plots:
        lines += ['', f"![latency per stage]({plots['latency']})"]
    accuracy = report.get('accuracy')
    if accuracy:
        lines += ['', '## Accuracy', '']
        if accuracy.get('note'):
            lines += [accuracy['note'], '']
        rows = [(k, v) for k, v in accuracy.items() if isinstance(v, (int, float))]
        lines += ['| metric | value |', '| --- | --- |'] + [f'| {k} | {_cell(v)} |' for k, v in rows]
        if 'joint_ap' in plots:
            lines += ['', f"![per-joint AP]({plots['joint_ap']})"]
    if 'filmstrip' in plots:
        lines += ['', '## Filmstrip', '', 'Per track: LR crop (upscaled, top) and SR crop with the estimated pose.', '',
                  f"![filmstrip]({plots['filmstrip']})"]
    outputs = report.get('outputs', {})
    if outputs:
        lines += ['', '## Files', ''] + [f'- {name}: `{path}`' for name, path in outputs.items()]
    return '\n'.join(lines) + '\n'


def write_report(output_dir, report: dict, latency_series: dict[str, list[float]],
                 joint_ap: tuple[list[str], list[float]] | None = None,
                 filmstrip: np.ndarray | None = None) -> tuple[Path, Path]:
    """Write report.json, report.md and plots/*.png into `output_dir`; return the two report paths."""
    output_dir = Path(output_dir)
    plot_dir = output_dir / 'plots'
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    for stale in ('latency', 'joint_ap', 'filmstrip'):  # an earlier run's plots must not pass for this run's
        (plot_dir / f'{stale}.png').unlink(missing_ok=True)
    if any(latency_series.values()):
        plots['latency'] = _plot_latency(latency_series, plot_dir / 'latency.png').relative_to(output_dir).as_posix()
    if joint_ap is not None:
        plots['joint_ap'] = _plot_joint_ap(*joint_ap, plot_dir / 'joint_ap.png').relative_to(output_dir).as_posix()
    if filmstrip is not None:
        path = plot_dir / 'filmstrip.png'
        if not cv2.imwrite(str(path), cv2.cvtColor(filmstrip, cv2.COLOR_RGB2BGR)):
            raise OSError(f'OpenCV could not write {path}')
        plots['filmstrip'] = path.relative_to(output_dir).as_posix()
    report = {**report, 'plots': plots}
    json_path, md_path = output_dir / 'report.json', output_dir / 'report.md'
    json_path.write_text(json.dumps(report, indent=2, default=_json_default))
    md_path.write_text(markdown(report, plots))
    return json_path, md_path


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')
