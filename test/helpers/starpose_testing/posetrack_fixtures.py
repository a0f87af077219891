"""Tiny hand-made PoseTrack18/21-format datasets written by the tests themselves.

Frames are PNG (lossless) and encode their frame index in the blue channel and a position ramp in
red/green, so tests can check which frame a crop came from and where it was cropped.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from starpose_model.keypoints import POSETRACK_KEYPOINT_NAMES

IMAGE_HW = (120, 160)


def person_keypoints(x0: float, y0: float, scale: float = 1.0) -> list[float]:
    """A plausible standing pose (17 x 3 flat, PoseTrack order, ears unannotated) near (x0, y0)."""
    offsets = [(0, 4), (0, 8), (0, 0), None, None, (-5, 12), (5, 12), (-7, 20), (7, 20), (-8, 28), (8, 28),
               (-4, 30), (4, 30), (-4, 40), (4, 40), (-4, 50), (4, 50)]
    flat = []
    for offset in offsets:
        if offset is None:
            flat += [0, 0, 0]
        else:
            flat += [x0 + scale * offset[0], y0 + scale * offset[1], 1]
    return flat


def frame_image(frame: int) -> np.ndarray:
    """RGB frame: red = x ramp, green = y ramp, blue = 20 * frame index."""
    h, w = IMAGE_HW
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = (np.arange(w) * 255 // (w - 1))[None, :]
    image[..., 1] = (np.arange(h) * 255 // (h - 1))[:, None]
    image[..., 2] = 20 * frame
    return image


def make_video(name: str = '000001_fixture', nframes: int = 6, labeled=(1, 2, 3), vid_id: str = '000001',
               version: int = 2018, ignore_regions: dict | None = None, people_per_frame: int = 1) -> dict:
    """A PoseTrack-format JSON dict of one video; people move 1 px right per frame."""
    images, annotations = [], []
    base = int(vid_id) * 10000 + 10000000000
    for f in range(nframes):
        image_id = base + f
        entry = {'id': image_id, 'file_name': f'images/val/{name}/{f:06d}.png', 'vid_id': vid_id,
                 'frame_id': image_id, 'nframes': nframes, 'is_labeled': f in labeled}
        if ignore_regions and f in ignore_regions:
            xs, ys = ignore_regions[f]
            entry['ignore_regions_x'], entry['ignore_regions_y'] = xs, ys
        images.append(entry)
        if f not in labeled:
            continue
        for p in range(people_per_frame):
            x0, y0 = 50 + f + 40 * p, 30
            ann = {'id': image_id * 100 + p, 'image_id': image_id, 'category_id': 1, 'track_id': p,
                   'keypoints': person_keypoints(x0, y0),
                   'bbox': [x0 - 10, y0 - 2, 20, 56], 'bbox_head': [x0 - 3, y0 - 1, 6, 10]}
            if version == 2021:
                ann['person_id'] = 1000 + p
            annotations.append(ann)
    categories = [{'supercategory': 'person', 'id': 1, 'name': 'person',
                   'keypoints': list(POSETRACK_KEYPOINT_NAMES), 'skeleton': []}]
    return {'images': images, 'annotations': annotations, 'categories': categories}


def write_dataset(root: Path, videos: list[dict], merged: bool = False, write_frames: bool = True) -> Path:
    """Write videos as PoseTrack JSON (per-video files or one merged file) plus PNG frames; return the JSON path."""
    ann_dir = root / 'annotations' / 'val'
    ann_dir.mkdir(parents=True, exist_ok=True)
    for video in videos:
        if not write_frames:
            break
        for entry in video['images']:
            path = root / entry['file_name']
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = int(Path(entry['file_name']).stem)
            cv2.imwrite(str(path), cv2.cvtColor(frame_image(frame), cv2.COLOR_RGB2BGR))
    if merged:
        merged_json = {'images': [], 'annotations': [], 'categories': videos[0]['categories']}
        for video in videos:
            merged_json['images'] += video['images']
            merged_json['annotations'] += video['annotations']
        path = root / 'annotations' / 'val.json'
        path.write_text(json.dumps(merged_json))
        return path
    for video in videos:
        name = Path(video['images'][0]['file_name']).parent.name
        (ann_dir / f'{name}.json').write_text(json.dumps(video))
    return ann_dir
