"""The TDD loop's unit of work: run a command, capture it, log it as one record."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, TypeVar

from ._convert import DEFAULT_MAX_FIELD_CHARS
from .context import ENVIRONMENT_FIELDS, AsyncAwareDecorator, log_context

__all__ = [
    "EXIT_NOT_STARTED",
    "EXIT_TIMEOUT",
    "RunResult",
    "log_step",
    "read_snapshot",
    "run_and_log",
    "snapshot_roots",
    "split_snapshot",
]

#: Exit code recorded when the command could not be started (as a shell reports it).
EXIT_NOT_STARTED: Final = 127
#: Exit code recorded when the command was killed for exceeding its timeout (as
#: coreutils' ``timeout`` reports it).
EXIT_TIMEOUT: Final = 124

_F = TypeVar("_F", bound=Callable[..., Any])
_CHUNK: Final = 65536
_PIPE_GRACE: Final = 5.0  # seconds to drain the pipes once the command has exited
_INTERRUPT_GRACE: Final = 5.0  # seconds the command has to end after Ctrl-C or SIGTERM
_MARKER_ROOM: Final = 80  # characters kept free for the truncation marker


@dataclass(frozen=True)
class RunResult:
    """What one run did. ``stdout``/``stderr`` are the captured (possibly cut) texts."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False
    started: bool = True
    interrupted: int = 0  # the signal (SIGINT, SIGTERM) this process got and passed on
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class _Capture:
    """Keep the first ``limit`` bytes of a stream, count the rest, optionally echo it."""

    def __init__(self, limit: int, echo: IO[bytes] | None) -> None:
        self.limit = limit
        self.echo = echo
        self.kept = bytearray()
        self.total = 0

    def pump(self, stream: IO[bytes]) -> None:
        while chunk := stream.read1(_CHUNK):  # type: ignore[attr-defined]
            self.total += len(chunk)
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            if self.echo is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.echo.write(chunk)
                    self.echo.flush()

    def text(self, note: str = "") -> str:
        """The kept output, its truncation marker and ``note``, within ``limit`` characters.

        The record's field limit is the same size by default: were the marker appended
        past it, that limit would cut the marker off and the loss would go unsaid.
        """
        data = bytes(self.kept)
        if self.total > len(data) or len(data) + len(note) > self.limit:
            data = data[: max(0, self.limit - len(note) - _MARKER_ROOM)]
        text = data.decode("utf-8", "replace")  # never more characters than bytes
        if self.total > len(data):
            text += f"\n…[truncated: {self.total - len(data)} of {self.total} bytes not kept]"
        return text + note


def read_snapshot(
    source: str | os.PathLike[str] | Sequence[os.PathLike[str]] | None, limit: int
) -> str:
    """The code that was run: a literal string, a file, or the files of a directory.

    Directories are walked in sorted order (hidden entries and ``__pycache__`` skipped),
    each file under a ``# ===== path`` header, and the whole is cut at ``limit``
    characters, so a snapshot is bounded and the same tree always gives the same text.
    """
    if source is None:
        return ""
    if isinstance(source, str):
        return source[:limit]
    paths = _snapshot_paths(source)
    parts: list[str] = []
    size = 0
    for path in paths:
        if size >= limit:
            parts.append(f"# ===== {path} (not included: snapshot limit reached)\n")
            continue
        try:
            text = path.read_bytes()[: limit - size].decode("utf-8", "replace")
        except OSError as error:
            text = f"<unreadable: {error}>"
        block = f"# ===== {path}\n{text}\n" if len(paths) > 1 or path.is_dir() else text
        parts.append(block)
        size += len(block)
    return "".join(parts)[:limit]


_FILE_HEADER: Final = re.compile(
    r"^# ===== (.+?)(?: \(not included: snapshot limit reached\))?\n", re.MULTILINE
)


