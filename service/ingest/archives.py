"""Zip and tar members read in memory with their safety checks, and class folders from paths."""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from service.ingest.errors import ErrorKind, IngestError, IngestLimits, too_many_members
from service.ingest.images import decode, probe
from service.ingest.upload import Source, reading, rewound, upload_size

_JUNK_DIRS = frozenset({"__macosx"})
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_READ_CHUNK = 1 << 20
_LAYOUT_HELP = (
    "expected one folder per class, <class>/<image> or <top>/<class>/<image>, "
    "e.g. cats/001.png and dogs/001.png, or unlabelled images all in one folder"
)
_Members = Iterator[tuple[str, bytes]]  # (normalised path, content) of regular, non-junk files


def _safe_path(name: str) -> str:
    """The member's path, normalised; names that could escape a folder are refused."""
    unified = name.replace("\\", "/")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if unified.startswith("/") or _DRIVE_LETTER.match(unified) or ".." in parts:
        raise IngestError(
            ErrorKind.UNSAFE_PATH,
            f"member '{name}' has an absolute path, a drive letter or '..'; "
            "archive paths must be relative, like cats/001.png",
        )
    return "/".join(parts)


def _is_junk(path: str) -> bool:
    parts = path.split("/")
    return (
        any(p.startswith(".") or p.lower() in _JUNK_DIRS for p in parts)
        or parts[-1].lower() in _JUNK_FILES
    )


def _unsafe_member(name: str, kind: str) -> IngestError:
    message = f"member '{name}' is a {kind}; archives may hold only folders and regular files"
    return IngestError(ErrorKind.UNSAFE_MEMBER, message)


def _check_totals(declared: int, compressed: int, limits: IngestLimits) -> None:
    if declared > limits.max_uncompressed_bytes:
        raise _too_large(limits)
    if _ratio_exceeded(declared, compressed, limits):
        raise IngestError(
            ErrorKind.COMPRESSION_RATIO,
            f"the archive expands more than {limits.max_compression_ratio:g} times its size, "
            "which looks like a zip bomb; upload ordinary image files",
        )


def _ratio_exceeded(expanded: int, compressed: int, limits: IngestLimits) -> bool:
    big_enough = expanded > limits.ratio_floor_bytes  # tiny members cannot be bombs
    return big_enough and expanded > limits.max_compression_ratio * max(compressed, 1)


def _read_bounded(stream, budget: int, limits: IngestLimits) -> bytes:
    """Read a member whole, failing as soon as it passes the remaining byte budget."""
    data = bytearray()
    while chunk := stream.read(min(_READ_CHUNK, budget - len(data) + 1)):
        data += chunk
        if len(data) > budget:
            raise _too_large(limits)
    return bytes(data)


def checked_zip_entries(
    archive: zipfile.ZipFile, compressed: int, limits: IngestLimits
) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise too_many_members(limits.max_members)
    entries = []
    for info in infos:
        path = _safe_path(info.filename)
        file_type = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix mode recorded
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "symbolic link" if file_type == stat.S_IFLNK else "special file"
            raise _unsafe_member(info.filename, kind)
        if info.flag_bits & 0x1:
            raise IngestError(
                ErrorKind.UNSUPPORTED_FORMAT,
                f"member '{info.filename}' is encrypted; upload an archive without a password",
            )
        if _ratio_exceeded(info.file_size, info.compress_size, limits):
            raise IngestError(
                ErrorKind.COMPRESSION_RATIO,
                f"member '{info.filename}' expands more than "
                f"{limits.max_compression_ratio:g} times, which looks like a zip bomb",
            )
        entries.append((info, path))
    _check_totals(sum(info.file_size for info in infos), compressed, limits)
    return entries


def _too_large(limits: IngestLimits) -> IngestError:
    limit = limits.max_uncompressed_bytes
    message = f"the archive expands to more than {limit} bytes; upload fewer or smaller images"
    return IngestError(ErrorKind.ARCHIVE_TOO_LARGE, message)


