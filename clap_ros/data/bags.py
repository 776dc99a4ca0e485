"""Rosbag2 (MCAP) reading and writing over the ``rosbags`` library, with the ROS 2 Jazzy typestore.

BagReader also reads sqlite3 bags (``.db3``, rosbag2's default before Iron), as a rosbag2
directory or a bare ``.db3`` file, so bags recorded on older or differently configured robots
convert without re-recording.

Bags are rosbag2 directories (``metadata.yaml`` + one ``.mcap`` file) that ``ros2 bag info/play``
read as they are. Messages are CDR bytes: either raw bytes from an rclpy ``raw=True`` subscription
(``BagWriter.write_cdr``) or rosbags message objects serialised here (``BagWriter.write``); the two
are byte-for-byte identical for the types we record (tests/unit/test_bags_serialization.py).

The message builders turn numpy data into rosbags message objects, so code that records without ROS
(``clap-ros sim record --direct``) writes exactly what the ROS nodes would publish.
"""

from __future__ import annotations

import io
import json
import re
import struct
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from clap_ros import rostime, topics as T
from clap_ros.data.jsonable import json_default
from clap_ros.rostime import stamp_to_ns  # re-exported: readers take it from here

PathLike = Union[str, Path]

# rosbag2 metadata version 9 is what Jazzy's rosbag2 writes; rosbags supports 8 and 9.
BAG_VERSION = 9


class BagError(RuntimeError):
    """A bag is missing, corrupt, truncated, or lacks what the caller needs (the message names
    it)."""


_TYPESTORE = None


def typestore():
    """The ROS 2 Jazzy typestore (built once: it holds every standard message class)."""
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
    return _TYPESTORE


def msg_class(msgtype: str):
    """The rosbags dataclass for a ROS type name such as ``sensor_msgs/msg/Image``."""
    try:
        return typestore().types[msgtype]
    except KeyError:
        raise BagError(
            "unknown message type '%s' (not in the ROS 2 Jazzy typestore)" % msgtype
        ) from None


def serialize(msg: Any, msgtype: Optional[str] = None) -> bytes:
    """CDR bytes of a rosbags message object (the same bytes rclpy's serialize_message gives)."""
    msgtype = msgtype or msg.__msgtype__
    return bytes(typestore().serialize_cdr(msg, msgtype))


def deserialize(data: Union[bytes, memoryview], msgtype: str) -> Any:
    """A rosbags message object from CDR bytes.

    Unlike rosbags' own ``deserialize_cdr`` this accepts trailing bytes after the message: Fast DDS
    (the Jazzy default RMW, and what rclpy's serialize_message uses) sizes its buffer with the
    alignment an empty sequence *would* need and ships the unused tail, e.g. 4 extra bytes on a
    JointState with no efforts. The message itself is laid out exactly as rosbags lays it out.
    """
    from rosbags.serde import SerdeError

    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if len(view) < 4 or bytes(view[:2]) not in (b"\x00\x00", b"\x00\x01"):
        raise SerdeError("invalid or unsupported CDR encapsulation for %r" % msgtype)
    ts = typestore()
    msgdef = ts.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if view[1] else msgdef.deserialize_cdr_be
    try:
        msg, pos = func(view[4:], 0, msgdef.cls, ts)
    except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise SerdeError("could not deserialize %r: %s" % (msgtype, exc)) from None
    if pos + 4 > len(view):
        raise SerdeError("CDR data for %r is shorter than the message" % msgtype)
    return msg


# --- QoS --------------------------------------------------------------------------------------
# Recorded with each topic so `ros2 bag play` offers the same QoS the publisher did: the sensor-data
# profile for cameras, transient-local for latched topics (instruction, sim status) so a late
# subscriber still gets them on replay, reliable for everything else.
QOS_KINDS = ("reliable", "sensor_data", "transient_local")
# RMW_DURATION_INFINITE as (sec, nsec): INT64_MAX nanoseconds.
INFINITE_QOS_TIME = (9223372036, 854775807)


