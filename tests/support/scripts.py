"""Scripts run as users run them (a subprocess outside the checkout), and reading
back what they stored or spooled."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from genesis_logging.spool import Spool

from .fakes import OUTSIDE_CHECKOUT, clean_env
from .server import Target

Table = tuple[Target, str, str]


#: A Python prelude for scripts: warnings off unless the test turns them on.
PRELUDE = "import json, logging, os, sys, time, warnings\n"


def run_script(
    tmp_path: Path, body: str, *, args: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"app_{time.monotonic_ns()}.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, *args, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=OUTSIDE_CHECKOUT,
        env=clean_env(),
    )


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
