"""Write synthetic clips as a PoseTrack18 dataset (a clip becomes a rosbag2 with `starpose-video2bag`).

Layout (the same as the published PoseTrack18 release, so the same readers load it)::

    <out>/images/<split>/<seq>/000000.jpg ...
    <out>/annotations/<split>/<seq>.json      one file per video
    <out>/annotations/<split>.json            all videos of the split merged
    <out>/synth_manifest.json                 preset, seed, config and what was written

Keypoint flags: a visible joint is ``x, y, 1``; a joint inside the image but hidden (by another
person, an object, or the head for the nose of someone facing away) keeps its position with flag
0 (PoseTrack21's occlusion convention; PoseTrack18 tools treat flag 0 as unlabeled); joints
outside the image and the ears are ``0, 0, 0``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from starpose_model.keypoints import POSETRACK_KEYPOINT_NAMES, SKELETON_EDGES

from .config import SynthConfig, make_config
from .render import ClipRenderer, JointStatus, PersonFrame

CATEGORIES = [{
    'supercategory': 'person', 'id': 1, 'name': 'person', 'keypoints': list(POSETRACK_KEYPOINT_NAMES),
    'skeleton': [[a + 1, b + 1] for a, b in SKELETON_EDGES['posetrack']],  # 1-based, as in PoseTrack18
}]
_OUTPUTS = ('images', 'annotations', 'synth_manifest.json')


def sequence_name(vid_number: int) -> str:
    """PoseTrack-style sequence folder name (six-digit video id plus a source tag)."""
    return f'{vid_number:06d}_synth'


def image_id(vid_number: int, frame: int) -> int:
    """PoseTrack18 image id: 1 VVVVVV FFFF (the published files use the same scheme)."""
    return 10_000_000_000 + vid_number * 10_000 + frame


def clip_seed(seed: int, vid_number: int) -> int:
    """Independent, reproducible seed of one clip of a dataset."""
    return int(np.random.SeedSequence([int(seed), int(vid_number)]).generate_state(1, np.uint64)[0])


def is_annotated(person: PersonFrame, config: SynthConfig) -> bool:
    """Annotated people with enough unoccluded pixels in the frame get an annotation and a detection."""
    return person.annotated and person.visible_pixels >= config.min_visible_pixels and min(person.bbox_xywh[2:]) > 0


def _r(values) -> list[float]:
    return [round(float(v), 2) for v in values]


def keypoint_triplets(person: PersonFrame) -> list[float]:
    """Flat 17 x 3 PoseTrack keypoints with the flags described in the module docstring."""
    flat = []
    for (x, y), status in zip(person.joints, person.status, strict=True):
        if status == JointStatus.VISIBLE:
            flat += [*_r((x, y)), 1]
        elif status in (JointStatus.OCCLUDED, JointStatus.SELF_OCCLUDED):
            flat += [*_r((x, y)), 0]
        else:
            flat += [0, 0, 0]
    return flat


def _ignore_regions(people: list[PersonFrame], config: SynthConfig) -> tuple[list, list]:
    """Boxes of people who are seen but not annotated (distractors, barely visible people)."""
    xs, ys = [], []
    for person in people:
        if person.visible_pixels > 0 and not is_annotated(person, config):
            x, y, w, h = person.bbox_xywh
            if w > 0 and h > 0:
                xs.append(_r((x, x + w, x + w, x)))
                ys.append(_r((y, y, y + h, y + h)))
    return xs, ys


def _frame_entries(vid_number: int, split: str, seq: str, frame: int, people: list[PersonFrame],
                   config: SynthConfig) -> tuple[dict, list[dict]]:
    labeled = frame % config.labeled_every == 0
    ignore_x, ignore_y = _ignore_regions(people, config) if labeled else ([], [])
    img_id = image_id(vid_number, frame)
    image = {'id': img_id, 'file_name': f'images/{split}/{seq}/{frame:06d}.jpg', 'vid_id': f'{vid_number:06d}',
             'frame_id': img_id, 'nframes': config.frames, 'is_labeled': labeled,
             'ignore_regions_x': ignore_x, 'ignore_regions_y': ignore_y,
             'width': config.width, 'height': config.height}
    annotations = []
    if labeled:
        for person in people:
            if is_annotated(person, config):
                annotations.append({
                    'id': img_id * 100 + person.track_id, 'image_id': img_id, 'category_id': 1,
                    'track_id': person.track_id, 'keypoints': keypoint_triplets(person),
                    'bbox': _r(person.bbox_xywh), 'bbox_head': _r(person.head_xywh),
                    'num_keypoints': int((person.status == JointStatus.VISIBLE).sum()),
                })
    return image, annotations


def _dump(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(',', ':')) + '\n')


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse to mix with earlier output unless asked; with `overwrite` remove only our own outputs."""
    existing = [out / name for name in _OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f'{out} already holds a dataset ({", ".join(p.name for p in existing)}); '
                              'choose another folder or pass overwrite=True (--overwrite)')
    if existing and not (out / 'synth_manifest.json').is_file():  # e.g. a real PoseTrack folder
        raise FileExistsError(f'{out} holds {", ".join(p.name for p in existing)} but no synth_manifest.json: '
                              'not a starpose-synth output, so --overwrite leaves it alone; choose another folder')
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate_dataset(out_dir: str | Path, preset: str = 'small', seed: int = 0, *, difficulty: str = 'medium',
                     overwrite: bool = False, progress=None, **overrides) -> dict:
    """Render every clip of the preset (at `difficulty`, with `overrides`) and write the PoseTrack18 dataset.

    A clip becomes a rosbag2 with the bag tools: `starpose-video2bag <out>/images/val/<seq> BAG
    --posetrack-json <out>/annotations/val/<seq>.json` (its frames and annotated boxes).
    `progress`, if given, is called with the number of frames done after each frame.
    Returns the manifest (also written to ``synth_manifest.json``).
    """
    config = make_config(preset, difficulty, **overrides)
    out = Path(out_dir)
    _prepare_output(out, overwrite)
    manifest = {'generator': 'starpose-synth', 'format': 'posetrack18', 'preset': preset, 'difficulty': difficulty,
                'seed': int(seed),
                'config': asdict(config), 'splits': {}, 'frames': 0, 'annotations': 0}
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    vid_number = 0
    for split, count in config.videos.items():
        merged = {'images': [], 'annotations': [], 'categories': CATEGORIES}
        manifest['splits'][split] = []
        for _ in range(count):
            vid_number += 1
            seq = sequence_name(vid_number)
            renderer = ClipRenderer(config, clip_seed(seed, vid_number))
            video = {'images': [], 'annotations': [], 'categories': CATEGORIES}
            frame_dir = out / 'images' / split / seq
            frame_dir.mkdir(parents=True, exist_ok=True)
            for frame in range(config.frames):
                rendered = renderer.render(frame)
                path = frame_dir / f'{frame:06d}.jpg'
                if not cv2.imwrite(str(path), cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR), jpeg):
                    raise OSError(f'OpenCV could not write {path}')
                image, annotations = _frame_entries(vid_number, split, seq, frame, rendered.people, config)
                video['images'].append(image)
                video['annotations'] += annotations
                manifest['frames'] += 1
                if progress is not None:
                    progress(manifest['frames'])
            _dump(out / 'annotations' / split / f'{seq}.json', video)
            merged['images'] += video['images']
            merged['annotations'] += video['annotations']
            manifest['annotations'] += len(video['annotations'])
            manifest['splits'][split].append(seq)
        _dump(out / 'annotations' / f'{split}.json', merged)
    _dump(out / 'synth_manifest.json', manifest)
    return manifest