def zip_members(upload: BinaryIO, filename: str, limits: IngestLimits) -> _Members:
    compressed = upload_size(upload)
    with reading(filename), zipfile.ZipFile(rewound(upload)) as archive:
        budget = limits.max_uncompressed_bytes
        for info, path in checked_zip_entries(archive, compressed, limits):
            if info.is_dir() or not path or _is_junk(path):
                continue
            with archive.open(info) as stream:
                data = _read_bounded(stream, budget, limits)
            budget -= len(data)
            yield path, data


def tar_members(upload: BinaryIO, filename: str, limits: IngestLimits) -> _Members:
    compressed, declared = upload_size(upload), 0
    budget = limits.max_uncompressed_bytes
    with reading(filename), tarfile.open(fileobj=rewound(upload), mode="r:*") as archive:
        for count, member in enumerate(archive, start=1):
            if count > limits.max_members:
                raise too_many_members(limits.max_members)
            path = _safe_path(member.name)
            if not (member.isfile() or member.isdir()):
                kind = "link" if member.issym() or member.islnk() else "device or special file"
                raise _unsafe_member(member.name, kind)
            if member.isdir():
                continue
            declared += member.size
            _check_totals(declared, compressed, limits)
            if not path or _is_junk(path):
                continue
            data = _read_bounded(archive.extractfile(member), budget, limits)
            budget -= len(data)
            yield path, data


def _class_of_each(paths: list[str], filename: str) -> dict[str, str] | None:
    """Map each image path to its class folder, dropping one shared top folder if present;
    None when there are no class folders: every image at the top, or in one folder."""
    if not paths:
        raise IngestError(ErrorKind.EMPTY_DATASET, f"'{filename}' holds no images; {_LAYOUT_HELP}")
    parts = {path: path.split("/") for path in paths}
    if all(len(p) == 1 for p in parts.values()):
        return None
    if len({p[0] for p in parts.values()}) == 1 and any(len(p) > 2 for p in parts.values()):
        parts = {path: p[1:] for path, p in parts.items()}
    for path, p in parts.items():
        if len(p) != 2:
            where = "is not inside a class folder" if len(p) < 2 else "is nested too deeply"
            raise IngestError(ErrorKind.BAD_LAYOUT, f"'{path}' {where}; {_LAYOUT_HELP}")
    class_of = {path: p[0] for path, p in parts.items()}
    return class_of if len(set(class_of.values())) > 1 else None


def read_archive(
    upload: BinaryIO, filename: str, source_format: str, limits: IngestLimits
) -> Source:
    members = zip_members if source_format == "zip" else tar_members
    probes: dict[str, tuple[int, bool]] = {}  # path -> (longest side, gray)
    for path, data in members(upload, filename, limits):
        if path in probes:
            raise IngestError(ErrorKind.BAD_LAYOUT, f"'{path}' appears twice in the archive")
        probes[path] = probe(path, data, limits)
    class_of = _class_of_each(list(probes), filename)
    labels: np.ndarray | None = None
    if class_of is None:  # unlabelled: one flat folder of images
        classes: list[str] = []
        order = sorted(probes)
    else:
        classes = sorted(set(class_of.values()))
        class_index = {name: i for i, name in enumerate(classes)}
        order = sorted(probes, key=lambda path: (class_index[class_of[path]], path))
        labels = np.array([class_index[class_of[path]] for path in order], dtype=np.int64)
    row_of = {path: row for row, path in enumerate(order)}

    def images(size: int, channels: int) -> Iterator[tuple[int, np.ndarray]]:
        # A second pass: holding every decoded image until the size is known could take GBs.
        for path, data in members(upload, filename, limits):
            yield row_of[path], decode(path, data, size, channels, limits)

    sides = [side for side, _ in probes.values()]
    gray = all(is_gray for _, is_gray in probes.values())
    return Source(labels, classes, sides, gray, images, len(order))