def make_qos(kind: str = "reliable", depth: int = 10):
    """A rosbags ``Qos`` for one of QOS_KINDS."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    if kind not in QOS_KINDS:
        raise ValueError("unknown QoS kind '%s'; choose one of %s" % (kind, ", ".join(QOS_KINDS)))
    reliability = QosReliability.BEST_EFFORT if kind == "sensor_data" else QosReliability.RELIABLE
    durability = (
        QosDurability.TRANSIENT_LOCAL if kind == "transient_local" else QosDurability.VOLATILE
    )
    if kind == "sensor_data":
        depth = 5
    if kind == "transient_local":
        depth = 1
    # Our publishers leave deadline, lifespan and lease duration unset; the RMW (Fast DDS on
    # Jazzy) then offers "infinite", which it reports, and rosbag2 records, as RMW_DURATION_INFINITE
    # (INFINITE_QOS_TIME). tests/ros/test_bag_qos.py compares these with what rmw reports.
    inf = QosTime(sec=INFINITE_QOS_TIME[0], nsec=INFINITE_QOS_TIME[1])
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=durability,
        deadline=inf,
        lifespan=inf,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=inf,
        avoid_ros_namespace_conventions=False,
    )


def default_qos_kind(topic: str) -> str:
    if topic in (T.CAMERA_IMAGE, T.CAMERA_INFO, T.WRIST_IMAGE, T.WRIST_INFO):
        return "sensor_data"
    if topic in (T.INSTRUCTION, T.SIM_STATUS):
        return "transient_local"
    return "reliable"


# --- writer -----------------------------------------------------------------------------------
# What rosbag2 on Jazzy writes and rosbags (a ROS-free writer) does not: ``ros_distro: jazzy`` in
# metadata.yaml and in the MCAP file's ``rosbag2`` metadata record (inside serialized_metadata,
# where Jazzy's reader looks, and as the ``ROS_DISTRO`` key older readers use). Every message type
# comes from the Jazzy typestore, so the distro is a fact, not the environment's guess.
ROS_DISTRO = "jazzy"
DEFAULT_RECORDER = "clap_ros"
_DISTRO_LINE = re.compile(r"^(\s*ros_distro:)\s*rosbags\s*$", re.MULTILINE)
_MCAP_METADATA_OPCODE = 0x0C
_CLOSE_LOCK = threading.Lock()


def _with_distro(metadata_yaml: str) -> str:
    return _DISTRO_LINE.sub(r"\1 %s" % ROS_DISTRO, metadata_yaml)


def _mcap_writer(checksum: bool):
    """rosbags' MCAP writer, writing the Jazzy metadata record, and (``checksum``) zstd chunks
    with frame checksums.

    rosbags writes chunk CRCs as 0 (= not checked), so without a checksum a flipped byte inside a
    chunk decodes silently into wrong pixels or joint values. A zstd content checksum makes any
    such damage a read error instead; every zstd decoder (ros2 bag, Foxglove) verifies it.
    """
    from rosbags.rosbag2 import storage_mcap
    from rosbags.rosbag2.enums import CompressionMode
    from rosbags.rosbag2.storage_mcap import McapWriter

    class JazzyMcapWriter(McapWriter):
        def __init__(self, path, compression):
            super().__init__(path, compression)
            if checksum and compression == CompressionMode.STORAGE:
                try:
                    from compression import zstd  # Python >= 3.14
                except ImportError:
                    from backports import zstd
                opts = {zstd.CompressionParameter.checksum_flag: 1}
                self.compressor = lambda data: zstd.compress(data, options=opts)

        def close(self, version: int, metadata: str) -> None:
            metadata = _with_distro(metadata)
            write_record = storage_mcap.write_record

            def jazzy_record(bio, op_, record):
                # rosbags' close writes the metadata record inline: rebuilt here with both keys.
                if op_ == _MCAP_METADATA_OPCODE:
                    record = io.BytesIO()
                    storage_mcap.write_string(record, "rosbag2")
                    body = io.BytesIO()
                    for k, v in (("serialized_metadata", metadata), ("ROS_DISTRO", ROS_DISTRO)):
                        storage_mcap.write_string(body, k)
                        storage_mcap.write_string(body, v)
                    storage_mcap.write_uint32(record, body.tell())
                    record.write(body.getbuffer())
                write_record(bio, op_, record)

            with _CLOSE_LOCK:  # the module function is swapped for this close only
                storage_mcap.write_record = jazzy_record
                try:
                    super().close(version, metadata)
                finally:
                    storage_mcap.write_record = write_record

    return JazzyMcapWriter


class BagWriter:
    """Write one rosbag2 MCAP bag directory.

    ``path`` is the bag directory to create (it must not exist: a bag is never overwritten).
    Use as a context manager; the metadata.yaml is written on close, also when the body raised, so
    whatever was recorded before an error stays readable.
    """

    def __init__(
        self,
        path: PathLike,
        compress: bool = True,
        version: int = BAG_VERSION,
        storage: str = "mcap",
        recorder: str = DEFAULT_RECORDER,
    ):
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
        from rosbags.rosbag2.errors import WriterError

        self.path = Path(path)
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(
                "cannot create bag %s: unknown storage '%s' (mcap or sqlite3)"
                % (self.path, storage)
            )
        try:
            self._writer = Writer(self.path, version=version, storage_plugin=plugin)
        except WriterError as e:
            raise BagError("cannot create bag %s: %s" % (self.path, e)) from None
        # sqlite3 (only for tests and interchange with old tools) stays uncompressed: rosbag2's
        # per-message sqlite compression is not something `ros2 bag` on every distro reads.
        if compress and storage == "mcap":
            # zstd chunk compression inside the MCAP file: ros2 bag's mcap plugin reads it natively
            # and rendered camera frames shrink several-fold.
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        plugins = dict(self._writer.STORAGE_PLUGINS)
        plugins[StoragePlugin.MCAP] = _mcap_writer(checksum=compress)
        self._writer.STORAGE_PLUGINS = plugins
        # ROS 2's metadata reader expects custom_data to be a map; rosbags writes null when empty.
        # ``recorder`` says which recorder wrote the bag (a caller may refine it with
        # set_custom_data): every bag has it, as docs/DATASET.md promises.
        self._writer.set_custom_data("writer", "clap_ros")
        self._writer.set_custom_data("recorder", str(recorder))
        self._connections: Dict[str, Any] = {}
        self._types: Dict[str, str] = {}
        self._counts: Dict[str, int] = {}
        self._open = False

    # context manager
    def __enter__(self) -> "BagWriter":
        self.open()
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def open(self) -> None:
        from rosbags.rosbag2.errors import WriterError

        if self._open:
            return
        try:
            self._writer.open()
        except WriterError as e:
            raise BagError("cannot create bag %s: %s" % (self.path, e)) from None
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()
            meta = self.path / "metadata.yaml"
            meta.write_text(_with_distro(meta.read_text()))

    def set_custom_data(self, key: str, value: str) -> None:
        """A string key/value stored in metadata.yaml's custom_data (e.g. robot, task, seed)."""
        self._writer.set_custom_data(str(key), str(value))

    @property
    def topics(self) -> Dict[str, str]:
        return dict(self._types)

    @property
    def counts(self) -> Dict[str, int]:
        return dict(self._counts)

    def add_topic(self, topic: str, msgtype: str, qos: Any = None) -> None:
        """Register a topic. ``qos`` is a rosbags Qos, a kind name from QOS_KINDS, or None (chosen
        from the topic name). Adding the same topic and type twice is a no-op."""
        if not self._open:
            raise BagError("bag %s is not open" % self.path)
        if topic in self._types:
            if self._types[topic] != msgtype:
                raise BagError(
                    "bag %s: topic %s already added with type %s, not %s"
                    % (self.path, topic, self._types[topic], msgtype)
                )
            return
        msg_class(msgtype)  # a clear error for an unknown type
        if qos is None:
            qos = default_qos_kind(topic)
        if isinstance(qos, str):
            qos = make_qos(qos)
        conn = self._writer.add_connection(
            topic, msgtype, typestore=typestore(), offered_qos_profiles=[qos]
        )
        self._connections[topic] = conn
        self._types[topic] = msgtype
        self._counts[topic] = 0

    def write_cdr(self, topic: str, timestamp_ns: int, data: Union[bytes, memoryview]) -> None:
        """Write raw CDR bytes (e.g. from an rclpy ``raw=True`` subscription) to a registered
        topic."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(
                "bag %s: topic %s was not added (call add_topic first)" % (self.path, topic)
            )
        if timestamp_ns < 0:
            raise BagError("bag %s: negative timestamp %d on %s" % (self.path, timestamp_ns, topic))
        self._writer.write(conn, int(timestamp_ns), data)
        self._counts[topic] += 1

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Serialise a rosbags message object and write it; the topic is added on first use."""
        msgtype = msg.__msgtype__
        if topic not in self._types:
            self.add_topic(topic, msgtype)
        elif self._types[topic] != msgtype:
            raise BagError(
                "bag %s: topic %s has type %s, got a %s"
                % (self.path, topic, self._types[topic], msgtype)
            )
        self.write_cdr(topic, timestamp_ns, serialize(msg, msgtype))