def split_snapshot(text: str) -> dict[str, str]:
    """The files of a snapshot :func:`read_snapshot` made, by path, in order.

    A snapshot of one file or of a literal string has no headers: it is one entry, ``""``.
    A file left out at the limit is an entry with empty text.
    """
    headers = list(_FILE_HEADER.finditer(text))
    if not headers or headers[0].start() != 0:
        return {"": text}
    files: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        body = text[header.end() : end]
        files[header.group(1)] = body[:-1] if body.endswith("\n") else body
    return files


def _snapshot_paths(source: os.PathLike[str] | Sequence[os.PathLike[str]]) -> list[Path]:
    paths: list[Path] = []
    sources = [source] if isinstance(source, os.PathLike) else list(source)
    for item in sources:
        path = Path(item)
        if path.is_dir():
            root = path.resolve()
            paths.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(
                    part.startswith(".") or part == "__pycache__"
                    for part in p.relative_to(path).parts
                )
                and _inside(p, root)
            )
        else:
            paths.append(path)
    return paths


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, is in ``root``: a link out of the named tree (a
    key, a config holding a password) is not part of the code that was run."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop
        return False


def file_hashes(
    source: str | os.PathLike[str] | Sequence[os.PathLike[str]] | None,
) -> dict[str, str]:
    """``{absolute path: content hash}`` of the files a snapshot reads (none for text).

    The walk is :func:`read_snapshot`'s, over the whole tree (past the snapshot's size
    limit too), so ``genesis-logging verify`` can re-walk the same roots later and see
    a file added, deleted or renamed. A path that does not exist has no entry.
    """
    if source is None or isinstance(source, str):
        return {}
    hashes = {}
    for path in _snapshot_paths(source):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except FileNotFoundError:
            continue
        except OSError:
            digest = "unreadable"
        hashes[str(path.resolve())] = digest
    return hashes


def snapshot_roots(
    source: str | os.PathLike[str] | Sequence[os.PathLike[str]] | None,
) -> list[str]:
    """The files and directories a snapshot was taken from, as absolute paths.

    Recorded with the run so ``verify`` walks the same trees again, not only the files
    that were there then.
    """
    if source is None or isinstance(source, str):
        return []
    sources = [source] if isinstance(source, os.PathLike) else list(source)
    return [str(Path(item).resolve()) for item in sources]


def code_hash(snapshot: str) -> str:
    """A short hash of the code that was run: equal hashes, equal code."""
    return hashlib.sha256(snapshot.encode("utf-8", "replace")).hexdigest()[:16]


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the command runs in its own process group


