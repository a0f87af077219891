"""Frames of a video file or an image folder as RGB arrays (OpenCV only, no ROS, no bags).

Shared by `starpose-video2bag` and `starpose-label` (which runs in the teacher venv, where
rosbags is not installed).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


class FrameSourceError(RuntimeError):
    """The input cannot be read (or converted); the message names the file or frame."""


def image_folder_frames(folder: Path) -> tuple[list[Path], Iterator[np.ndarray]]:
    """Image files of a folder in name order and an iterator of their RGB arrays."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FrameSourceError(f'{folder}: no images ({", ".join(IMAGE_SUFFIXES)})')

    def frames():
        for path in files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FrameSourceError(f'{path}: OpenCV cannot read this image')
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return files, frames()


def video_frames(path: Path) -> tuple[float, int, Iterator[np.ndarray]]:
    """The frame rate (0 if unknown), the frame count the container claims (0 if unknown), the frames.

    A truncated file yields fewer frames than it claims; the caller compares and warns.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameSourceError(f'{path}: OpenCV cannot open this video')
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    claimed = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)

    def frames():
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
    return fps, claimed, frames()
