"""``genesis-logging report SPEC | --all [--html FILE] [--format json]``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from genesis_logging.report import (
    build_report,
    load_summaries,
    render_html,
    render_summaries_html,
    render_summaries_terminal,
    render_terminal,
)

from ._common import (
    CommandError,
    add_format_option,
    describe,
    open_log_store,
    require_spec,
    store_options,
)
from ._output import json_line

__all__ = ["add_report_commands"]


def _colour(out: TextIO) -> bool:
    """Colour on a terminal only, and never with ``NO_COLOR`` (https://no-color.org)."""
    return out.isatty() and not os.environ.get("NO_COLOR")


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.spec) == bool(args.all):
        raise CommandError("give a spec, or --all for every spec")
    store = open_log_store(args)
    try:
        if args.all:
            summaries = load_summaries(store)
            text = render_summaries_terminal(summaries, colour=_colour(out))
            page = render_summaries_html(summaries) if args.html else ""
            data: Any = [{**s.__dict__, "pass_rate": s.pass_rate} for s in summaries]
        else:
            require_spec(store, args.spec)  # a typo is an error, not an empty report
            # The terminal shows no code: it reads none.
            wants_code = bool(args.html) or args.format == "json"
            report = build_report(store, args.spec, with_changes=wants_code)
            text = render_terminal(report, colour=_colour(out))
            page = render_html(report) if args.html else ""
            data = report.as_json()
    except CommandError:
        raise
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    finally:
        store.close()
    if args.html:
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as error:
            raise CommandError(f"{args.html}: {error.strerror}") from None
    out.write(json_line(data) if args.format == "json" else text)
    return 0


def add_report_commands(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        parents=[store_options(writes=False)],
        help="a picture of the loop: per iteration red/green, duration, failing tests",
    )
    add_format_option(report, "text", "json")
    report.add_argument("spec", nargs="?", help="spec_id (or --all)")
    report.add_argument(
        "--all", action="store_true", help="every spec: iterations to green, pass rate, time"
    )
    report.add_argument(
        "--html", metavar="FILE", help="also write one self-contained page to FILE"
    )
    report.set_defaults(handler=cmd_report)
