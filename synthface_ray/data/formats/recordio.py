"""Pure-Python reader and writer for MXNet RecordIO files in the insightface layout.

No ``mxnet`` dependency. The on-disk format (dmlc-core ``recordio``, as written by
``mx.recordio.MXIndexedRecordIO``) is:

* ``.rec``: a sequence of chunks, each ``uint32 magic (0xCED7230A)``, ``uint32 lrecord``
  (upper 3 bits ``cflag``, lower 29 bits payload length), the payload, then zero padding to a
  4-byte boundary; all little-endian. ``cflag`` 0 is a whole record; 1, 2, 3 are the start,
  middle and end of a record split into several chunks. dmlc splits a record exactly where the
  magic word occurs at a 4-byte aligned position of its payload and drops those 4 bytes, so a
  reader re-inserts the magic word between consecutive chunks (this keeps the file splittable by
  scanning for the magic word). This module reads and writes that escaping faithfully.
* ``.idx``: text lines ``"key\\toffset"`` giving the byte offset of each record's first chunk.

An image record's payload is an ``IRHeader`` (struct ``<IfQQ``: flag, label, id, id2); when
``flag > 0`` it is followed by ``flag`` float32 labels (and the header's own label field is 0),
then the encoded image bytes.

insightface layout (``recognition/arcface_torch`` ``MXFaceDataset``): record 0 is a header with
``flag > 0`` and labels ``(N + 1, end)``; keys ``1 .. N`` are images, keys ``N + 1 .. end - 1``
are identity records whose labels are ``(first_image_key, last_image_key + 1)``. When record 0
has ``flag == 0`` there is no header and every key is an image.
"""

from __future__ import annotations

import numbers
import operator
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

#: The dmlc RecordIO magic word, little-endian uint32.
MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_CHUNK_HEAD = struct.Struct("<II")
_IR_HEAD = struct.Struct("<IfQQ")
_LENGTH_BITS = 29
#: One chunk's payload must be shorter than this (the lrecord length field has 29 bits).
MAX_CHUNK_LENGTH = 1 << _LENGTH_BITS
_F32_EXACT_INT = 1 << 24  # every integer of magnitude <= 2**24 is exact in float32

CFLAG_WHOLE, CFLAG_START, CFLAG_MIDDLE, CFLAG_END = 0, 1, 2, 3


class RecordIOError(ValueError):
    """A ``.rec`` or ``.idx`` file is malformed (bad magic, truncation, bad index, ...)."""


