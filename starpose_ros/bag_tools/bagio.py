"""rosbag2 files without ROS: typestore with starpose_msgs, message builders, a writer and a reader.

Built on the `rosbags` library, so bags can be written and read where rclpy and rosbag2_py are
absent (training machines, CI). Bags written here embed their message definitions, so
`ros2 bag play` and any rosbags reader decode them without the StarPose interfaces installed.

Typical use::

    typestore = starpose_typestore()
    with BagWriter('run1', storage='mcap', typestore=typestore) as bag:
        bag.write('/image', image_message(typestore, rgb, stamp_ns, 'camera'))
        bag.write('/detections', detections_message(typestore, detections, stamp_ns, 'camera'))
    for item in read_messages('run1', ['/image', '/detections']):
        ...  # item.topic, item.timestamp_ns, item.msg; decode_image(item.msg) -> RGB array
"""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from starpose_ros.core.image_codec import encode_image, image_message_to_rgb
from starpose_ros.core.messages import header_stamp_ns, make_header
from starpose_ros.core.types import Detection

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
DETECTIONS = 'starpose_msgs/msg/TrackedDetectionArray'
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
DISTROS = {'humble': Stores.ROS2_HUMBLE, 'jazzy': Stores.ROS2_JAZZY, 'kilted': Stores.ROS2_KILTED}
BAG_VERSION = 8  # rosbag2 metadata version that Jazzy and newer read
decode_image = image_message_to_rgb  # the bag tools' name for the core's one image decoder
MCAP_MAGIC = b'\x89MCAP0\r\n'
MCAP_CHUNK, MCAP_DATA_END = 0x06, 0x0F  # record opcodes of the MCAP format


class BagIOError(RuntimeError):
    """A bag cannot be written or read as asked; the message names the bag, topic or field."""


def find_msg_dir() -> Path:
    """Directory of the starpose_msgs `.msg` files: the source checkout, else a colcon install."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo / 'msg' / 'msg', repo / 'install' / 'starpose_msgs' / 'share' / 'starpose_msgs' / 'msg']
    for prefix in filter(None, os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)):
        candidates.append(Path(prefix) / 'share' / 'starpose_msgs' / 'msg')
    for directory in candidates:
        if (directory / 'TrackedDetectionArray.msg').is_file():
            return directory
    raise BagIOError('starpose_msgs .msg files not found; looked in: ' + ', '.join(map(str, candidates)))


def starpose_typestore(distro: str = 'jazzy', msg_dir: str | Path | None = None) -> Typestore:
    """A rosbags typestore of a ROS 2 distro's standard messages plus all starpose_msgs types."""
    if distro not in DISTROS:
        raise BagIOError(f'unknown ROS 2 distro {distro!r}; choose one of {sorted(DISTROS)}')
    directory = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    files = sorted(directory.glob('*.msg'))
    if not files:
        raise BagIOError(f'no .msg files in {directory}')
    typestore = get_typestore(DISTROS[distro])
    types = {}
    for path in files:
        try:
            types.update(get_types_from_msg(path.read_text(), f'starpose_msgs/msg/{path.stem}'))
        except TypesysError as err:
            raise BagIOError(f'{path}: cannot parse message definition: {err}') from err
    typestore.register(types)
    return typestore


def _header(typestore: Typestore, stamp_ns: int, frame_id: str):
    try:
        return make_header(typestore.types, stamp_ns, frame_id)
    except ValueError as error:  # a negative stamp: the bag tools' own error type
        raise BagIOError(str(error)) from None


def image_message(typestore: Typestore, rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = 'rgb8'):
    """A sensor_msgs/Image (rgb8 or bgr8) from an (H, W, 3) uint8 RGB array."""
    fields = encode_image(rgb, encoding)
    return typestore.types[IMAGE](
        header=_header(typestore, stamp_ns, frame_id), height=fields.height, width=fields.width,
        encoding=fields.encoding, is_bigendian=0, step=fields.step, data=np.frombuffer(fields.data, np.uint8))


