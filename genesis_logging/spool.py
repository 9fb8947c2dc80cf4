"""A directory of undelivered batches, one ``JSONEachRow`` file each, shared safely.

Pure file logic, no threads: the handler's worker drives it. Files are written
atomically (temporary file, fsync, rename) and claimed by an atomic rename, so several
processes may share one directory without replaying a file twice. A claimant holds an
``flock`` on the file it claimed for as long as it works on it; the kernel lets go when
the process ends, however it ends, so a claim nobody holds is taken back — whatever PID
its name carries (in a container the application is PID 1, always alive).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from ._codec import Row, row_from_json_line, row_to_json_line
from ._config import DEFAULT_SPOOL_MAX_BYTES, check_number

__all__ = [
    "DEFAULT_SPOOL_MAX_BYTES",
    "BatchTooLargeError",
    "Spool",
    "SpoolFile",
    "SpoolStatus",
]

_SUFFIX: Final = ".jsonl"
_CLAIMED: Final = ".claimed-"
_NAME: Final = re.compile(
    r"(?P<created>\d{19})-(?P<batch>[0-9a-f]{32})-n(?P<rows>\d+)-f(?P<failures>\d+)"
    r"(?:-o(?P<offset>\d+))?(?:-d(?P<destination>[A-Za-z0-9_%]+\.[A-Za-z0-9_%]+))?\.jsonl"
)
_DEAD_DIR: Final = "dead"
_LONGEST_DELAY: Final = 3660.0  # seconds; a due-time further ahead means the clock stepped back
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_]")


class BatchTooLargeError(OSError):
    """One batch is larger than the whole spool cap: write it in smaller parts."""

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"batch of {size} bytes exceeds the spool cap of {cap}")
        self.size = size
        self.cap = cap


def destination_key(database: str, table: str) -> str:
    """``database.table`` as it stands in a file name (other characters %-encoded)."""

    def encode(part: str) -> str:
        return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), part)

    return f"{encode(database)}.{encode(table)}"


@dataclass(frozen=True)
class SpoolFile:
    """One spooled batch: its path (claimed or not) and what its name says."""

    path: Path
    batch_id: str
    rows: int
    failures: int
    created_ns: int
    offset: int = 0  # position of the first row in the batch (after a partial replay)
    destination: str | None = None  # database.table; None: files of older versions

    @property
    def name(self) -> str:
        offset = f"-o{self.offset}" if self.offset else ""
        destination = f"-d{self.destination}" if self.destination else ""
        return (
            f"{self.created_ns:019d}-{self.batch_id}-n{self.rows}-f{self.failures}"
            f"{offset}{destination}{_SUFFIX}"
        )

    def moved(self, directory: Path, **changes: int) -> SpoolFile:
        """The same batch under another name or directory (failures counted, claim undone)."""
        entry = replace(self, **changes)  # type: ignore[arg-type]
        return replace(entry, path=directory / entry.name)


@dataclass(frozen=True)
class SpoolStatus:
    """What a spool directory holds."""

    directory: str
    files: int
    rows: int
    bytes: int
    claimed_files: int
    dead_files: int
    dead_rows: int
    oldest_age_seconds: float | None


def _parse(path: Path) -> SpoolFile | None:
    name = path.name.split(_CLAIMED)[0]
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    return SpoolFile(
        path,
        match["batch"],
        int(match["rows"]),
        int(match["failures"]),
        int(match["created"]),
        int(match["offset"] or 0),
        match["destination"],
    )


def _hold(path: Path) -> int | None:
    """A descriptor holding an exclusive ``flock`` on ``path``; ``None`` when another
    claimant holds it. Raises ``FileNotFoundError`` when the file is gone."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


_HOLDING: weakref.WeakSet[Spool] = weakref.WeakSet()


def _let_go_in_child() -> None:
    """A forked child closes the descriptors it inherited: the claims stay its parent's."""
    for spool in list(_HOLDING):
        for descriptor in spool._held.values():
            with contextlib.suppress(OSError):
                os.close(descriptor)
        spool._held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_let_go_in_child)


