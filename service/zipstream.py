"""A stored (uncompressed) zip written front to back with flat memory.

`zipfile.ZipFile` keeps a ZipInfo of about 940 bytes per member until the archive closes
(0.9 GB for the largest archive the service allows). Each member here is complete when it
is added (its bytes, so its CRC and size, are known), so the local header carries them
and no data descriptor follows; what the central directory needs is kept in flat arrays:
the name's bytes and 20 bytes of numbers per member. ZIP64 records are written when the
member count or an offset needs them, as zipfile does.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Iterator

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_U32, _U16 = 0xFFFFFFFF, 0xFFFF
_VERSION, _VERSION64 = 20, 45  # 2.0: stored members; 4.5: ZIP64
_MADE_BY = 3 << 8 | _VERSION  # Unix
_UTF8_NAME = 0x800
# 2020-01-01 00:00:00 in DOS time and date: reproducible bytes, as the archive always was
_DOS_TIME, _DOS_DATE = 0, (2020 - 1980) << 9 | 1 << 5 | 1
_FILE_MODE = 0o644 << 16


class ZipStream:
    """Members in, zip bytes out: `add` gives a member's bytes, `finish` the directory's."""

    def __init__(self) -> None:
        self._names = bytearray()
        self._name_ends = array("Q")
        self._crcs = array("L")
        self._sizes = array("Q")
        self._offsets = array("Q")
        self._written = 0

    def __len__(self) -> int:
        return len(self._crcs)

    def add(self, name: str, data: bytes) -> bytes:
        """The local header and data of member `name` holding `data`."""
        encoded, flags = _encode_name(name)
        crc, size = zlib.crc32(data), len(data)
        if size >= _U32:
            raise ValueError(f"member {name} is {size} bytes; stored members stay under 4 GiB")
        self._names += encoded
        self._name_ends.append(len(self._names))
        self._crcs.append(crc)
        self._sizes.append(size)
        self._offsets.append(self._written)
        header = _LOCAL.pack(
            0x04034B50, _VERSION, flags, 0, _DOS_TIME, _DOS_DATE, crc, size, size, len(encoded), 0
        )
        self._written += len(header) + len(encoded) + size
        return header + encoded + data

    def finish(self, entries_per_part: int = 1024) -> Iterator[bytes]:
        """The central directory, a part of `entries_per_part` entries at a time, and the end
        records; the stream is complete after them."""
        start, size, name_start = self._written, 0, 0
        for first in range(0, len(self), entries_per_part):
            parts = []
            for i in range(first, min(first + entries_per_part, len(self))):
                name_end = self._name_ends[i]
                name = bytes(self._names[name_start:name_end])
                name_start = name_end
                parts.append(self._central_entry(i, name))
            part = b"".join(parts)
            size += len(part)
            yield part
        yield self._end_records(start, size)

    def _central_entry(self, i: int, name: bytes) -> bytes:
        offset = self._offsets[i]
        extra = b"" if offset < _U32 else struct.pack("<HHQ", 1, 8, offset)
        header = _CENTRAL.pack(
            0x02014B50,
            _MADE_BY,
            _VERSION64 if extra else _VERSION,
            _UTF8_NAME if not name.isascii() else 0,
            0,
            _DOS_TIME,
            _DOS_DATE,
            self._crcs[i],
            self._sizes[i],
            self._sizes[i],
            len(name),
            len(extra),
            0,
            0,
            0,
            _FILE_MODE,
            min(offset, _U32),
        )
        return header + name + extra

    def _end_records(self, start: int, size: int) -> bytes:
        count = len(self)
        end = start + size
        records = b""
        if count >= _U16 or start >= _U32 or size >= _U32:
            records = _END64.pack(
                0x06064B50, 44, _VERSION64, _VERSION64, 0, 0, count, count, size, start
            ) + _LOCATOR64.pack(0x07064B50, 0, end, 1)
        return records + _END.pack(
            0x06054B50, 0, 0, min(count, _U16), min(count, _U16), min(size, _U32),
            min(start, _U32), 0,
        )  # fmt: skip


def _encode_name(name: str) -> tuple[bytes, int]:
    if name.isascii():
        return name.encode("ascii"), 0
    return name.encode("utf-8"), _UTF8_NAME