def compressed_image_message(typestore: Typestore, rgb: np.ndarray, stamp_ns: int, frame_id: str,
                             image_format: str = 'jpeg', quality: int = 90):
    """A sensor_msgs/CompressedImage (jpeg or png) from an (H, W, 3) uint8 RGB array."""
    if image_format not in ('jpeg', 'png'):
        raise BagIOError(f"compressed image format must be 'jpeg' or 'png', got {image_format!r}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise BagIOError(f'expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if image_format == 'jpeg' else []
    ok, data = cv2.imencode('.jpg' if image_format == 'jpeg' else '.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BagIOError(f'OpenCV could not encode a {rgb.shape} image as {image_format}')
    return typestore.types[COMPRESSED_IMAGE](header=_header(typestore, stamp_ns, frame_id),
                                             format=image_format, data=data.reshape(-1))


def detections_message(typestore: Typestore, detections: Iterable[Detection], stamp_ns: int, frame_id: str,
                       class_id: str = 'person'):
    """A starpose_msgs/TrackedDetectionArray; box centres/sizes from (x, y, w, h), id = track id or ''."""
    item = typestore.types['starpose_msgs/msg/TrackedDetection']
    boxes = []
    for det in detections:
        x, y, w, h = (float(v) for v in det.box_xywh)
        boxes.append(item(id='' if det.track_id is None else str(det.track_id), class_id=class_id,
                          score=float(det.score), center_x=x + 0.5 * w, center_y=y + 0.5 * h, size_x=w, size_y=h))
    return typestore.types[DETECTIONS](header=_header(typestore, stamp_ns, frame_id), detections=boxes)


class BagWriter:
    """Writes a rosbag2 (sqlite3 or mcap); one connection per topic, created on its first message."""

    def __init__(self, path: str | Path, storage: str = 'sqlite3', typestore: Typestore | None = None):
        if storage not in STORAGES:
            raise BagIOError(f'unknown bag storage {storage!r}; choose one of {sorted(STORAGES)}')
        self.path = Path(path)
        self.typestore = typestore or starpose_typestore()
        try:
            self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
            self._writer.open()
        except WriterError as err:
            raise BagIOError(f'cannot create bag {self.path}: {err}') from err
        self._connections: dict[str, object] = {}
        self.message_count = 0

    def write(self, topic: str, msg, timestamp_ns: int | None = None) -> None:
        """Serialise and append `msg`; the bag time defaults to the message's header stamp."""
        msgtype = msg.__msgtype__
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagIOError(f'{self.path}: topic {topic} carries {connection.msgtype}, cannot also write {msgtype}')
        if timestamp_ns is None:
            timestamp_ns = header_stamp_ns(msg)
        self._writer.write(connection, int(timestamp_ns), self.typestore.serialize_cdr(msg, msgtype))
        self.message_count += 1

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml, then the chunk checksums of an mcap); idempotent."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            for mcap_file in self.path.glob('*.mcap'):
                add_chunk_crcs(mcap_file)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_chunk_crcs(mcap_file: Path) -> int:
    """Fill in the CRC-32 of every uncompressed chunk of an mcap file; return how many were written.

    rosbags writes chunks with CRC 0 ("none"), so flipped bytes would replay as changed pixels.
    Readers (rosbags, the mcap tools, rosbag2) check a non-zero CRC. The field sits at a fixed
    offset in each Chunk record, so this patches it in place after the writer closed the file.
    """
    written = 0
    with open(mcap_file, 'r+b') as stream:
        offset = len(MCAP_MAGIC)
        stream.seek(offset)
        while True:
            head = stream.read(9)
            if len(head) < 9:
                break
            opcode, length = head[0], int.from_bytes(head[1:], 'little')
            if opcode == MCAP_DATA_END:
                break
            if opcode == MCAP_CHUNK:
                content = offset + 9
                stream.seek(content + 28)  # start, end time and uncompressed size (3 x u64), CRC (u32)
                compression = stream.read(int.from_bytes(stream.read(4), 'little'))
                records_length = int.from_bytes(stream.read(8), 'little')
                if compression == b'':  # the writer's default; a compressed chunk would need decompressing
                    crc = zlib.crc32(stream.read(records_length))
                    stream.seek(content + 24)
                    stream.write(struct.pack('<I', crc))
                    written += 1
            offset += 9 + length
            stream.seek(offset)
    return written


class BagMessage(NamedTuple):
    """One deserialised message with its topic, type and bag receive time."""

    topic: str
    msgtype: str
    timestamp_ns: int
    msg: object


class BagReader:
    """A rosbag2 directory or a bare `.mcap`/`.db3` file opened with rosbags' AnyReader.

    The one reading path of the bag tools (the replay's `BagSource` builds on it). A bag that
    cannot be opened, a truncated or corrupt one and an undecodable message raise BagIOError
    naming the bag and, where known, the message.
    """

    def __init__(self, path: str | Path, typestore: Typestore | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise BagIOError(f'bag not found: {self.path}')
        if self.path.is_dir() and not (self.path / 'metadata.yaml').is_file():
            raise BagIOError(f'{self.path} is not a rosbag2 directory (no metadata.yaml)')
        self.typestore = typestore or starpose_typestore()
        try:
            self.reader = AnyReader([self.path], default_typestore=self.typestore)
            self.reader.open()
        except (AnyReaderError, FileNotFoundError) as error:
            raise BagIOError(f'cannot open bag {self.path}: {error}') from error
        except Exception as error:  # storage plugins raise their own types on truncated/corrupt files
            raise BagIOError(f'cannot open bag {self.path} (truncated or corrupt?): {error}') from error
        self.topics = {c.topic: c.msgtype for c in self.reader.connections}
        self.counts: dict[str, int] = {}
        for connection in self.reader.connections:
            self.counts[connection.topic] = self.counts.get(connection.topic, 0) + connection.msgcount

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
        """Messages of `topics` (all when None) in bag-time order, across topics."""
        connections = [c for c in self.reader.connections if topics is None or c.topic in topics]
        count = 0
        try:
            for connection, timestamp, raw in self.reader.messages(connections=connections):
                try:
                    msg = self.reader.deserialize(raw, connection.msgtype)
                except Exception as error:
                    raise BagIOError(f'{self.path}: cannot decode message {count} on {connection.topic} '
                                     f'({connection.msgtype}): {error}') from error
                count += 1
                yield BagMessage(connection.topic, connection.msgtype, timestamp, msg)
        except BagIOError:
            raise
        except Exception as error:  # truncated chunks, bad sqlite pages, ...
            raise BagIOError(f'{self.path}: reading failed after {count} message(s) on {topics} '
                             f'(truncated or corrupt bag?): {error}') from error

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bag_topics(path: str | Path, typestore: Typestore | None = None) -> dict[str, str]:
    """Topic -> message type of every connection in the bag."""
    with BagReader(path, typestore) as bag:
        return dict(bag.topics)


def read_messages(path: str | Path, topics: Sequence[str] | None = None,
                  typestore: Typestore | None = None) -> Iterator[BagMessage]:
    """Deserialised messages of `topics` (all when None) in bag-time order, across topics.

    A generator: a missing bag or topic raises `BagIOError` (listing the bag's topics) when
    iteration starts.
    """
    with BagReader(path, typestore) as bag:
        missing = sorted(set(topics or ()) - set(bag.topics))
        if missing:
            raise BagIOError(f'bag {path} has no topic(s) {missing}; it has {sorted(bag.topics)}')
        yield from bag.messages(topics)
