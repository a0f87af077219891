"""Image codec: every encoding, row padding, big-endian mono16, compressed images, bad input."""
import array

import cv2
import numpy as np
import pytest

from starpose_ros.core.image_codec import (
    ImageDecodeError,
    decode_compressed,
    decode_image,
    decode_image_msg,
    encode_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def _pack(pixels: np.ndarray, padding: int) -> tuple[bytes, int]:
    """Rows of `pixels` as bytes with `padding` junk bytes after each row."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], padding), 0xAB, dtype=np.uint8)
    packed = np.concatenate([rows, junk], axis=1)
    return packed.tobytes(), packed.shape[1]


def _gray(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@pytest.mark.parametrize('padding', [0, 3])
@pytest.mark.parametrize('encoding,make,expected', [
    ('rgb8', lambda x: x, lambda x: x),
    ('bgr8', lambda x: x[..., ::-1].copy(), lambda x: x),
    ('8UC3', lambda x: x[..., ::-1].copy(), lambda x: x),
    ('rgba8', lambda x: np.dstack([x, np.full(x.shape[:2], 7, np.uint8)]), lambda x: x),
    ('bgra8', lambda x: np.dstack([x[..., ::-1], np.full(x.shape[:2], 7, np.uint8)]), lambda x: x),
    ('mono8', _gray, lambda x: np.repeat(_gray(x)[..., None], 3, axis=2)),
])
def test_8bit_encodings_with_and_without_row_padding(encoding, make, expected, padding):
    data, step = _pack(np.ascontiguousarray(make(RGB)), padding)
    out = decode_image(6, 5, encoding, step, data)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, expected(RGB))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('padding', [0, 2])
def test_mono16_scales_by_fixed_shift_in_either_byte_order(bigendian, padding):
    values = RNG.integers(0, 65536, (6, 5)).astype('>u2' if bigendian else '<u2')
    data, step = _pack(values, padding)
    out = decode_image(6, 5, 'mono16', step, data, is_bigendian=bigendian)
    expected = (values.astype(np.uint32) >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], expected)


def test_accepts_rclpy_style_buffers_and_message_objects():
    data, step = _pack(RGB, 0)

    class Msg:
        height, width, encoding, is_bigendian = 6, 5, 'rgb8', 0

    msg = Msg()
    msg.step = step
    for buffer in (data, bytearray(data), array.array('B', data), list(data), np.frombuffer(data, np.uint8)):
        msg.data = buffer
        np.testing.assert_array_equal(decode_image_msg(msg), RGB)


@pytest.mark.parametrize('kwargs,reason', [
    (dict(encoding='yuv422'), 'unsupported encoding'),
    (dict(encoding='bayer_rggb8'), 'unsupported encoding'),
    (dict(height=0, step=15, data=b''), 'empty image'),
    (dict(width=0), 'empty image'),
    (dict(step=14), 'step 14 is smaller'),
    (dict(data=bytes(6 * 15 - 1)), 'data has 89 bytes'),
    (dict(data=bytes(6 * 15 + 15)), 'data has 105 bytes'),
    (dict(step=16), r'step\*height = 16\*6'),
])
def test_bad_images_raise_with_reason(kwargs, reason):
    args = dict(height=6, width=5, encoding='rgb8', step=15, data=bytes(90)) | kwargs
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(**args)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8'])
def test_encode_round_trips(encoding):
    fields = encode_image(RGB, encoding)
    assert (fields.height, fields.width, fields.step, fields.encoding) == (6, 5, 15, encoding)
    np.testing.assert_array_equal(decode_image(fields.height, fields.width, fields.encoding, fields.step,
                                               fields.data), RGB)


def test_encode_rejects_bad_arrays_and_encodings():
    with pytest.raises(ImageDecodeError, match='cannot encode'):
        encode_image(RGB, 'mono8')
    with pytest.raises(ImageDecodeError, match='uint8'):
        encode_image(RGB.astype(np.float32))
    with pytest.raises(ImageDecodeError, match=r'\(H, W, 3\)'):
        encode_image(RGB[..., 0])


def test_compressed_png_is_exact_and_jpeg_is_close():
    ok, png = cv2.imencode('.png', RGB[..., ::-1])
    np.testing.assert_array_equal(decode_compressed('png', png.tobytes()), RGB)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 1, 3))
    ok, jpeg = cv2.imencode('.jpg', smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = decode_compressed('rgb8; jpeg compressed bgr8', jpeg.tobytes())
    assert out.shape == (48, 64, 3) and np.abs(out.astype(int) - smooth).max() <= 4


@pytest.mark.parametrize('image_format,data,reason', [
    ('jpeg', b'', 'empty compressed'),
    ('jpeg', b'not a jpeg at all', 'could not decode 17 bytes'),
    ('16UC1; compressedDepth', b'\x00' * 20, 'compressed depth'),
])
def test_bad_compressed_images_raise(image_format, data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_compressed(image_format, data)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (OpenCV raises cv2.error instead of returning None)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\x00')) + chunk(b'IEND', b'')


def test_a_png_claiming_a_huge_size_is_a_decode_error_not_a_crash():
    data = _png_claiming(100000, 100000)
    with pytest.raises(ImageDecodeError, match='OpenCV refused|could not decode'):
        decode_compressed('png', data)