# --- reader -----------------------------------------------------------------------------------
class BagReader:
    """Read a rosbag2 bag (directory with metadata.yaml, or a bare ``.mcap`` / ``.db3`` file), in
    either storage (MCAP or sqlite3).

    Every failure (missing path, unreadable metadata, corrupt or truncated storage, a message that
    does not deserialise) is raised as BagError naming the bag and the problem.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._reader = None
        self.warnings: List[str] = []

    def __enter__(self) -> "BagReader":
        self.open()
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _fail(self, problem: str, err: Optional[BaseException] = None) -> BagError:
        detail = (
            (": %s" % (err,))
            if err is not None and str(err)
            else ((": %s" % type(err).__name__) if err is not None else "")
        )
        return BagError("bag %s: %s%s" % (self.path, problem, detail))

    def open(self) -> None:
        from rosbags.rosbag2 import Reader

        if self._reader is not None:
            return
        if not self.path.exists():
            raise self._fail("does not exist")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            raise self._fail("not a rosbag2 directory (no metadata.yaml)")
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as e:
            # rosbags raises ReaderError, KeyError, struct.error, ... on bad files
            raise self._fail(
                "corrupt or truncated %s bag, cannot open" % self._storage_guess(), e
            ) from None
        self._reader = reader
        self.warnings = []
        files = [self.path] if self.path.is_file() else sorted(self.path.glob("*.db3"))
        for f in files:
            wal = f.with_name(f.name + "-wal")
            if wal.is_file() and wal.stat().st_size > 0:
                # rosbags opens sqlite read-only and immutable, so a write-ahead log left by a
                # recorder that did not shut down cleanly is not read.
                self.warnings.append(
                    "%s has a non-empty write-ahead log %s (the recorder did not "
                    "close the bag); messages only in the log are not read: run "
                    "`sqlite3 %s 'PRAGMA wal_checkpoint'` on a copy to recover them"
                    % (f.name, wal.name, f.name)
                )

    def _storage_guess(self) -> str:
        try:
            return self.storage
        except Exception:
            return "rosbag2"

    @property
    def storage(self) -> str:
        """'mcap' or 'sqlite3' (from the file suffix or metadata.yaml's storage_identifier)."""
        if self.path.is_file():
            return {".mcap": "mcap", ".db3": "sqlite3"}.get(self.path.suffix, self.path.suffix)
        meta = self.path / "metadata.yaml"
        for line in meta.read_text(errors="replace").splitlines():
            if "storage_identifier:" in line:
                return line.split(":", 1)[1].strip()
        return "unknown"

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    def _check(self):
        if self._reader is None:
            raise self._fail("not open")
        return self._reader

    @property
    def topics(self) -> Dict[str, str]:
        """topic -> message type."""
        return {c.topic: c.msgtype for c in self._check().connections}

    @property
    def message_counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for c in self._check().connections:
            out[c.topic] = out.get(c.topic, 0) + c.msgcount
        return out

    @property
    def start_time_ns(self) -> int:
        return int(self._check().start_time)

    @property
    def end_time_ns(self) -> int:
        return int(self._check().end_time)

    def require(self, topics: Iterable[str]) -> None:
        """Raise BagError naming every topic in ``topics`` that the bag lacks or holds no message
        of."""
        have = self.message_counts
        missing = [t for t in topics if have.get(t, 0) == 0]
        if missing:
            raise self._fail(
                "missing topic(s) %s (bag has %s)"
                % (", ".join(missing), ", ".join(sorted(have)) or "nothing")
            )

    def raw_messages(
        self,
        topics: Optional[Iterable[str]] = None,
        start_ns: Optional[int] = None,
        stop_ns: Optional[int] = None,
    ) -> Iterator[Tuple[str, str, int, bytes]]:
        """(topic, msgtype, timestamp_ns, CDR bytes) in log-time order, optionally only for log
        times in [start_ns, stop_ns)."""
        reader = self._check()
        wanted = None if topics is None else set(topics)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            return
        it = reader.messages(connections=conns, start=start_ns, stop=stop_ns)
        while True:
            try:
                conn, ts, data = next(it)
            except StopIteration:
                return
            except Exception as e:
                raise self._fail("corrupt or truncated data while reading", e) from None
            yield conn.topic, conn.msgtype, int(ts), data

    def __iter__(self) -> Iterator[Tuple[str, str, int, Any]]:
        """All messages, deserialised: ``for topic, msgtype, t_ns, msg in BagReader(p)``.
        Opens the bag if needed and closes it at the end when it opened it."""
        opened_here = self._reader is None
        self.open()
        try:
            yield from self.messages()
        finally:
            if opened_here:
                self.close()

    def messages(
        self,
        topics: Optional[Iterable[str]] = None,
        start_ns: Optional[int] = None,
        stop_ns: Optional[int] = None,
    ) -> Iterator[Tuple[str, str, int, Any]]:
        """(topic, msgtype, timestamp_ns, deserialised rosbags message) in log-time order."""
        for topic, msgtype, ts, data in self.raw_messages(topics, start_ns, stop_ns):
            try:
                msg = deserialize(data, msgtype)
            except Exception as e:
                raise self._fail(
                    "message on %s at %d ns does not deserialise as %s" % (topic, ts, msgtype), e
                ) from None
            yield topic, msgtype, ts, msg


BAG_FILE_SUFFIXES = (".mcap", ".db3")


def is_bag(path: PathLike) -> bool:
    """True for a rosbag2 directory (has metadata.yaml) or a bare .mcap / .db3 file."""
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").is_file()) or (
        p.is_file() and p.suffix in BAG_FILE_SUFFIXES
    )