def _write_atomically(final: Path, data: bytes, hold: bool) -> int | None:
    """Write a private file: temporary file, fsync, rename, fsync of the directory. With
    ``hold``, returns a descriptor holding the file's ``flock``, taken before it appears
    under its name (a claimed file is never visible unheld)."""
    directory = final.parent
    temporary = directory / f".tmp-{os.getpid()}-{threading.get_ident()}-{time.time_ns()}"
    held = None
    try:
        private = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(private, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if hold:
            held = _hold(temporary)
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if held is not None:
            os.close(held)
        raise
    _sync_directory(directory)
    return held


def _version(directory: Path) -> int:
    """The directory's modification time: it changes whenever a file comes or goes."""
    try:
        return os.stat(directory).st_mtime_ns
    except OSError:
        return -1


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class Spool:
    """Undelivered batches on disk, capped in size; oldest files are evicted first.

    Several processes and handlers may share one directory: every file carries its
    destination (``database.table``) in its name, and a spool made for a destination
    claims only that destination's files (and those of versions that wrote none).

    Args:
        directory: where the files live; created if missing (and again if deleted).
        max_bytes: cap of the directory's batch files; writing past it evicts the
            oldest unclaimed files.
        destination: ``(database, table)`` the files written here are for; ``None`` for a
            spool that reads every file (``genesis-logging spool status``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        destination: tuple[str, str] | None = None,
    ) -> None:
        check_number("spool_max_bytes", max_bytes, integer=True)  # the handler's rule
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.destination = destination_key(*destination) if destination else None
        self._known_bytes: int | None = None  # the directory's size as last listed, plus ours
        self._known_version = -1  # the directory's mtime when _known_bytes was right
        self._held: dict[str, int] = {}  # claimed path -> descriptor holding its flock
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # records are private
        _HOLDING.add(self)

    def __repr__(self) -> str:
        return f"<Spool {self.directory} max_bytes={self.max_bytes}>"

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        rows: Sequence[Row],
        batch_id: str,
        *,
        failures: int = 0,
        offset: int = 0,
        dead: bool = False,
    ) -> int:
        """Store ``rows`` as one file, atomically. Returns the rows evicted to make room.

        The directory is listed only when the cap may be reached or another process
        changed it, so the cost of a write does not grow with the number of files (the
        ``spool`` policy writes from the caller's thread), and processes sharing the
        directory share one cap.

        Args:
            offset: the position of the first row in the batch ``batch_id`` (the rest of
                a batch whose first rows were delivered).
            dead: straight into ``dead/`` (rows the server refused).

        Raises:
            OSError: the file could not be written (read-only, disk full); nothing is
                left behind. A batch larger than the whole cap raises
                :class:`BatchTooLargeError`.
        """
        data = "".join(map(row_to_json_line, rows)).encode("utf-8")
        if len(data) > self.max_bytes:
            raise BatchTooLargeError(len(data), self.max_bytes)
        evicted = 0 if dead else self._make_room(len(data))
        directory = self.directory / _DEAD_DIR if dead else self.directory
        entry = SpoolFile(
            directory, batch_id, len(rows), failures, time.time_ns(), offset, self.destination
        )
        self._write_file(directory / entry.name, data)
        if self._known_bytes is not None and not dead:
            self._known_bytes += len(data)
            self._known_version = _version(self.directory)
        return evicted

    def _write_file(self, final: Path, data: bytes, *, hold: bool = False) -> None:
        try:
            held = _write_atomically(final, data, hold)
        except FileNotFoundError:  # the directory was deleted under us: make it again
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            held = _write_atomically(final, data, hold)
        if held is not None:
            self._held[str(final)] = held

    def _let_go(self, path: Path) -> None:
        """Stop holding a claimed file (delivered, given back or buried)."""
        descriptor = self._held.pop(str(path), None)
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def _make_room(self, needed: int) -> int:
        if (
            self._known_bytes is not None
            and self._known_bytes + needed <= self.max_bytes
            and _version(self.directory) == self._known_version
        ):
            return 0  # room, and nobody else wrote or removed since: no listing
        entries = sorted(self._entries(), key=lambda e: e[0].created_ns)
        total = sum(size for _, size in entries)
        evicted = 0
        for entry, size in entries:
            if total + needed <= self.max_bytes:
                break
            try:
                entry.path.unlink()
            except FileNotFoundError:
                continue  # claimed by another process meanwhile
            total -= size
            evicted += entry.rows
        self._known_bytes = total
        self._known_version = _version(self.directory)
        return evicted

    def _entries(self) -> Iterator[tuple[SpoolFile, int]]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(_SUFFIX):
                continue
            entry = _parse(self.directory / name)
            if entry is None:
                continue
            try:
                size = entry.path.stat().st_size
            except FileNotFoundError:
                continue
            yield entry, size

    # -- replaying -----------------------------------------------------------------------

    def claim(
        self, *, skip: frozenset[str] = frozenset(), due_only: bool = True
    ) -> SpoolFile | None:
        """Take the oldest due file of this spool's destination, by renaming it.

        A file whose retry time (its modification time) lies in the future is skipped,
        unless it lies further ahead than any backoff: then the clock stepped back, or
        ``due_only`` is false (a person replaying now). ``skip`` names batches not to take
        (a person replaying skips what failed).
        """
        self.recover_stale_claims()
        now = time.time()
        entries = sorted(self._entries(), key=lambda e: e[0].created_ns)
        for entry, _ in entries:
            if entry.batch_id in skip or not self._mine(entry):
                continue
            try:
                due_at = entry.path.stat().st_mtime
                if due_only and now < due_at < now + _LONGEST_DELAY:
                    continue
                held = _hold(entry.path)  # before the rename: never visible unheld
                if held is None:
                    continue  # another claimant is renaming it right now
                claimed = entry.path.with_name(f"{entry.path.name}{_CLAIMED}{os.getpid()}")
                try:
                    os.rename(entry.path, claimed)
                except BaseException:
                    os.close(held)
                    raise
            except FileNotFoundError:
                continue  # another process was faster
            self._held[str(claimed)] = held
            return replace(entry, path=claimed)
        return None

    def waiting(self) -> list[SpoolFile]:
        """This destination's files not yet delivered, claimed ones included, oldest first."""
        entries = [entry for entry, _ in self._entries() if self._mine(entry)]
        return sorted(entries, key=lambda entry: entry.created_ns)

    def _mine(self, entry: SpoolFile) -> bool:
        return self.destination is None or entry.destination in (None, self.destination)

    def read(self, entry: SpoolFile) -> tuple[list[Row], int]:
        """The rows of a claimed file, and how many of its lines could not be read."""
        rows: list[Row] = []
        bad = 0
        with open(entry.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    rows.append(row_from_json_line(line))
                except ValueError:
                    bad += 1
        return rows, bad

    def complete(self, entry: SpoolFile) -> None:
        """The file's rows are delivered: remove it."""
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
        self._let_go(entry.path)

    def release(self, entry: SpoolFile, *, retry_in: float, failed: bool = True) -> None:
        """Give a claimed file back, not to be tried again for ``retry_in`` seconds."""
        back = entry.moved(self.directory, failures=entry.failures + (1 if failed else 0))
        os.rename(entry.path, back.path)
        not_before = time.time() + max(0.0, retry_in)
        with contextlib.suppress(OSError):
            os.utime(back.path, (not_before, not_before))
        self._let_go(entry.path)  # after the retry time is set: not claimed again before

    def rewrite(self, entry: SpoolFile, rows: Sequence[Row], offset: int) -> SpoolFile:
        """Some rows of a claimed file are delivered: keep only ``rows`` (from ``offset``
        on, in the batch's numbering), still claimed. Returns the new file."""
        rest = replace(entry, rows=len(rows), offset=offset)
        claimed = entry.path.with_name(f"{rest.name}{_CLAIMED}{os.getpid()}")
        data = "".join(map(row_to_json_line, rows)).encode("utf-8")
        old = self._held.pop(str(entry.path), None)
        try:
            self._write_file(claimed, data, hold=True)  # held before it appears
        except BaseException:
            if old is not None:
                self._held[str(entry.path)] = old
            raise
        if claimed != entry.path:
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
        if old is not None:
            os.close(old)
        return replace(rest, path=claimed)

    def bury(self, entry: SpoolFile) -> None:
        """Move a file that keeps failing for a permanent reason out of the way."""
        dead = self.directory / _DEAD_DIR
        dead.mkdir(mode=0o700, exist_ok=True)
        os.rename(entry.path, entry.moved(dead).path)
        self._let_go(entry.path)

    def revive_dead(self) -> int:
        """Put dead letters back in line (after an operator fixed the cause). Returns rows."""
        revived = 0
        for path in self._dead_paths():
            entry = _parse(path)
            if entry is None or not self._mine(entry):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, entry.moved(self.directory, failures=0).path)
                revived += entry.rows
        return revived

    def recover_stale_claims(self) -> int:
        """Give back files whose claimant holds them no more (it ended). Returns how many."""
        recovered = 0
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        for name in names:
            if _CLAIMED not in name:
                continue
            path = self.directory / name
            try:
                held = _hold(path)
            except FileNotFoundError:
                continue
            if held is None:
                continue  # its claimant is working on it
            try:
                os.rename(path, self.directory / name.partition(_CLAIMED)[0])
                recovered += 1
            except FileNotFoundError:
                pass
            finally:
                os.close(held)
        return recovered

    # -- inspecting ----------------------------------------------------------------------

    def status(self) -> SpoolStatus:
        entries = list(self._entries())
        claimed = sum(1 for name in self._names() if _CLAIMED in name)
        dead = [e for e in (_parse(p) for p in self._dead_paths()) if e is not None]
        oldest = min((e.created_ns for e, _ in entries), default=None)
        return SpoolStatus(
            directory=str(self.directory),
            files=len(entries),
            rows=sum(e.rows for e, _ in entries),
            bytes=sum(size for _, size in entries),
            claimed_files=claimed,
            dead_files=len(dead),
            dead_rows=sum(e.rows for e in dead),
            oldest_age_seconds=None if oldest is None else (time.time_ns() - oldest) / 1e9,
        )

    def purge(self, *, dead: bool = True) -> int:
        """Delete every unclaimed file (and the dead letters). Returns the rows removed."""
        removed = 0
        paths = [e.path for e, _ in self._entries()]
        if dead:
            paths.extend(self._dead_paths())
        for path in paths:
            entry = _parse(path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += entry.rows if entry else 0
        return removed

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.directory)
        except FileNotFoundError:
            return []

    def _dead_paths(self) -> list[Path]:
        dead = self.directory / _DEAD_DIR
        return sorted(dead.glob(f"*{_SUFFIX}")) if dead.is_dir() else []
