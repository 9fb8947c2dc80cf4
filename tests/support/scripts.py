"""Scripts run as users run them (a subprocess outside the checkout), and reading
back what they stored or spooled."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from genesis_logging.spool import Spool

from .fakes import OUTSIDE_CHECKOUT, clean_env, wait_until
from .server import Target

Table = tuple[Target, str, str]


#: A Python prelude for scripts: warnings off unless the test turns them on.
PRELUDE = "import json, logging, os, sys, time, warnings\n"

#: A server address that refuses at once: a handler's records all end in its spool.
NOWHERE = "clickhouse://default@127.0.0.1:1/genesis"

#: The prelude of the signal tests' scripts: ``make(spool, **options)`` adds to the root
#: logger a handler for NOWHERE (each record spooled, where ``spooled`` counts it),
#: ``log`` logs through it, ``blackhole()`` is the URL of a server that accepts and never
#: answers, and ``wait_until`` is this suite's own (its source: a script cannot import
#: ``tests``), for a script to wait on a condition with a deadline, not on time.
SPOOLING_PRELUDE = (
    PRELUDE
    + textwrap.dedent(f"""
    import signal, socket
    from collections.abc import Callable
    warnings.simplefilter("ignore")
    from genesis_logging import ClickHouseHandler

    def make(spool, **options):
        options = {{"retry_attempts": 1, "flush_interval": 60, "shutdown_timeout": 5,
                    **options}}
        handler = ClickHouseHandler(url={NOWHERE!r}, spool_dir=spool, **options)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        return handler

    held = []  # the black holes' sockets, open as long as the script runs

    def blackhole():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(100)  # accepts connections, never answers
        held.append(listener)
        return f"clickhouse://default@127.0.0.1:{{listener.getsockname()[1]}}/g"

    log = logging.getLogger("svc")

    """)
    + inspect.getsource(wait_until)
)


def write_script(tmp_path: Path, body: str, *, prelude: str = PRELUDE) -> Path:
    """``prelude`` then ``body`` (dedented), in a new file under ``tmp_path``."""
    script = tmp_path / f"app_{time.monotonic_ns()}.py"
    script.write_text(prelude + textwrap.dedent(body))
    return script


def run_script(
    tmp_path: Path,
    body: str,
    *,
    prelude: str = PRELUDE,
    args: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``prelude`` + ``body`` as ``PREFIX python ARGS script`` outside the checkout,
    with no CLICKHOUSE_* / GENESIS_* inherited."""
    return subprocess.run(
        [*prefix, sys.executable, *args, str(write_script(tmp_path, body, prelude=prelude))],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=OUTSIDE_CHECKOUT,
        env=clean_env(),
    )


def pool_under_the_hook(spool: Path, method: str) -> str:
    """A script body for ``SPOOLING_PRELUDE``: a ``with Pool(2)`` of ``method`` runs 40
    tasks that log a record each, under ``drain_on_signals``.

    The handler is made at import: a forked worker inherits it and the hook, a fresh
    interpreter (spawn, forkserver) makes its own. ``Pool.__exit__`` ends the workers with
    SIGTERM; the hook must deliver what each logged before it dies by it."""
    return f"""
        import multiprocessing
        make({str(spool)!r}, drain_on_signals=["SIGTERM"])

        def work(i):
            logging.getLogger("svc").info("task %d", i)
            return i

        if __name__ == "__main__":
            with multiprocessing.get_context({method!r}).Pool(2) as pool:
                assert sorted(pool.map(work, range(40))) == list(range(40))
            logging.shutdown()
    """


#: See ``children_script``.
_CHILDREN = """\
import multiprocessing
warnings.simplefilter("ignore")
from genesis_logging import ClickHouseHandler
handler = ClickHouseHandler(url={url!r}, table={table!r}, flush_interval=30, batch_size=100_000)
log = logging.getLogger("app"); log.addHandler(handler); log.setLevel(logging.INFO)

def child(n):
    for i in range(1000):
        log.info("child %d record %d", n, i)
    return n

if __name__ == "__main__":
"""


def children_script(url: str, table: str, main: str) -> str:
    """A script body whose ``child(n)`` logs 1 000 records to ``table`` and returns ``n``;
    ``main`` (``multiprocessing`` imported) starts the children.

    The handler is made at import, so a spawned child makes its own and a forked one
    inherits the parent's queue: each way of ending a child must still deliver."""
    return _CHILDREN.format(url=url, table=table) + textwrap.indent(textwrap.dedent(main), "    ")


def stored(target: Target, database: str, table: str) -> int:
    ((count,),) = target.client().execute(f"SELECT count() FROM {database}.{table}")
    return int(count)


def last_json(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


def logging_to(handler: Any) -> Any:
    import logging

    logger = logging.getLogger(f"reliability.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def spooled(directory: Path) -> int:
    """How many rows wait in the spool ``directory``."""
    return Spool(directory).status().rows


def read_spool(directory: Path) -> tuple[list[dict[str, Any]], int]:
    spool = Spool(directory)
    rows: list[dict[str, Any]] = []
    unreadable = 0
    while (entry := spool.claim()) is not None:
        read, bad = spool.read(entry)
        rows += read
        unreadable += bad
    return rows, unreadable


def spool_rows(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    return [
        {"timestamp": 1_764_078_555_000 + i, "level": "info", "message": f"{prefix}{i}"}
        for i in range(n)
    ]