def find_bags(root: PathLike) -> List[Path]:
    """Bags under ``root``: root itself if it is one, else every bag directory or loose .mcap /
    .db3 file below it (the files inside a bag directory belong to that bag), sorted by path."""
    root = Path(root)
    if is_bag(root):
        return [root]
    if not root.is_dir():
        raise BagError("%s: no such bag or directory" % root)
    bags: List[Path] = []
    bag_dirs = sorted(p.parent for p in root.rglob("metadata.yaml"))
    bags.extend(bag_dirs)
    for suffix in BAG_FILE_SUFFIXES:
        for f in sorted(root.rglob("*" + suffix)):
            if not any(d in f.parents for d in bag_dirs):
                bags.append(f)
    return sorted(bags)


def bag_size_bytes(path: PathLike) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# --- message builders (numpy -> rosbags message objects) ---------------------------------------
def stamp(timestamp_ns: int):
    """builtin_interfaces/Time (rosbags class) from nanoseconds."""
    Time = msg_class("builtin_interfaces/msg/Time")
    sec, nsec = rostime.ns_sec_nanosec(timestamp_ns)
    return Time(sec=sec, nanosec=nsec)


def duration(seconds: float):
    """builtin_interfaces/Duration (rosbags class) from seconds (rounded to the nanosecond)."""
    Duration = msg_class("builtin_interfaces/msg/Duration")
    sec, nsec = rostime.sec_nanosec(seconds)
    return Duration(sec=sec, nanosec=nsec)


