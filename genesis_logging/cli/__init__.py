"""The ``genesis-logging`` command line (also ``python -m genesis_logging``).

One parser; one module per command group (ops, spool, run, read, mcp, analysis, report);
one error type.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from genesis_logging._version import __version__

from ._analysis import add_analysis_commands
from ._common import CommandError
from ._mcp import add_mcp_commands
from ._ops import add_ops_commands
from ._read import add_read_commands
from ._report import add_report_commands
from ._run import add_run_commands
from ._spool import add_spool_commands

__all__ = ["CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genesis-logging",
        description="Structured logs of AI-driven TDD loops: console JSON and ClickHouse.",
    )
    parser.add_argument("--version", action="version", version=f"genesis-logging {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_ops_commands(commands)
    add_spool_commands(commands)
    add_run_commands(commands)
    add_read_commands(commands)
    add_mcp_commands(commands)
    add_analysis_commands(commands)
    add_report_commands(commands)
    return parser


def _quiet_driver() -> None:
    """The driver logs each failed connection with a traceback; our commands say what
    failed in one line, so its records stay out of the terminal."""
    import logging

    driver = logging.getLogger("clickhouse_driver")
    driver.addHandler(logging.NullHandler())
    driver.propagate = False


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _quiet_driver()
    stream = out if out is not None else sys.stdout
    try:
        return int(args.handler(args, stream))
    except CommandError as error:
        sys.stderr.write(f"genesis-logging: {error}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C between commands' own handling: no traceback
        sys.stderr.write("genesis-logging: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as a shell would
        with contextlib.suppress(OSError, ValueError):  # no second error at exit's flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        return 141
