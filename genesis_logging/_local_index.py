"""An index of the local store's JSON-lines files, so the loop's reads skip chDB.

Starting chDB costs most of a second and hundreds of MB, and an assistant asks the store
dozens of questions per task. The files are append-only and rotated by rename, so each is
known by ``(st_dev, st_ino)`` (and checksums of its first and last indexed bytes, against
a reused inode number) and read only past the byte offset indexed so far; a partly written
last line waits for its newline. The index keeps, per file, one column of integers per
small field (text as numbers into one table of strings; short attributes likewise) and
where each line — and each bulky text in it — is; bulky text (a run's code snapshot, a
test's failure text) is read by seeking to the records asked for.

It is kept in ``<log_dir>/.index/`` (a binary file replaced atomically; the view's
``*.jsonl*`` glob does not look in subdirectories), so a command reads only what was
appended since the last one. Values are read as chDB's view reads them (absent → ``''``/0,
quoted numbers accepted, the timestamp in UTC as ``YYYY-MM-DD hh:mm:ss.mmm``); a line the
view would refuse — not JSON, a wrong type — is skipped here, where the view fails the
whole query.
"""

from __future__ import annotations

import contextlib
import fnmatch
import heapq
import json
import os
import sys
import time
import zlib
from array import array
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from .schema import FIELDS, TAIL_FIELDS, Kind

__all__ = [
    "INDEX_SUBDIR",
    "LocalIndex",
    "UnindexableError",
    "clickhouse_milliseconds",
    "clickhouse_timestamp",
]

INDEX_SUBDIR: Final = ".index"
_INDEX_FILE: Final = "records-v1.bin"
_MAGIC: Final = b"genesis-index-1\n"
_PATTERN: Final = "*.jsonl*"  # the view's glob
#: Suffixes chDB decompresses by name; a store holding one is left to chDB.
_COMPRESSED: Final = (".gz", ".gzip", ".zst", ".zstd", ".lz4", ".xz", ".bz2", ".br", ".deflate")
_PROBE: Final = 64  # bytes checksummed at a file's start and at its indexed end
_LISTINGS: Final = 5  # looks for a file renamed while being opened
_STABLE_LISTINGS: Final = 40  # listings of the directory to get two that agree, untouched
_SHORT: Final = 256  # attribute values up to this many characters live in the index
_LONG: Final = -1  # an attribute too long for the index: read from the line
_KINDS: Final = {f.name: f.kind for f in FIELDS}
_BOUNDS: Final = {Kind.UINT32: (0, 2**32 - 1), Kind.INT32: (-(2**31), 2**31 - 1)}
#: Small columns, kept in the index (text ones as string numbers).
COMPACT: Final = tuple(f.name for f in FIELDS if not f.bulky and f.kind is not Kind.STRING_MAP)
_TEXT: Final = frozenset(n for n in COMPACT if _KINDS[n] is Kind.STRING)
BULKY: Final = tuple(f.name for f in FIELDS if f.bulky)
#: Where each record's line is, and each bulky text's JSON string inside it (-1: absent).
_PLACES: Final = (
    "@offset",
    "@length",
    *(f"{n}@start" for n in BULKY),
    *(f"{n}@end" for n in BULKY),
)
_ABSENT: Final = (-1, -1)
_UNKNOWN: Final = (-2, -2)
#: The columns an index file holds: one saved with others is read again from the files.
_LAYOUT: Final = [*COMPACT, *_PLACES, _SHORT]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND: Final = timedelta(milliseconds=1)
TAIL_COLUMNS: Final = TAIL_FIELDS


class UnindexableError(Exception):
    """The store holds what this index cannot read (compressed files): ask chDB."""


class _MalformedError(ValueError):
    """A line the view could not read either."""


def clickhouse_timestamp(milliseconds: int) -> str:
    """A ``DateTime64(3, 'UTC')`` as chDB prints it: ``2026-12-01 00:52:59.083``."""
    moment = _EPOCH + milliseconds * _MILLISECOND
    return f"{moment:%Y-%m-%d %H:%M:%S}.{milliseconds % 1000:03d}"


def clickhouse_milliseconds(text: str) -> int:
    """Inverse of :func:`clickhouse_timestamp`."""
    return _timestamp(str(text))


