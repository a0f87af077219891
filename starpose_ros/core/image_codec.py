"""Convert `sensor_msgs/Image`-shaped data to RGB numpy arrays and back, without cv_bridge.

Works on plain fields (height, width, encoding, step, is_bigendian, data), so the node, the bag
replay and tests share one implementation. Every failure raises `ImageDecodeError` naming the
field at fault; nothing is guessed.

mono16 is scaled to 8 bits by a fixed shift (value >> 8), not per-image min/max: the temporal
model needs the same brightness mapping in every frame of a window.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# encoding -> (channels, bytes per channel, conversion to RGB or None when already RGB)
_DECODERS = {
    'rgb8': (3, 1, None),
    'bgr8': (3, 1, cv2.COLOR_BGR2RGB),
    'rgba8': (4, 1, cv2.COLOR_RGBA2RGB),
    'bgra8': (4, 1, cv2.COLOR_BGRA2RGB),
    'mono8': (1, 1, cv2.COLOR_GRAY2RGB),
    'mono16': (1, 2, cv2.COLOR_GRAY2RGB),
}
# OpenCV-style aliases that camera drivers publish; same meaning as cv_bridge gives them.
_ALIASES = {'8UC1': 'mono8', '8UC3': 'bgr8', '8UC4': 'bgra8', '16UC1': 'mono16'}
SUPPORTED_ENCODINGS = tuple(_DECODERS) + tuple(_ALIASES)
ENCODABLE = ('rgb8', 'bgr8')


class ImageDecodeError(ValueError):
    """An image could not be decoded; the message says which field is wrong and why."""


@dataclass(frozen=True)
class EncodedImage:
    """The fields of a `sensor_msgs/Image` for an encoded RGB array."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes
    is_bigendian: int = 0


def _byte_array(data) -> np.ndarray:
    """View message bytes (bytes, bytearray, array.array, numpy, or a list of ints) as flat uint8."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def decode_image(height: int, width: int, encoding: str, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Return the image as an (H, W, 3) uint8 RGB array.

    For `rgb8` without row padding the result is a zero-copy view of `data` (read-only when
    `data` is `bytes`); other encodings return a new array.
    """
    height, width, step = int(height), int(width), int(step)
    name = _ALIASES.get(encoding, encoding)
    if name not in _DECODERS:
        raise ImageDecodeError(f'unsupported encoding {encoding!r}; supported: {", ".join(SUPPORTED_ENCODINGS)}')
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f'empty image: height={height}, width={width}')
    channels, depth, conversion = _DECODERS[name]
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageDecodeError(f'step {step} is smaller than width*bytes_per_pixel = {width}*{channels * depth} '
                               f'= {row_bytes} for {encoding}')
    raw = _byte_array(data)
    if raw.size != step * height:
        raise ImageDecodeError(f'data has {raw.size} bytes but step*height = {step}*{height} = {step * height}')
    rows = raw.reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype('>u2' if is_bigendian else '<u2')
        pixels = (rows.copy().view(dtype) >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if conversion is None:
        return pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def decode_image_msg(msg) -> np.ndarray:
    """Decode any object with `sensor_msgs/Image` attributes (a ROS message or a rosbags one)."""
    return decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))


def image_message_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a `sensor_msgs/Image` or `CompressedImage`, rclpy or rosbags alike."""
    if hasattr(msg, 'format') and not hasattr(msg, 'encoding'):
        return decode_compressed(msg.format, msg.data)
    return decode_image_msg(msg)


def decode_compressed(image_format: str, data) -> np.ndarray:
    """Decode a `sensor_msgs/CompressedImage` (jpeg or png) to (H, W, 3) uint8 RGB."""
    if 'compresseddepth' in image_format.lower():
        raise ImageDecodeError(f'compressed depth images are not supported (format {image_format!r})')
    raw = _byte_array(data)
    if raw.size == 0:
        raise ImageDecodeError(f'empty compressed image (format {image_format!r})')
    try:  # OpenCV raises (not returns None) on some headers, e.g. a PNG claiming 100000 x 100000 pixels
        bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise ImageDecodeError(f'OpenCV refused {raw.size} bytes of compressed image (format {image_format!r}): '
                               f'{str(error).strip().splitlines()[-1]}') from None
    if bgr is None:
        raise ImageDecodeError(f'OpenCV could not decode {raw.size} bytes of compressed image '
                               f'(format {image_format!r})')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_image(rgb: np.ndarray, encoding: str = 'rgb8') -> EncodedImage:
    """Encode an (H, W, 3) uint8 RGB array as `rgb8` or `bgr8` message fields (no row padding)."""
    if encoding not in ENCODABLE:
        raise ImageDecodeError(f'cannot encode to {encoding!r}; supported: {", ".join(ENCODABLE)}')
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageDecodeError(f'expected a non-empty (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}')
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if encoding == 'bgr8' else np.ascontiguousarray(rgb)
    height, width = pixels.shape[:2]
    return EncodedImage(height=height, width=width, encoding=encoding, step=width * 3, data=pixels.tobytes())