@dataclass
class IRHeader:
    """Header of an image record: ``label`` is a float, or a tuple of floats when ``flag > 0``."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


@dataclass(frozen=True)
class FaceRecord:
    """One face image of an insightface ``.rec``: its record key, integer label and bytes."""

    key: int
    label: int
    image: bytes


# -- IRHeader payloads ---------------------------------------------------------------------------


def pack(header: IRHeader, payload: bytes) -> bytes:
    """Serialise ``header`` and ``payload`` into one record, like ``mx.recordio.pack``.

    As in mxnet, ``header.flag`` is derived from the label rather than trusted: a scalar label
    gives ``flag = 0``; a sequence of ``n`` labels gives ``flag = n``, stores 0 in the header's
    label field and appends the labels as float32 before ``payload``.
    """
    if isinstance(header.label, numbers.Number):
        return _IR_HEAD.pack(0, float(header.label), header.id, header.id2) + bytes(payload)
    labels = [float(x) for x in header.label]
    if not labels:
        raise ValueError("IRHeader.label must be a number or a non-empty sequence")
    head = _IR_HEAD.pack(len(labels), 0.0, header.id, header.id2)
    return b"".join((head, struct.pack(f"<{len(labels)}f", *labels), payload))


def unpack(record: bytes) -> tuple[IRHeader, bytes]:
    """Split a record into its :class:`IRHeader` and the remaining payload (``mx.recordio.unpack``).

    When ``flag > 0`` the header's label is the tuple of ``flag`` float32 labels that follow it.
    """
    if len(record) < _IR_HEAD.size:
        raise RecordIOError(f"record of {len(record)} bytes is shorter than an IRHeader")
    flag, label, key, key2 = _IR_HEAD.unpack_from(record)
    if flag == 0:
        return IRHeader(0, label, key, key2), bytes(record[_IR_HEAD.size :])
    end = _IR_HEAD.size + 4 * flag
    if len(record) < end:
        raise RecordIOError(f"IRHeader flag={flag} needs {end} bytes, record has {len(record)}")
    labels = struct.unpack_from(f"<{flag}f", record, _IR_HEAD.size)
    return IRHeader(flag, tuple(labels), key, key2), bytes(record[end:])


# -- chunk framing -------------------------------------------------------------------------------


def _aligned_magic_positions(record: bytes) -> Iterator[int]:
    """Positions (multiples of 4) where the magic word occurs in ``record``."""
    pos = record.find(_MAGIC_BYTES)
    while pos >= 0:
        if pos % 4 == 0:
            yield pos
            pos = record.find(_MAGIC_BYTES, pos + 4)
        else:
            pos = record.find(_MAGIC_BYTES, pos + 1)


def _chunk(cflag: int, data: bytes) -> bytes:
    if len(data) >= MAX_CHUNK_LENGTH:
        raise RecordIOError(
            f"record chunk of {len(data)} bytes is too long: RecordIO chunks must be shorter than "
            "2**29 bytes, and a record can only be split where its payload holds the magic word"
        )
    pad = b"\0" * (-len(data) % 4)
    return b"".join((_CHUNK_HEAD.pack(MAGIC, (cflag << _LENGTH_BITS) | len(data)), data, pad))


def encode_record(record: bytes) -> bytes:
    """Frame one record as dmlc does: split at aligned magic words, pad to 4 bytes."""
    record = bytes(record)
    chunks, start = [], 0
    for pos in _aligned_magic_positions(record):
        chunks.append(_chunk(CFLAG_START if start == 0 else CFLAG_MIDDLE, record[start:pos]))
        start = pos + 4
    chunks.append(_chunk(CFLAG_END if chunks else CFLAG_WHOLE, record[start:]))
    return b"".join(chunks)


def _file_name(fileobj: Any) -> str:
    name = getattr(fileobj, "name", None)
    return str(name) if name is not None else f"<{type(fileobj).__name__}>"


def _read_record_at(fileobj: IO[bytes], offset: int, name: str) -> tuple[bytes, int] | None:
    """Read the record starting at ``offset``; returns ``(record, next_offset)``, None at EOF."""
    fileobj.seek(offset)
    parts: list[bytes] = []
    pos = offset
    while True:
        head = fileobj.read(_CHUNK_HEAD.size)
        if not head and not parts:
            return None
        if len(head) < _CHUNK_HEAD.size:
            raise RecordIOError(f"truncated record: chunk header at byte offset {pos} of {name}")
        magic, lrecord = _CHUNK_HEAD.unpack(head)
        if magic != MAGIC:
            raise RecordIOError(
                f"bad magic 0x{magic:08X} (expected 0x{MAGIC:08X}) at byte offset {pos} of {name}"
            )
        cflag, length = lrecord >> _LENGTH_BITS, lrecord & (MAX_CHUNK_LENGTH - 1)
        expected = (CFLAG_MIDDLE, CFLAG_END) if parts else (CFLAG_WHOLE, CFLAG_START)
        if cflag not in expected:
            raise RecordIOError(
                f"unexpected chunk flag {cflag} at byte offset {pos} of {name} "
                f"(expected one of {expected})"
            )
        padded = length + (-length % 4)
        data = fileobj.read(padded)
        if len(data) < padded:
            raise RecordIOError(
                f"truncated record at byte offset {pos} of {name}: chunk needs {padded} bytes, "
                f"file has {len(data)}"
            )
        if parts:
            parts.append(_MAGIC_BYTES)
        parts.append(data[:length])
        pos += _CHUNK_HEAD.size + padded
        if cflag in (CFLAG_WHOLE, CFLAG_END):
            return b"".join(parts), pos


# -- reader and writer ---------------------------------------------------------------------------


def read_index(text_fileobj: IO[str] | IO[bytes], name: str | None = None) -> dict[int, int]:
    """Parse an ``.idx`` file (``"key\\toffset"`` lines) into ``{key: offset}`` in file order;
    ``name`` is the file's name in error messages (default: the file object's)."""
    index: dict[int, int] = {}
    name = name or _file_name(text_fileobj)
    for lineno, line in enumerate(text_fileobj, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                raise RecordIOError(f"{name} is not a text .idx file (line {lineno} is not UTF-8)") from None
        line = line.strip()
        if not line:
            continue
        fields = line.split("\t")
        try:
            key, offset = int(fields[0]), int(fields[1])
        except (IndexError, ValueError):
            raise RecordIOError(f"bad .idx line {lineno} of {name}: {line[:80]!r}") from None
        if len(fields) != 2 or offset < 0:
            raise RecordIOError(f"bad .idx line {lineno} of {name}: {line[:80]!r}")
        if key in index:
            raise RecordIOError(f"duplicate key {key} at .idx line {lineno} of {name}")
        index[key] = offset
    return index


class RecordIOReader:
    """Random and sequential access to a ``.rec`` file object (binary, seekable).

    ``idx`` maps keys to byte offsets (see :func:`read_index`); without it only sequential
    iteration is possible, and iteration then yields 0-based record ordinals as keys.
    """

    def __init__(
        self, fileobj: IO[bytes], idx: Mapping[int, int] | None = None, name: str | None = None
    ) -> None:
        self._file = fileobj
        self._idx = dict(idx) if idx is not None else None
        self.name = name if name is not None else _file_name(fileobj)

    @property
    def keys(self) -> list[int]:
        """Record keys in ``.idx`` order (empty without an index)."""
        return list(self._idx) if self._idx is not None else []

    def __contains__(self, key: object) -> bool:
        return self._idx is not None and key in self._idx

    def read_idx(self, key: int) -> bytes:
        """The record stored under ``key``; KeyError if the key is not indexed."""
        if self._idx is None:
            raise KeyError(f"{self.name} was opened without an .idx; key {key} cannot be looked up")
        offset = self._idx[key]
        found = _read_record_at(self._file, offset, self.name)
        if found is None:
            raise RecordIOError(
                f".idx key {key} points to byte offset {offset}, past EOF of {self.name}"
            )
        return found[0]

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """Every record in file order as ``(key, record)``, from byte offset 0.

        With an index, a record whose offset is not listed raises :class:`RecordIOError` (the
        ``.rec`` and ``.idx`` disagree).
        """
        by_offset = {off: key for key, off in self._idx.items()} if self._idx is not None else None
        offset, ordinal = 0, 0
        while (found := _read_record_at(self._file, offset, self.name)) is not None:
            record, next_offset = found
            if by_offset is None:
                key = ordinal
            elif offset in by_offset:
                key = by_offset[offset]
            else:
                raise RecordIOError(
                    f"record at byte offset {offset} of {self.name} is not in the .idx"
                )
            yield key, record
            offset, ordinal = next_offset, ordinal + 1


class RecordIOWriter:
    """Append records to a binary ``.rec`` file object and ``"key\\toffset"`` lines to an ``.idx``.

    Offsets are absolute: counting starts at the ``.rec`` object's ``tell()`` when it has one, so
    non-seekable streams work too (counted from 0). ``idx_fileobj`` may be None.
    """

    def __init__(self, rec_fileobj: IO[bytes], idx_fileobj: IO[str] | None = None) -> None:
        self._rec = rec_fileobj
        self._idx = idx_fileobj
        self._keys: set[int] = set()
        try:
            self._pos = rec_fileobj.tell()
        except (OSError, AttributeError):
            self._pos = 0

    @property
    def position(self) -> int:
        """Byte offset where the next record will start."""
        return self._pos

    def write(self, key: int, record: bytes) -> int:
        """Write ``record`` under ``key``; returns its byte offset. Keys must be unique."""
        key = operator.index(key)
        if key in self._keys:
            raise ValueError(f"duplicate RecordIO key {key}")
        data = encode_record(record)
        offset = self._pos
        self._rec.write(data)
        self._pos += len(data)
        self._keys.add(key)
        if self._idx is not None:
            self._idx.write(f"{key}\t{offset}\n")
        return offset


# -- insightface layout --------------------------------------------------------------------------


def _as_index(idx: IO[str] | IO[bytes] | Mapping[int, int]) -> dict[int, int]:
    return dict(idx) if isinstance(idx, Mapping) else read_index(idx)


def _header_range(reader: RecordIOReader) -> tuple[int, int] | None:
    """``(start, end)`` from record 0 when it is an insightface header record, else None."""
    if 0 not in reader:
        return None
    header, _ = unpack(reader.read_idx(0))
    if header.flag == 0:
        return None
    if header.flag < 2:
        raise RecordIOError(f"header record 0 of {reader.name} has flag={header.flag}, expected 2")
    return int(header.label[0]), int(header.label[1])


def identity_range(
    rec_fileobj: IO[bytes], idx: IO[str] | IO[bytes] | Mapping[int, int]
) -> tuple[int, int] | None:
    """Record 0's ``(start, end)``: images are keys ``1..start-1``, identities ``start..end-1``.

    ``idx`` is an ``.idx`` file object or an already parsed mapping. None without a header record.
    """
    return _header_range(RecordIOReader(rec_fileobj, _as_index(idx)))


def iter_faces(
    rec_fileobj: IO[bytes], idx_fileobj: IO[str] | IO[bytes] | Mapping[int, int], name: str | None = None
) -> Iterator[FaceRecord]:
    """Yield every face image of an insightface ``.rec``, exactly as ``MXFaceDataset`` reads it.

    With a header record, images are keys ``1 .. label[0] - 1``; otherwise every indexed key in
    ``.idx`` order. The label is ``int(label)``, or ``int(label[0])`` for array labels.
    """
    reader = RecordIOReader(rec_fileobj, _as_index(idx_fileobj), name)
    bounds = _header_range(reader)
    keys: Iterable[int] = range(1, bounds[0]) if bounds is not None else reader.keys
    for key in keys:
        try:
            record = reader.read_idx(key)
        except KeyError:
            raise RecordIOError(
                f"header record of {reader.name} lists image key {key}, which is not in the .idx"
            ) from None
        header, image = unpack(record)
        label = header.label if header.flag == 0 else header.label[0]
        yield FaceRecord(key, int(label), image)


def _exact_f32(value: int, what: str) -> float:
    if abs(value) > _F32_EXACT_INT:
        raise ValueError(f"{what} {value} is not exactly representable as a float32 label")
    return float(value)


def _header_record(num_images: int, num_identities: int) -> bytes:
    start = num_images + 1
    labels = (_exact_f32(start, "image count"), _exact_f32(start + num_identities, "record key"))
    return pack(IRHeader(2, labels, 0, 0), b"")


def _write_images(
    writer: RecordIOWriter, records: Iterable[tuple[int, bytes]]
) -> list[tuple[int, int, int]]:
    """Write images as keys 1, 2, ...; returns ``(label, first_key, end_key)`` per label run.

    Raises ValueError when a label reappears after its run ended (images not grouped by label).
    """
    runs: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    key = 1
    for label, image in records:
        label = operator.index(label)
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1], key + 1)
        elif label in seen:
            raise ValueError(
                f"label {label} reappears at image {key} after its group ended: with grouped=True "
                "images must arrive grouped contiguously by label"
            )
        else:
            seen.add(label)
            runs.append((label, key, key + 1))
        _exact_f32(key + 1, "image key")  # identity/header records store keys as float32
        writer.write(key, pack(IRHeader(0, _exact_f32(label, "label"), key, 0), image))
        key += 1
    return runs


def _write_identities(
    writer: RecordIOWriter, runs: list[tuple[int, int, int]], first_key: int
) -> None:
    """One identity record per run, keys from ``first_key``: labels ``(first, end)``."""
    for key, (_, start, end) in enumerate(runs, start=first_key):
        labels = (_exact_f32(start, "image key"), _exact_f32(end, "image key"))
        writer.write(key, pack(IRHeader(2, labels, key, 0), b""))


def write_faces(
    records: Iterable[tuple[int, bytes]],
    rec_fileobj: IO[bytes],
    idx_fileobj: IO[str] | None,
    *,
    grouped: bool = False,
) -> tuple[int, int]:
    """Write ``(label, image_bytes)`` pairs as an insightface ``.rec``/``.idx``; returns counts.

    Layout: key 0 header (``flag=2``, labels ``(N + 1, N + 1 + num_identities)``), image keys
    ``1..N`` (``flag=0``, ``label=float(label)``, ``id=key``) with their TRUE labels, then one
    identity record per distinct label (``labels=(first_key, last_key + 1)``), in label order.

    ``grouped=False`` (default) materialises ``records`` and stable-sorts them by label, so any
    order is accepted and the output need not be seekable (e.g. S3 streams), at the cost of
    holding every image in memory. ``grouped=True`` streams: images must arrive grouped
    contiguously by label (ValueError otherwise), identity records follow arrival order, and a
    placeholder header is written first and overwritten in place at the end (same size), so
    ``rec_fileobj`` must be seekable. Labels and keys must fit float32 exactly (|x| <= 2**24).
    Returns ``(num_images, num_identities)``.
    """
    writer = RecordIOWriter(rec_fileobj, idx_fileobj)
    if not grouped:
        items = sorted(((operator.index(lab), img) for lab, img in records), key=lambda t: t[0])
        num_ids = len({lab for lab, _ in items})
        writer.write(0, _header_record(len(items), num_ids))
        runs = _write_images(writer, items)
    else:
        if not rec_fileobj.seekable():
            raise ValueError(
                "write_faces(grouped=True) overwrites the header: needs a seekable .rec"
            )
        header_offset = writer.write(0, _header_record(0, 0))
        runs = _write_images(writer, records)
    num_images = runs[-1][2] - 1 if runs else 0
    _write_identities(writer, runs, num_images + 1)
    if grouped:
        _overwrite(rec_fileobj, header_offset, _header_record(num_images, len(runs)), writer)
    return num_images, len(runs)


def _overwrite(rec_fileobj: IO[bytes], offset: int, record: bytes, writer: RecordIOWriter) -> None:
    """Replace the same-sized record at ``offset`` and return to the end of the written data."""
    data = encode_record(record)
    if len(data) != len(encode_record(_header_record(0, 0))):
        raise RecordIOError("header record changed size; cannot overwrite it in place")
    rec_fileobj.seek(offset)
    rec_fileobj.write(data)
    rec_fileobj.seek(writer.position)


__all__ = [
    "MAGIC",
    "MAX_CHUNK_LENGTH",
    "FaceRecord",
    "IRHeader",
    "RecordIOError",
    "RecordIOReader",
    "RecordIOWriter",
    "encode_record",
    "identity_range",
    "iter_faces",
    "pack",
    "read_index",
    "unpack",
    "write_faces",
]