def _timestamp(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        raise _MalformedError("timestamp is not text")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _MalformedError(f"timestamp {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MILLISECOND


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    raise _MalformedError("a text field holds an object or a list")


def _integer(value: Any, kind: Kind) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _MalformedError("not a whole number")
    low, high = _BOUNDS[kind]
    if not low <= value <= high:
        raise _MalformedError("number out of range")
    return value


def _span(line: bytes, value: Any, name: str, after: int = 0) -> tuple[int, int]:
    """Where the JSON string ``value`` of key ``name`` is in ``line`` (bytes, from
    ``after``): (-1, -1) when it is empty, (-2, -2) when not found (the whole line is
    read for it)."""
    if value is None or value == "":
        return _ABSENT
    key = json.dumps(name, ensure_ascii=False).encode() + b': "'
    start = line.find(key, after)
    if start < 0:
        return _UNKNOWN
    start += len(key) - 1
    end = start + 1
    while True:  # the closing quote: the first one not escaped
        end = line.find(b'"', end)
        if end < 0:
            return _UNKNOWN
        before = line[max(start + 1, end - 16) : end]
        backslashes = len(before) - len(before.rstrip(b"\\"))
        if backslashes % 2 == 0:
            break
        if backslashes == 16:  # a long run of backslashes: not worth counting here
            return _UNKNOWN
        end += 1
    try:
        found = json.loads(line[start : end + 1])
    except ValueError:
        return _UNKNOWN
    return (start, end + 1) if found == value else _UNKNOWN


class _File:
    """One store file: its identity, the prefix indexed, and its records' columns."""

    def __init__(self, key: str, name: str) -> None:
        self.key, self.name = key, name
        self.columns: dict[str, Any] = {}  # name -> array('q') or a memoryview of the file
        self.attributes: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Forget what was indexed: the file must be read again from its start."""
        self.offset = self.head = self.tail = self.rows = self.modified = 0
        self.columns.clear()
        self.columns.update((name, array("q")) for name in (*COMPACT, *_PLACES))
        self.attributes.clear()

    def column(self, name: str) -> Any:
        return self.columns[name]

    def own(self) -> None:
        """Make every column an appendable array (they may be views of the loaded file)."""
        for table in (self.columns, self.attributes):
            for name, values in table.items():
                if not isinstance(values, array):
                    table[name] = array("q", values)


def _listing(directory: Path) -> list[tuple[str, os.stat_result]]:
    """The store's files and their identities, listed while no file was renamed.

    A rotation renames several files one after another; a listing taken meanwhile
    can miss one. It is taken again until two in a row agree (at most a few times).
    """
    previous: list[tuple[str, int]] | None = None
    for attempt in range(_STABLE_LISTINGS):
        found, moved = [], False
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if fnmatch.fnmatch(entry.name, _PATTERN):
                try:
                    if entry.is_file():
                        found.append((entry.name, entry.stat()))
                except FileNotFoundError:  # renamed or deleted meanwhile: list again
                    moved = True
        identities = [(name, stat.st_ino) for name, stat in found]
        if identities == previous and not moved:
            break
        previous = None if moved else identities
        if attempt:
            time.sleep(0.002 * attempt)  # a rotation is a few renames: let it finish
    return found


class LocalIndex:
    """The records of a local store directory, refreshed from the files' appended bytes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, _File] = {}
        self.strings: list[str] = [""]
        self._ids: dict[str, int] | None = None
        self.changed = False
        self.files, self.strings = _read(directory / INDEX_SUBDIR / _INDEX_FILE)

    def save(self) -> None:
        """Write the index for the next command, atomically; quietly not on a read-only store."""
        if self.changed:
            _write(self.directory / INDEX_SUBDIR, self.files, self.strings)
            self.changed = False

    # -- keeping it current ----------------------------------------------------------------

    def refresh(self) -> None:
        """Read what was appended since the last refresh; forget files that are gone."""
        present: dict[str, _File] = {}
        for name, stat in _listing(self.directory):
            if name.endswith(_COMPRESSED):
                raise UnindexableError(f"{name} is compressed")
            key = f"{stat.st_dev}:{stat.st_ino}"
            known = self.files.get(key) or _File(key, name)
            known.name = name
            present[key] = known
            if stat.st_size != known.offset or stat.st_mtime_ns != known.modified:
                self._extend(known)
        if present.keys() != self.files.keys():
            self.changed = True
        self.files = present

    def _extend(self, known: _File) -> None:
        """Index what was appended to ``known``; from its start if it is another file now
        (same inode number but shorter, or changed without growing, or other bytes)."""
        try:
            handle = self._open(known)  # by inode: a rotation may have renamed it
        except (OSError, UnindexableError):
            return  # gone since the listing
        with handle:
            stat = os.fstat(handle.fileno())
            size = stat.st_size  # what is read below, whatever is appended meanwhile
            if known.offset and (
                size < known.offset
                or (size == known.offset and stat.st_mtime_ns != known.modified)
                or _probes(handle, known.offset) != (known.head, known.tail)
            ):
                known.reset()
                self.changed = True
            handle.seek(known.offset)
            data = handle.read(size - known.offset)
            known.modified = stat.st_mtime_ns
            end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
            if end == 0:
                return
            known.own()
            self._parse(known, data[:end], known.offset)
            known.offset += end
            known.head, known.tail = _probes(handle, known.offset)
            self.changed = True

    def _id(self, text: str) -> int:
        if self._ids is None:
            self._ids = {s: i for i, s in enumerate(self.strings)}
        number = self._ids.get(text)
        if number is None:
            number = self._ids[text] = len(self.strings)
            self.strings.append(text)
        return number

    def _parse(self, known: _File, data: bytes, base: int) -> None:
        start = 0
        while start < len(data):
            end = data.index(b"\n", start)
            line = data[start:end]
            if line.strip():
                # a malformed line is skipped (the view would refuse the whole query)
                with contextlib.suppress(ValueError, RecursionError):
                    self._add(known, line, base + start)
            start = end + 1

    def _add(self, known: _File, line: bytes, offset: int) -> None:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise _MalformedError("not a JSON object")
        values: dict[str, int] = {}
        for name in COMPACT:
            kind, value = _KINDS[name], data.get(name)
            if kind is Kind.TIMESTAMP:
                values[name] = _timestamp(value)
            elif kind in _BOUNDS:
                values[name] = _integer(value, kind)
            else:
                values[name] = self._id(_text(value))
        attributes = data.get("attributes")
        if not isinstance(attributes, dict | None):
            raise _MalformedError("attributes is not an object")
        texts = {key: _text(value) for key, value in (attributes or {}).items()}
        for name in BULKY:
            _text(data.get(name))
            values[f"{name}@start"], values[f"{name}@end"] = _span(line, data.get(name), name)
        values["@offset"], values["@length"] = offset, len(line)
        for name, number in values.items():
            known.columns[name].append(number)
        for key, text in texts.items():
            if key not in known.attributes:
                known.attributes[key] = array("q", [0] * known.rows)
            known.attributes[key].append(
                self._id(text) if len(text) <= _SHORT else _long_place(line, key, text)
            )
        known.rows += 1
        for column in known.attributes.values():
            if len(column) < known.rows:
                column.append(0)

    # -- answering --------------------------------------------------------------------------

    def specs(self) -> list[str]:
        seen: set[int] = set()
        for known in self.files.values():
            seen.update(known.column("spec_id"))
        return sorted(self.strings[i] for i in seen if self.strings[i])

    def _number(self, text: str) -> int | None:
        if self._ids is None:
            self._ids = {s: i for i, s in enumerate(self.strings)}
        return self._ids.get(text)

    def select(
        self,
        spec: str,
        logger: str,
        columns: Sequence[str],
        attributes: Sequence[str] = (),
        *,
        kind: str | None = None,
        iterations: Collection[int] | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`Store.select` from the index, bulky text read from the files."""
        wanted = [self._number(spec), self._number(logger)]
        if kind is not None:
            wanted.append(self._number(kind))
        if None in wanted:
            return []
        found: list[tuple[_File, list[int]]] = []
        for known in self.files.values():
            keys = [known.column("spec_id"), known.column("logger")]
            if kind is not None:
                if "kind" not in known.attributes:
                    continue
                keys.append(known.attributes["kind"])
            target = tuple(wanted)
            numbers = [i for i, key in enumerate(zip(*keys, strict=True)) if key == target]
            if iterations is not None:
                chosen, column = set(iterations), known.column("iteration")
                numbers = [i for i in numbers if column[i] in chosen]
            found.append((known, numbers))
        rows, keys = self._rows(found, columns, attributes)
        order = sorted(range(len(rows)), key=keys.__getitem__)
        return [rows[i] for i in order]

    def latest(
        self, limit: int, *, spec: str | None, level: str | None, since: int | None
    ) -> list[dict[str, Any]]:
        """``tail``'s rows: the newest ``limit`` records, newest first."""
        wanted_spec = self._number(spec) if spec is not None else None
        wanted_level = self._number(level) if level is not None else None
        if (spec is not None and wanted_spec is None) or (
            level is not None and wanted_level is None
        ):
            return []
        newest: list[tuple[int, int, int]] = []  # (timestamp, file, row) of each file's newest
        files = list(self.files.values())
        for position, known in enumerate(files):
            specs, levels = known.column("spec_id").tolist(), known.column("level").tolist()
            stamps = known.column("timestamp").tolist()
            matching = (
                (stamp, position, row)
                for row, stamp in enumerate(stamps)
                if (wanted_spec is None or specs[row] == wanted_spec)
                and (wanted_level is None or levels[row] == wanted_level)
                and (since is None or stamp > since)
            )
            newest += heapq.nlargest(limit, matching)
        chosen = [(files[position], row) for _, position, row in heapq.nlargest(limit, newest)]
        rows, _ = self._rows([(known, [row]) for known, row in chosen], TAIL_COLUMNS)
        return rows

    def _rows(
        self,
        found: list[tuple[_File, list[int]]],
        columns: Sequence[str],
        attributes: Sequence[str] = (),
    ) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
        """The rows of the given records of each file, and their (iteration, timestamp)."""
        strings = self.strings
        rows: list[dict[str, Any]] = []
        keys: list[tuple[int, int]] = []
        names = list(dict.fromkeys([*columns, *attributes]))
        make = _record_maker(names)
        for known, numbers in found:
            if not numbers:
                continue
            every = len(numbers) == known.rows  # a whole file: its columns as they are
            values: list[list[Any]] = []
            for name in names:
                if name in BULKY:
                    values.append(self._bulky(known, numbers, name))
                    continue
                if name in attributes:
                    column = known.attributes.get(name)
                elif name in _KINDS and _KINDS[name] is not Kind.STRING_MAP:
                    column = known.column(name)
                else:
                    raise UnindexableError(f"no column {name!r} in the index")
                if column is None:
                    picked = [0] * len(numbers)
                else:
                    picked = column.tolist() if every else [column[i] for i in numbers]
                if name in attributes:
                    values.append(
                        [
                            strings[v] if v >= 0 else self._long(known, i, name, v)
                            for v, i in zip(picked, numbers, strict=True)
                        ]
                    )
                elif name in _TEXT:
                    values.append([strings[v] for v in picked])
                elif name == "timestamp":
                    values.append([clickhouse_timestamp(v) for v in picked])
                else:
                    values.append(picked)
            iterations, stamps = known.column("iteration"), known.column("timestamp")
            if every:
                keys.extend(zip(iterations.tolist(), stamps.tolist(), strict=True))
            else:
                keys.extend((iterations[i], stamps[i]) for i in numbers)
            rows.extend(map(make, *values) if values else ({} for _ in numbers))
        return rows, keys

    def _bulky(self, known: _File, numbers: list[int], name: str) -> list[str]:
        starts, ends = known.column(f"{name}@start"), known.column(f"{name}@end")
        offsets, lengths = known.column("@offset"), known.column("@length")
        texts = [""] * len(numbers)
        needed = [(k, i) for k, i in enumerate(numbers) if starts[i] != _ABSENT[0]]
        if not needed:
            return texts
        with self._open(known) as handle:
            for k, i in needed:
                if starts[i] == _UNKNOWN[0]:
                    handle.seek(offsets[i])
                    texts[k] = _text(json.loads(handle.read(lengths[i])).get(name))
                else:
                    handle.seek(offsets[i] + starts[i])
                    texts[k] = json.loads(handle.read(ends[i] - starts[i]))
        return texts

    def _long(self, known: _File, number: int, name: str, place: int) -> str:
        with self._open(known) as handle:
            handle.seek(known.column("@offset")[number])
            if place == _LONG:
                data = json.loads(handle.read(known.column("@length")[number]))
                return _text(data.get("attributes", {}).get(name))
            start, end = divmod(-place - 3, 1 << 32)
            handle.seek(start, os.SEEK_CUR)
            text: str = json.loads(handle.read(end - start))
        return text

    def _open(self, known: _File) -> Any:
        """The file by its identity: a rotation may have renamed it since the refresh."""
        for _ in range(_LISTINGS):
            with contextlib.suppress(FileNotFoundError):
                handle = open(self.directory / known.name, "rb")  # noqa: SIM115 - the caller's
                stat = os.fstat(handle.fileno())
                if f"{stat.st_dev}:{stat.st_ino}" == known.key:
                    return handle
                handle.close()
            for entry in os.scandir(self.directory):
                with contextlib.suppress(FileNotFoundError):
                    if f"{entry.stat().st_dev}:{entry.inode()}" == known.key:
                        known.name = entry.name
        raise UnindexableError(f"{known.name} is gone: rotated out while being read")


def _long_place(line: bytes, key: str, text: str) -> int:
    """A long attribute's place in its line, as a negative number (``_LONG``: unknown)."""
    start, end = _span(line, text, key, max(line.find(b'"attributes": {'), 0))
    return _LONG if start < 0 else -(3 + (start << 32 | end))


def _record_maker(names: Sequence[str]) -> Any:
    """A function of one value per name that returns the record as a dict.

    Compiled for the names (each written as a string literal by ``repr``): a dict display
    builds the tens of thousands of records of a spec twice as fast as ``dict(zip())``.
    """
    if not names:
        return dict
    arguments = ", ".join(f"v{i}" for i in range(len(names)))
    display = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names))
    return eval(f"lambda {arguments}: {{{display}}}", {"__builtins__": {}})


def _probes(handle: Any, offset: int) -> tuple[int, int]:
    """Checksums of the first and the last bytes of a file's indexed prefix: a file
    replaced by another with the same inode number fails them."""
    size = min(offset, _PROBE)
    handle.seek(0)
    head = zlib.crc32(handle.read(size))
    handle.seek(offset - size)
    return head, zlib.crc32(handle.read(size))


def _read(path: Path) -> tuple[dict[str, _File], list[str]]:
    """The files and strings of a saved index; none when it is missing or unreadable.

    The columns stay views of the bytes read (no copy) until a file grows.
    """
    try:
        data = path.read_bytes()
        if not data.startswith(_MAGIC):
            return {}, [""]
        body = len(_MAGIC) + 8
        size = int.from_bytes(data[len(_MAGIC) : body], "little")
        header = json.loads(data[body : body + size])
        if header["byteorder"] != sys.byteorder or header["layout"] != _LAYOUT:
            return {}, [""]  # another machine's, or the schema changed since: read again
        blob = memoryview(data)[body + size :]
        files = {}
        for entry in header["files"]:
            known = _File(entry["key"], "")
            known.offset, known.head, known.tail = entry["offset"], entry["head"], entry["tail"]
            known.modified, known.rows = entry["modified"], entry["rows"]
            for table, spans in (
                (known.columns, entry["columns"]),
                (known.attributes, entry["attributes"]),
            ):
                for name, (start, end) in spans.items():
                    table[name] = blob[start:end].cast("q")
            files[known.key] = known
        return files, list(header["strings"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}, [""]


def _write(folder: Path, files: dict[str, _File], strings: list[str]) -> None:
    """Save the index: a JSON header, then each column's raw integers; replaced atomically
    (readers see the old or the new whole file), skipped when the folder is not writable."""
    blobs: list[bytes] = []
    position = 0
    entries = []
    for known in files.values():
        entry: dict[str, Any] = {
            "key": known.key,
            "offset": known.offset,
            "head": known.head,
            "tail": known.tail,
            "modified": known.modified,
            "rows": known.rows,
            "columns": {},
            "attributes": {},
        }
        for table, spans in (
            (known.columns, entry["columns"]),
            (known.attributes, entry["attributes"]),
        ):
            for name, values in table.items():
                raw = values.tobytes()
                spans[name] = (position, position + len(raw))
                blobs.append(raw)
                position += len(raw)
        entries.append(entry)
    header = json.dumps(
        {"byteorder": sys.byteorder, "layout": _LAYOUT, "strings": strings, "files": entries},
        separators=(",", ":"),
    ).encode()
    temporary = folder / f".{_INDEX_FILE}.{os.getpid()}.tmp"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(_MAGIC + len(header).to_bytes(8, "little") + header)
            handle.writelines(blobs)
        os.replace(temporary, folder / _INDEX_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
