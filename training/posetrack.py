"""Readers for PoseTrack2018 and PoseTrack2021 annotations as published.

Both releases store COCO-like JSON: ``images`` (one entry per video frame, labeled or not),
``annotations`` (people: 17 x 3 keypoints in PoseTrack's COCO-like order, ``track_id``, ``bbox``
and ``bbox_head`` as x, y, w, h) and ``categories``. They ship one JSON per video (a directory)
and some tools produce one merged JSON; both are read here and split into videos by ``vid_id``.
PoseTrack2021 adds ``person_id`` and uses the visibility flag for joint occlusion (an occluded
joint keeps its coordinates with visibility 0). Prediction files in the same format carry
per-keypoint ``scores`` and are read by the same code.

Anything malformed raises :class:`PoseTrackFormatError` naming the file and the field; nothing is
skipped silently.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from starpose_model.contract import target_index
from starpose_model.keypoints import NUM_KEYPOINTS, POSETRACK_KEYPOINT_NAMES, POSETRACK_UNANNOTATED


class PoseTrackFormatError(ValueError):
    """A PoseTrack JSON file is unreadable or misses/garbles a field."""


@dataclass
class PoseTrackImage:
    """One video frame entry of ``images``."""

    id: int
    file_name: str
    vid_id: str
    frame_id: int
    nframes: int | None
    is_labeled: bool  # files without the field (prediction files): labeled when it has people
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # each (N, 2) polygon, x/y


@dataclass
class PoseTrackPerson:
    """One entry of ``annotations``: a person in one frame (ground truth or prediction)."""

    id: int | None
    image_id: int
    track_id: int | None
    keypoints: np.ndarray  # (17, 3) x, y, visibility (or score in some prediction files)
    bbox_xywh: np.ndarray | None = None
    bbox_head_xywh: np.ndarray | None = None
    person_id: int | None = None  # PoseTrack2021 only
    scores: np.ndarray | None = None  # (17,) per-keypoint scores of predictions
    score: float | None = None  # whole-person score of predictions

    @property
    def annotated(self) -> np.ndarray:
        """(17,) bool: the joint carries a position (the format writes unlabeled ones as 0, 0, 0)."""
        x, y, v = self.keypoints.T
        return (x != 0) | (y != 0) | (v != 0)

    @property
    def visible(self) -> np.ndarray:
        """(17,) bool: visibility flag set."""
        return self.keypoints[:, 2] > 0

    @property
    def occluded(self) -> np.ndarray:
        """(17,) bool: annotated but flagged invisible (PoseTrack2021's joint occlusion)."""
        return self.annotated & ~self.visible


@dataclass
class PoseTrackVideo:
    """All frames of one video in temporal order, with the people of each frame."""

    name: str
    source: Path
    images: list[PoseTrackImage]
    people: dict[int, list[PoseTrackPerson]]  # image id -> people in that frame
    version: int = 2018  # 2021 when the annotations carry person_id

    def people_in(self, image: PoseTrackImage) -> list[PoseTrackPerson]:
        """People annotated (or predicted) in one frame; empty when none."""
        return self.people.get(image.id, [])

    def window_indices(self, index: int, window: int, target_frame: str) -> list[int]:
        """Frame indices of a T-frame window for the frame at `index`, oldest first.

        `target_frame` ``center`` puts the frame in the middle (T // 2), ``last`` at the end.
        Indices beyond the video repeat the first or last frame (clipped to 0 .. nframes - 1).
        """
        if window < 1:
            raise ValueError(f'window must be >= 1, got {window}')
        first = index - target_index(window, target_frame)
        return [min(max(i, 0), len(self.images) - 1) for i in range(first, first + window)]


def _fail(path: Path, where: str, problem: str) -> PoseTrackFormatError:
    return PoseTrackFormatError(f'{path}: {where}: {problem}')


def _require(entry: dict, key: str, path: Path, where: str):
    if not isinstance(entry, dict):
        raise _fail(path, where, f'expected a JSON object, got {type(entry).__name__}')
    if key not in entry:
        raise _fail(path, where, f"missing field '{key}'")
    return entry[key]


def _as_int(value, path: Path, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(path, where, f"field '{key}' must be an integer, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _fail(path, where, f"field '{key}' must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise _fail(path, where, f"field '{key}' must be an integer, got {value!r}")
    return int(number)


def _as_array(value, length: int, path: Path, where: str, key: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(path, where, f"field '{key}' must be a list of {length} numbers") from None
    if array.shape != (length,) or not np.isfinite(array).all():
        raise _fail(path, where, f"field '{key}' must be a list of {length} finite numbers, got {value!r}")
    return array


def _parse_ignore_regions(entry: dict, path: Path, where: str) -> list[np.ndarray]:
    xs, ys = entry.get('ignore_regions_x'), entry.get('ignore_regions_y')
    if xs is None and ys is None:
        return []
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        raise _fail(path, where, "'ignore_regions_x' and 'ignore_regions_y' must be lists of equal length")
    regions = []
    for k, (px, py) in enumerate(zip(xs, ys, strict=True)):
        if not isinstance(px, list) or not isinstance(py, list) or len(px) != len(py):
            raise _fail(path, where, f'ignore region {k}: x and y lists differ in length')
        try:
            polygon = np.asarray([px, py], dtype=np.float64).T.reshape(-1, 2)
        except (TypeError, ValueError):
            raise _fail(path, where, f'ignore region {k}: coordinates must be numbers') from None
        regions.append(polygon)
    return regions


def _parse_image(entry: dict, path: Path, k: int) -> PoseTrackImage:
    where = f'images[{k}]'
    image_id = _as_int(_require(entry, 'id', path, where), path, where, 'id')
    file_name = _require(entry, 'file_name', path, where)
    if not isinstance(file_name, str) or not file_name:
        raise _fail(path, where, f"field 'file_name' must be a non-empty string, got {file_name!r}")
    nframes = entry.get('nframes')
    return PoseTrackImage(
        id=image_id,
        file_name=file_name,
        vid_id=str(entry.get('vid_id', Path(file_name).parent.name)),
        frame_id=_as_int(entry.get('frame_id', image_id), path, where, 'frame_id'),
        nframes=None if nframes is None else _as_int(nframes, path, where, 'nframes'),
        is_labeled=None if entry.get('is_labeled') is None else bool(entry['is_labeled']),  # None: decided later
        ignore_regions=_parse_ignore_regions(entry, path, where),
    )


def _optional_box(entry: dict, key: str, path: Path, where: str) -> np.ndarray | None:
    if entry.get(key) is None:
        return None
    return _as_array(entry[key], 4, path, where, key)


def _parse_person(entry: dict, path: Path, k: int) -> PoseTrackPerson:
    where = f'annotations[{k}]'
    keypoints = _as_array(_require(entry, 'keypoints', path, where), 3 * NUM_KEYPOINTS, path, where, 'keypoints')
    track_id = entry.get('track_id')
    person_id = entry.get('person_id')
    scores = entry.get('scores')
    score = entry.get('score')
    return PoseTrackPerson(
        id=None if entry.get('id') is None else _as_int(entry['id'], path, where, 'id'),
        image_id=_as_int(_require(entry, 'image_id', path, where), path, where, 'image_id'),
        track_id=None if track_id is None else _as_int(track_id, path, where, 'track_id'),
        keypoints=keypoints.reshape(NUM_KEYPOINTS, 3),
        bbox_xywh=_optional_box(entry, 'bbox', path, where),
        bbox_head_xywh=_optional_box(entry, 'bbox_head', path, where),
        person_id=None if person_id is None else _as_int(person_id, path, where, 'person_id'),
        scores=None if not scores else _as_array(scores, NUM_KEYPOINTS, path, where, 'scores'),
        score=None if score is None else float(_as_array([score], 1, path, where, 'score')[0]),
    )


def _keypoint_order(data: dict, path: Path) -> list[int] | None:
    """File channel of each PoseTrack channel, from ``categories``; None when already in order.

    Files without categories (typical prediction files) are taken to be in PoseTrack's order.
    The ears may be named anything (PoseTrack never annotates them); the 15 other names must exist.
    """
    categories = data.get('categories')
    if not categories:
        return None
    if not isinstance(categories, list) or not isinstance(categories[0], dict):
        raise _fail(path, 'categories', 'must be a list of objects')
    names = categories[0].get('keypoints')
    if names is None:
        return None
    where = 'categories[0].keypoints'
    if not isinstance(names, list) or len(names) != NUM_KEYPOINTS:
        raise _fail(path, where, f'expected {NUM_KEYPOINTS} keypoint names, got {names!r}')
    order = []
    for channel, name in enumerate(POSETRACK_KEYPOINT_NAMES):
        if name in names:
            order.append(names.index(name))
        elif channel in POSETRACK_UNANNOTATED:
            order.append(channel)
        else:
            raise _fail(path, where, f"keypoint '{name}' is missing (names: {names})")
    return None if order == list(range(NUM_KEYPOINTS)) else order


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding='utf-8') as stream:
            data = json.load(stream)
    except json.JSONDecodeError as error:
        raise PoseTrackFormatError(f'{path}: not valid JSON: {error}') from None
    except OSError as error:
        raise PoseTrackFormatError(f'{path}: cannot read: {error}') from None
    if not isinstance(data, dict):
        raise PoseTrackFormatError(f'{path}: expected a JSON object at the top level, got {type(data).__name__}')
    if 'annolist' in data:
        raise PoseTrackFormatError(f"{path}: PoseTrack2017 'annolist' format; convert it with poseval's "
                                   'convert.py to the PoseTrack2018 format first')
    return data


def read_posetrack_file(path: str | Path) -> list[PoseTrackVideo]:
    """Read one PoseTrack18/21 JSON (per-video or merged) into videos split by ``vid_id``."""
    path = Path(path)
    data = _load_json(path)
    raw_images = _require(data, 'images', path, 'top level')
    raw_people = _require(data, 'annotations', path, 'top level')
    if not isinstance(raw_images, list) or not isinstance(raw_people, list):
        raise _fail(path, 'top level', "'images' and 'annotations' must be lists")
    order = _keypoint_order(data, path)
    images = [_parse_image(entry, path, k) for k, entry in enumerate(raw_images)]
    by_id = {}
    for image in images:
        if image.id in by_id:
            raise _fail(path, 'images', f'duplicate image id {image.id}')
        by_id[image.id] = image
    people: dict[int, list[PoseTrackPerson]] = {}
    version = 2018
    for k, entry in enumerate(raw_people):
        person = _parse_person(entry, path, k)
        if order is not None:
            person.keypoints = person.keypoints[order]
            person.scores = None if person.scores is None else person.scores[order]
        if person.image_id not in by_id:
            raise _fail(path, f'annotations[{k}]', f'image_id {person.image_id} is not in images')
        if person.person_id is not None:
            version = 2021
        people.setdefault(person.image_id, []).append(person)

    videos: dict[str, list[PoseTrackImage]] = {}
    for image in images:
        if image.is_labeled is None:
            image.is_labeled = image.id in people
        videos.setdefault(image.vid_id, []).append(image)
    result = []
    for vid_id, frames in videos.items():
        # Stable sort: file order breaks ties, as poseval pairs frames by their order in the file.
        frames = sorted(frames, key=lambda im: im.frame_id)
        declared = {im.nframes for im in frames if im.nframes is not None}
        if len(declared) > 1 or (declared and declared != {len(frames)}):
            raise _fail(path, f'video {vid_id}',
                        f"'nframes' says {sorted(declared)} but the file lists {len(frames)} frames")
        name = path.stem if len(videos) == 1 else vid_id
        frame_ids = {im.id for im in frames}
        result.append(PoseTrackVideo(
            name=name, source=path, images=frames,
            people={i: p for i, p in people.items() if i in frame_ids},
            version=version))
    return result


def read_posetrack(path: str | Path) -> list[PoseTrackVideo]:
    """Read a PoseTrack18/21 annotation directory (one JSON per video) or a single (merged) JSON."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob('*.json'))
        if not files:
            raise PoseTrackFormatError(f'{path}: no *.json annotation files in this directory')
        return [video for file in files for video in read_posetrack_file(file)]
    if not path.exists():
        raise PoseTrackFormatError(f'{path}: no such annotation file or directory')
    return read_posetrack_file(path)


def check_frames_exist(videos: list[PoseTrackVideo], image_root: str | Path) -> None:
    """Raise naming the first missing frame file (paths are ``image_root / file_name``)."""
    root = Path(image_root)
    for video in videos:
        for image in video.images:
            if not (root / image.file_name).is_file():
                raise FileNotFoundError(f'{video.source}: frame {image.file_name!r} (image id {image.id}) '
                                        f'not found under image root {root}')


def video_to_json(video: PoseTrackVideo) -> dict:
    """PoseTrack18-format dict of a video (ground truth or predictions), as the readers expect it."""
    images = []
    for image in video.images:
        entry = {'id': image.id, 'file_name': image.file_name, 'vid_id': image.vid_id, 'frame_id': image.frame_id,
                 'nframes': len(video.images), 'is_labeled': image.is_labeled}
        if image.ignore_regions:
            entry['ignore_regions_x'] = [region[:, 0].tolist() for region in image.ignore_regions]
            entry['ignore_regions_y'] = [region[:, 1].tolist() for region in image.ignore_regions]
        images.append(entry)
    annotations = []
    for image in video.images:
        for person in video.people_in(image):
            entry = {'image_id': image.id, 'category_id': 1, 'keypoints': person.keypoints.ravel().tolist()}
            optional = {'id': person.id, 'track_id': person.track_id, 'person_id': person.person_id,
                        'score': person.score}
            entry.update({key: value for key, value in optional.items() if value is not None})
            for key, array in (('bbox', person.bbox_xywh), ('bbox_head', person.bbox_head_xywh),
                               ('scores', person.scores)):
                if array is not None:
                    entry[key] = array.tolist()
            annotations.append(entry)
    categories = [{'supercategory': 'person', 'id': 1, 'name': 'person', 'keypoints': list(POSETRACK_KEYPOINT_NAMES)}]
    return {'images': images, 'annotations': annotations, 'categories': categories}


def write_posetrack_video(video: PoseTrackVideo, path: str | Path) -> Path:
    """Write a video as one PoseTrack18-format JSON file (creating the directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(video_to_json(video)))
    return path
