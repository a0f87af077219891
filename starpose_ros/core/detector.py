"""A built-in person detector so a camera alone is enough for a first try: OpenCV's HOG + SVM.

HOG's default people model only sees upright, fully visible people of at least 64x128 pixels,
at tens to hundreds of ms per VGA-to-1080p frame on a CPU; `upscale` > 1 finds smaller people
at a higher cost. A real detector (e.g. a YOLO node publishing Detection2DArray) is faster and
far more accurate: wire its topic instead whenever you can.
"""
from __future__ import annotations

import cv2
import numpy as np

from .types import Detection


class HogPersonDetector:
    """Person boxes from `cv2.HOGDescriptor`'s default people detector (scores are SVM margins)."""

    def __init__(self, upscale: float = 1.0, min_score: float = 0.0, win_stride: int = 8, pyramid_scale: float = 1.05):
        if upscale <= 0 or win_stride < 1 or pyramid_scale <= 1.0:
            raise ValueError(f'need upscale > 0, win_stride >= 1, pyramid_scale > 1; got '
                             f'{upscale}, {win_stride}, {pyramid_scale}')
        self.upscale = upscale
        self.min_score = min_score
        self.win_stride = (win_stride, win_stride)
        self.pyramid_scale = pyramid_scale
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Boxes (image pixels) of the people found in an RGB uint8 image, best first."""
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        if self.upscale != 1.0:
            gray = cv2.resize(gray, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        boxes, scores = self._hog.detectMultiScale(gray, winStride=self.win_stride, padding=(8, 8),
                                                   scale=self.pyramid_scale)
        found = [Detection(tuple(float(v) / self.upscale for v in box), None, float(score))
                 for box, score in zip(np.reshape(boxes, (-1, 4)), np.ravel(scores), strict=True)
                 if float(score) >= self.min_score]
        return sorted(found, key=lambda d: -d.score)