def run_and_log(
    cmd: Sequence[str] | str,
    *,
    spec_id: str,
    iteration: int,
    sprint_id: str | None = None,
    task_id: str | None = None,
    code_snapshot: str | os.PathLike[str] | Sequence[os.PathLike[str]] | None = None,
    timeout: float | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
    shell: bool = False,
    echo: bool = False,
    max_output_bytes: int = DEFAULT_MAX_FIELD_CHARS,
) -> RunResult:
    """Run a command and log the run as one record carrying every field of the seed.

    Output is captured while it streams (bounded: the first ``max_output_bytes`` of each
    stream are kept, the rest counted and marked) and, with ``echo``, passed through to
    this process's stdout/stderr live. The record is ``info`` when the command exits 0,
    ``error`` otherwise. A timeout kills the whole process tree and records exit code
    124; a command that cannot be started records 127 and the reason.

    Args:
        cmd: argument list, or a string run by the shell when ``shell`` is true (a string
            without ``shell`` is split like a shell would).
        spec_id, iteration, sprint_id, task_id: the loop's identifiers.
        code_snapshot: the code that was run: a string, or a file / directory path.
        timeout: seconds before the process tree is killed.
        cwd, env: for the command (``env`` replaces the environment). Either way the
            command also gets ``GENESIS_SPEC_ID``, ``GENESIS_ITERATION``,
            ``GENESIS_SPRINT_ID``, ``GENESIS_TASK_ID`` and ``GENESIS_CODE_HASH``: a
            program logging through genesis-logging stamps its records with them.
        logger: where the record goes (default ``genesis.run``).
    """
    log = logger or logging.getLogger("genesis.run")
    if isinstance(cmd, str):
        argv: Sequence[str] | str = cmd if shell else shlex.split(cmd)
        shown = cmd
    else:
        argv = list(cmd)
        shown = shlex.join(argv)
    snapshot = read_snapshot(code_snapshot, max_output_bytes)
    code = _Code(
        snapshot, code_hash(snapshot), file_hashes(code_snapshot), snapshot_roots(code_snapshot)
    )
    identity = {
        "spec_id": spec_id,
        "iteration": iteration,
        "sprint_id": sprint_id,
        "task_id": task_id,
    }
    child_env = dict(os.environ if env is None else env)
    child_env.update(
        {ENVIRONMENT_FIELDS[k]: str(v) for k, v in identity.items() if v is not None},
        GENESIS_CODE_HASH=code.hash,
    )
    out = _Capture(max_output_bytes, sys.stdout.buffer if echo else None)
    err = _Capture(max_output_bytes, sys.stderr.buffer if echo else None)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            shell=shell,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError) as error:
        duration_ms = round((time.monotonic() - started) * 1000)
        reason = f"{type(error).__name__}: {error}"
        result = RunResult(shown, EXIT_NOT_STARTED, "", reason, duration_ms, started=False)
        _log_run(log, result, identity, code, cwd, timeout)
        return result
    timed_out, interrupted = _wait_capturing(process, out, err, timeout)
    duration_ms = round((time.monotonic() - started) * 1000)
    result = _result(shown, process, out, err, duration_ms, timeout, timed_out, interrupted)
    _log_run(log, result, identity, code, cwd, timeout)
    return result


def _result(
    shown: str,
    process: subprocess.Popen[bytes],
    out: _Capture,
    err: _Capture,
    duration_ms: int,
    timeout: float | None,
    timed_out: bool,
    interrupted: int,
) -> RunResult:
    """What an ended run did; its exit code as a shell reports it (124 for the timeout,
    128 + the signal passed on to it)."""
    exit_code, note = process.returncode, ""
    if timed_out:
        exit_code = EXIT_TIMEOUT
        note = f"\n[genesis-logging: killed after the {timeout:g}s timeout]"
    elif interrupted:
        exit_code = 128 + interrupted
        note = f"\n[genesis-logging: {signal.Signals(interrupted).name} passed on to the command]"
    return RunResult(
        shown,
        exit_code,
        out.text(),
        err.text(note),
        duration_ms,
        timed_out=timed_out,
        interrupted=interrupted,
        stdout_bytes=out.total,
        stderr_bytes=err.total,
    )


