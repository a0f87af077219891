"""What a replay writes, frame by frame: the output bag, the per-frame JSONL, the overlay video.

Also the recorder of the LR windows fed to the model (calibration data for INT8 engines).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from starpose_ros.bag_tools import bagio
from starpose_ros.bag_tools.bag_source import BagEvalError
from starpose_ros.core.backends.base import InferenceBackend, InferenceOutput
from starpose_ros.core.messages import pose_array
from starpose_ros.core.types import FrameResult

POSES_TOPIC, OVERLAY_TOPIC, MOSAIC_TOPIC = '/poses', '/overlay', '/sr_mosaic'


def frame_record(result: FrameResult, index: int) -> dict:
    """The JSON line of one frame."""
    return {'frame': index, 'stamp_ns': result.stamp_ns, 'frame_id': result.frame_id,
            'keypoint_layout': result.keypoint_layout,
            'timings_ms': {k: round(v, 3) for k, v in result.timings_ms.items()},
            'persons': [{'track_id': p.track_id, 'box_xywh': [round(float(v), 2) for v in p.box_xywh],
                         'score': round(float(p.score), 4),
                         'keypoints': [[round(float(v), 2) for v in k[:2]] + [round(float(k[2]), 4)]
                                       for k in p.keypoints]}
                        for p in result.persons]}


class Outputs:
    """Output bag, per-frame JSONL and overlay video, appended frame by frame.

    The bag holds the poses; the overlay and mosaic images (~2 MB a frame at full resolution)
    only with `bag_images`. A failed write (a full disk) becomes one BagEvalError naming the
    file; `close` still finishes every file it can, so what was written stays readable.
    """

    def __init__(self, folder: Path, typestore, fps: float, write_video: bool, bag_images: bool = False):
        self.folder = folder
        self.bag_path = folder / 'output_bag'
        self.jsonl_path = folder / 'frames.jsonl'
        self.video_path = folder / 'overlay.mp4'
        for stale in (self.bag_path, self.jsonl_path, self.video_path):  # outputs of an earlier run
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        self.typestore = typestore
        self.bag = bagio.BagWriter(self.bag_path, storage='mcap', typestore=typestore)
        self.jsonl = open(self.jsonl_path, 'w')  # noqa: SIM115 - closed in close()
        self.fps, self.write_video, self.bag_images = fps, write_video, bag_images
        self.video = None
        self.frames_written = 0
        self.close_errors: list[str] = []

    def write(self, result: FrameResult, index: int, bag_time_ns: int) -> None:
        """Append one frame's messages, JSON line and video frame."""
        target = self.bag_path
        try:
            self.bag.write(POSES_TOPIC, pose_array(self.typestore.types, result), bag_time_ns)
            for topic, image in ((OVERLAY_TOPIC, result.overlay_rgb), (MOSAIC_TOPIC, result.mosaic_rgb)):
                if self.bag_images and image is not None:
                    self.bag.write(topic, bagio.image_message(self.typestore, image, result.stamp_ns,
                                                              result.frame_id), bag_time_ns)
            target = self.video_path
            if result.overlay_rgb is not None:
                self._video_frame(result.overlay_rgb)
            target = self.jsonl_path
            self.jsonl.write(json.dumps(frame_record(result, index)) + '\n')
            self.jsonl.flush()
        except OSError as error:
            raise BagEvalError(f'cannot write {target}: {error.strerror or error}') from error
        self.frames_written += 1

    def _video_frame(self, overlay_rgb: np.ndarray) -> None:
        if not self.write_video:
            return
        height, width = overlay_rgb.shape[:2]
        if self.video is None:
            self.video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*'mp4v'), self.fps,
                                         (width, height))
            if not self.video.isOpened():
                raise BagEvalError(f'OpenCV cannot write {self.video_path} (no mp4v encoder?)')
            self._size = (width, height)
        if (width, height) != self._size:  # a video has one size: later frames are resized
            overlay_rgb = cv2.resize(overlay_rgb, self._size, interpolation=cv2.INTER_AREA)
        self.video.write(cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish every file (safe to call after an error); failures are kept in `close_errors`."""
        closers = [(self.bag_path, self.bag.close), (self.jsonl_path, self.jsonl.close)]
        if self.video is not None:
            closers.append((self.video_path, self.video.release))
        for path, close in closers:
            try:
                close()
            except OSError as error:
                self.close_errors.append(f'cannot finish {path}: {error.strerror or error}')


class RecordingBackend(InferenceBackend):
    """Passes calls through and keeps up to `limit` LR windows (INT8 calibration data for TensorRT)."""

    def __init__(self, inner: InferenceBackend, limit: int):
        self.inner, self.limit = inner, limit
        self.name = inner.name
        self.windows: list[np.ndarray] = []

    @property
    def model_info(self):
        """The wrapped backend's model info."""
        return self.inner.model_info

    def _run(self, lr_frames: np.ndarray) -> InferenceOutput:
        room = self.limit - sum(len(w) for w in self.windows)
        if room > 0:
            self.windows.append(lr_frames[:room].copy())
        return self.inner.infer(lr_frames)

    def save(self, path) -> tuple[Path, int]:
        """Write the windows as one uint8 .npy (N, T, h, w, 3); return the file (numpy adds .npy) and N."""
        shape = (0, *self.model_info.input_shape)
        windows = np.concatenate(self.windows) if self.windows else np.zeros(shape, np.uint8)
        path = Path(path)
        path = path if path.suffix == '.npy' else path.with_name(path.name + '.npy')
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, windows)
        return path, len(windows)

    def close(self) -> None:
        """Close the wrapped backend."""
        self.inner.close()
