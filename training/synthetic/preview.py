"""Contact sheets and GIFs of a PoseTrack-format dataset with its ground-truth skeletons drawn on.

Reads the annotations with the project's PoseTrack reader, so a preview shows exactly what the
training code will load. Visible joints are filled dots, occluded ones (flag 0 with a position)
hollow rings; boxes and track ids are drawn per person in a colour per track.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from starpose_model.keypoints import SKELETON_EDGES

from ..posetrack import PoseTrackVideo, read_posetrack_file

_TRACK_COLOURS = ((255, 64, 64), (64, 200, 255), (255, 220, 0), (80, 255, 80), (255, 80, 255), (255, 150, 30),
                  (150, 120, 255), (0, 255, 190))


def draw_people(image: np.ndarray, video: PoseTrackVideo, frame_index: int, scale: float = 1.0) -> np.ndarray:
    """The frame (RGB) upscaled by `scale` with each person's skeleton, box and track id."""
    if scale != 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    else:
        image = image.copy()
    for person in video.people_in(video.images[frame_index]):
        colour = _TRACK_COLOURS[(person.track_id or 0) % len(_TRACK_COLOURS)]
        points = person.keypoints[:, :2] * scale
        annotated, visible = person.annotated, person.visible
        if person.bbox_xywh is not None:
            x, y, w, h = person.bbox_xywh * scale
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), colour, 1)
            cv2.putText(image, str(person.track_id), (int(x), max(8, int(y) - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35, colour, 1, cv2.LINE_AA)
        for a, b in SKELETON_EDGES['posetrack']:
            if annotated[a] and annotated[b]:
                cv2.line(image, tuple(np.round(points[a]).astype(int)), tuple(np.round(points[b]).astype(int)),
                         colour, 1, cv2.LINE_AA)
        for k in np.flatnonzero(annotated):
            centre = tuple(np.round(points[k]).astype(int))
            if visible[k]:
                cv2.circle(image, centre, 2, colour, -1, cv2.LINE_AA)
            else:
                cv2.circle(image, centre, 3, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def load_frames(dataset: str | Path, split: str, sequence: str | int, count: int,
                scale: float = 1.0) -> list[np.ndarray]:
    """`count` evenly spaced frames of one sequence (name or index) with ground truth drawn on (RGB)."""
    root = Path(dataset)
    folder = root / 'annotations' / split
    files = sorted(folder.glob('*.json'))
    if not files:
        raise FileNotFoundError(f'no per-video annotation files in {folder}')
    if isinstance(sequence, int) or str(sequence).isdigit():
        index = int(sequence)
        if not 0 <= index < len(files):
            raise IndexError(f'sequence index {index} out of range: {folder} has {len(files)} videos')
        path = files[index]
    else:
        path = folder / f'{sequence}.json'
        if not path.is_file():
            raise FileNotFoundError(f'{path} not found; sequences: {[f.stem for f in files]}')
    video = read_posetrack_file(path)[0]
    picks = np.unique(np.linspace(0, len(video.images) - 1, max(1, count)).round().astype(int))
    frames = []
    for k in picks:
        file = root / video.images[k].file_name
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f'cannot read frame {file}')
        frames.append(draw_people(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), video, int(k), scale))
    return frames


def contact_sheet(frames: list[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    """Frames tiled row by row on a dark background (all frames the same size)."""
    columns = max(1, min(columns, len(frames)))
    rows = -(-len(frames) // columns)
    h, w = frames[0].shape[:2]
    sheet = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 24, np.uint8)
    for k, frame in enumerate(frames):
        r, c = divmod(k, columns)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = frame
    return sheet


def shrink(image: np.ndarray, max_width: int | None) -> np.ndarray:
    """The image scaled down (area interpolation) to at most `max_width` pixels wide."""
    if max_width and image.shape[1] > max_width:
        factor = max_width / image.shape[1]
        image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return image


def save_png(image: np.ndarray, path: str | Path, max_width: int | None = None, quantize: bool = False) -> Path:
    """Write an RGB image as PNG, optionally shrunk to `max_width` and reduced to a 256-colour palette."""
    from PIL import Image

    picture = Image.fromarray(shrink(image, max_width))
    if quantize:
        picture = picture.quantize(256)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)
    return path


def save_gif(frames: list[np.ndarray], path: str | Path, fps: float = 10.0, max_width: int | None = None) -> Path:
    """Write frames as a looping animated GIF (each shrunk to `max_width`)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = [Image.fromarray(shrink(f, max_width)).quantize(256) for f in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=int(1000 / fps), loop=0)
    return path