def _wait_capturing(
    process: subprocess.Popen[bytes], out: _Capture, err: _Capture, timeout: float | None
) -> tuple[bool, int]:
    """Capture both streams until the process ends. Returns whether it had to be killed
    for its timeout, and the signal passed on to it (0: none)."""
    assert process.stdout is not None
    assert process.stderr is not None
    pumps = [
        threading.Thread(target=out.pump, args=(process.stdout,), daemon=True),
        threading.Thread(target=err.pump, args=(process.stderr,), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    received: list[int] = []
    with _passing_signals_on(process, received) as polling:
        timed_out = _wait(process, timeout, received, polling)
    if received:
        _kill_tree(process)  # what the command left behind in its group goes with it
    for pump in pumps:
        pump.join(_PIPE_GRACE)  # a background grandchild may hold the pipe open forever
    return timed_out, received[0] if received else 0


@contextlib.contextmanager
def _passing_signals_on(process: subprocess.Popen[bytes], received: list[int]) -> Iterator[bool]:
    """While the command runs, Ctrl-C and SIGTERM to us go to its process group.

    The command sits in a session of its own (so a timeout can kill its whole tree), out
    of the terminal's reach: a Ctrl-C would stop only us and leave it running. Yields
    whether the handlers are in place (only the main thread may set them).
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def pass_on(signum: int, frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(
    process: subprocess.Popen[bytes], timeout: float | None, received: list[int], polling: bool
) -> bool:
    """Wait for the command; ``True`` if it was killed for its timeout. After a signal
    was passed on, it gets :data:`_INTERRUPT_GRACE` seconds to end, then it is killed."""
    end = math.inf if timeout is None else time.monotonic() + timeout
    grace_end = math.inf
    while True:
        if received and grace_end == math.inf:
            grace_end = time.monotonic() + _INTERRUPT_GRACE
        now = time.monotonic()
        if now >= min(end, grace_end):
            _kill_tree(process)
            process.wait()
            return now >= end and not received
        limit = min(end, grace_end) - now
        try:  # short waits while signals may arrive: the handler only sets ``received``
            process.wait(min(limit, 0.1) if polling else None if limit == math.inf else limit)
        except subprocess.TimeoutExpired:
            continue
        return False


@dataclass(frozen=True)
class _Code:
    """The code a run ran: its text, a hash of it, a hash of each file read, and the
    roots they were read from."""

    text: str
    hash: str
    files: dict[str, str]
    roots: list[str]


def _log_run(
    log: logging.Logger,
    result: RunResult,
    identity: dict[str, Any],
    code: _Code,
    cwd: str | os.PathLike[str] | None,
    timeout: float | None,
) -> None:
    if not result.started:
        outcome = "could not be started"
    elif result.timed_out:
        outcome = f"timed out after {timeout:g}s"
    elif result.interrupted:
        outcome = f"interrupted by {signal.Signals(result.interrupted).name}"
    else:
        outcome = "succeeded" if result.ok else f"failed with exit code {result.exit_code}"
    extra: dict[str, Any] = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": result.exit_code,
        "code_snapshot": code.text,
        "duration_ms": result.duration_ms,
        "command": result.command,
        "code_hash": code.hash,
    }
    if code.files:
        extra["snapshot_files"] = json.dumps(code.files, sort_keys=True)
    if code.roots:
        extra["snapshot_roots"] = json.dumps(code.roots)
    if cwd is not None:
        extra["cwd"] = os.fspath(cwd)
    if result.timed_out:
        extra["timed_out"] = True
    with log_context(**identity):
        log.log(
            logging.INFO if result.ok else logging.ERROR,
            "run %s: %s",
            outcome,
            result.command,
            extra=extra,
        )


class log_step(AsyncAwareDecorator):  # noqa: N801 - used like a function
    """Time a block and log the specification's "received / failed / done" records.

    ``with log_step("process order", task_id="T01"): ...`` logs ``process order:
    received`` on entry, ``process order: done`` with ``duration_ms`` on success, or
    ``process order: failed`` at error level with the exception's message and traceback
    (the exception still propagates). Keyword fields are bound with :class:`log_context`
    for everything logged inside. Works as a decorator of plain and ``async`` functions.
    """

    def __init__(self, name: str, *, logger: logging.Logger | None = None, **fields: Any) -> None:
        self.name = name
        self.logger = logger or logging.getLogger("genesis.step")
        self.fields = fields
        log_context(**fields)  # validate now: a bad value is the caller's error, here

    def _recreate_cm(self) -> log_step:
        return log_step(self.name, logger=self.logger, **self.fields)

    @contextlib.contextmanager
    def _run(self) -> Iterator[None]:
        with log_context(**self.fields):
            started = time.monotonic()
            self.logger.info("%s: received", self.name)
            try:
                yield
            except BaseException as error:
                self.logger.error(
                    "%s: failed",
                    self.name,
                    exc_info=True,
                    extra={
                        "duration_ms": round((time.monotonic() - started) * 1000),
                        "error": f"{type(error).__name__}: {error}",
                    },
                )
                raise
            self.logger.info(
                "%s: done",
                self.name,
                extra={"duration_ms": round((time.monotonic() - started) * 1000)},
            )

    def __enter__(self) -> log_step:
        self._active = self._run()
        self._active.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        return bool(self._active.__exit__(*exc_info))