def header(timestamp_ns: int, frame_id: str = ""):
    Header = msg_class("std_msgs/msg/Header")
    return Header(stamp=stamp(timestamp_ns), frame_id=str(frame_id))


def _f64(values: Optional[Sequence[float]]) -> np.ndarray:
    if values is None:
        return np.zeros(0, dtype=np.float64)
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))


def image_msg(
    array: np.ndarray,
    timestamp_ns: int,
    frame_id: str = "camera_optical_frame",
    encoding: str = "rgb8",
):
    """sensor_msgs/Image from an HxW or HxWxC array (no row padding, little-endian)."""
    from clap_ros.data.images import numpy_to_image_fields

    fields = numpy_to_image_fields(array, encoding)
    Image = msg_class(T.TYPES["image"])
    return Image(header=header(timestamp_ns, frame_id), **fields)


def camera_info_msg(info: Mapping[str, Any], timestamp_ns: int):
    """sensor_msgs/CameraInfo from a dict with width, height, K (3x3), D, R (3x3), P (3x4),
    distortion_model and frame_id (the shape of SimWorld.camera_info)."""
    CameraInfo = msg_class(T.TYPES["camera_info"])
    Roi = msg_class("sensor_msgs/msg/RegionOfInterest")
    K = _f64(info["K"])
    R = _f64(info.get("R", np.eye(3)))
    P = _f64(
        info.get(
            "P",
            np.hstack([np.asarray(info["K"], dtype=np.float64).reshape(3, 3), np.zeros((3, 1))]),
        )
    )
    if K.size != 9 or R.size != 9 or P.size != 12:
        raise ValueError(
            "camera info needs K 3x3, R 3x3, P 3x4; got %d, %d, %d values"
            % (K.size, R.size, P.size)
        )
    return CameraInfo(
        header=header(timestamp_ns, info.get("frame_id", "camera_optical_frame")),
        height=int(info["height"]),
        width=int(info["width"]),
        distortion_model=str(info.get("distortion_model", "plumb_bob")),
        d=_f64(info.get("D", np.zeros(5))),
        k=K,
        r=R,
        p=P,
        binning_x=0,
        binning_y=0,
        roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def joint_state_msg(
    names: Sequence[str],
    position: Sequence[float],
    timestamp_ns: int,
    velocity: Optional[Sequence[float]] = None,
    effort: Optional[Sequence[float]] = None,
    frame_id: str = "",
):
    names = [str(n) for n in names]
    pos = _f64(position)
    if pos.size != len(names):
        raise ValueError("joint_state: %d names but %d positions" % (len(names), pos.size))
    for label, arr in (("velocity", velocity), ("effort", effort)):
        if arr is not None and _f64(arr).size not in (0, len(names)):
            raise ValueError(
                "joint_state: %d names but %d %s values" % (len(names), _f64(arr).size, label)
            )
    JointState = msg_class(T.TYPES["joint_state"])
    return JointState(
        header=header(timestamp_ns, frame_id),
        name=names,
        position=pos,
        velocity=_f64(velocity),
        effort=_f64(effort),
    )


def joint_trajectory_msg(
    names: Sequence[str],
    times_from_start: Sequence[float],
    positions: np.ndarray,
    velocities: Optional[np.ndarray] = None,
    timestamp_ns: int = 0,
    frame_id: str = "",
):
    """trajectory_msgs/JointTrajectory: ``positions`` [N, J], optional ``velocities`` [N, J],
    ``times_from_start`` [N] seconds. Header stamp 0 means "start on receipt" (JTC semantics)."""
    names = [str(n) for n in names]
    pos = np.asarray(positions, dtype=np.float64)
    times = np.asarray(times_from_start, dtype=np.float64).reshape(-1)
    if pos.ndim != 2 or pos.shape != (times.size, len(names)):
        raise ValueError(
            "joint_trajectory: positions must be [%d points, %d joints], got %s"
            % (times.size, len(names), pos.shape)
        )
    vel = None if velocities is None else np.asarray(velocities, dtype=np.float64)
    if vel is not None and vel.shape != pos.shape:
        raise ValueError(
            "joint_trajectory: velocities shape %s != positions shape %s" % (vel.shape, pos.shape)
        )
    Traj = msg_class(T.TYPES["joint_trajectory"])
    Point = msg_class("trajectory_msgs/msg/JointTrajectoryPoint")
    empty = np.zeros(0, dtype=np.float64)
    points = [
        Point(
            positions=_f64(pos[i]),
            velocities=empty if vel is None else _f64(vel[i]),
            accelerations=empty,
            effort=empty,
            time_from_start=duration(times[i]),
        )
        for i in range(times.size)
    ]
    return Traj(header=header(timestamp_ns, frame_id), joint_names=names, points=points)


def float64_array_msg(values: Sequence[float]):
    """std_msgs/Float64MultiArray with an empty layout (what forward controllers expect)."""
    Arr = msg_class(T.TYPES["float64_array"])
    Layout = msg_class("std_msgs/msg/MultiArrayLayout")
    return Arr(layout=Layout(dim=[], data_offset=0), data=_f64(values))


def string_msg(text: str):
    String = msg_class(T.TYPES["string"])
    return String(data=str(text))


def json_msg(obj: Mapping[str, Any]):
    """std_msgs/String holding compact JSON (used for /sim/status and /clap/episode_outcome)."""
    return string_msg(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default))


__all__ = [
    "BAG_VERSION",
    "BagError",
    "BagReader",
    "BagWriter",
    "bag_size_bytes",
    "camera_info_msg",
    "default_qos_kind",
    "deserialize",
    "duration",
    "find_bags",
    "float64_array_msg",
    "header",
    "image_msg",
    "is_bag",
    "joint_state_msg",
    "joint_trajectory_msg",
    "json_msg",
    "make_qos",
    "msg_class",
    "serialize",
    "stamp",
    "stamp_to_ns",
    "string_msg",
    "typestore",
]
