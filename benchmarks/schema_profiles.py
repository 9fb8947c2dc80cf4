"""Seed profile vs default profile on today's engine (chDB): rows read and size on disk.

Fills each table with the same N rows over many spec_ids (default 5 000 000 over 20 000
specs), then runs the specification's §4 query — "what failed in spec_X?" — and reports
the rows it read (the engine's own statistics) and the bytes the table takes on disk.

    python benchmarks/schema_profiles.py [--rows 5000000] [--specs 20000]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from chdb import session as chdb_session

from genesis_logging.ddl import TableSpec, render_statements
from genesis_logging.schema import SEED_FIELDS

RESULTS = Path(__file__).parent / "results"

FILL = """
INSERT INTO {target} ({columns})
SELECT
    now64(3) - toIntervalMillisecond(number * 500) AS timestamp,
    if(number % 11 = 0, 'error', 'info') AS level,
    concat('run ', toString(number)) AS message,
    concat('spec_', leftPad(toString(number % {specs}), 5, '0')) AS spec_id,
    toUInt32(number / {specs}) + 1 AS iteration,
    concat('collected ', toString(number % 50), ' items\\n', repeat('.', number % 40)) AS stdout,
    if(number % 11 = 0, concat('TypeError: x is not a function at line ', toString(number % 97)), '') AS stderr,
    if(number % 11 = 0, 1, 0) AS exit_code,
    concat('def solution_', toString(number % 1000), '():\\n    return ', toString(number % 13)) AS code_snapshot,
    toUInt32(number % 5000) AS duration_ms,
    'S030' AS sprint_id,
    concat('T', toString(number % 20)) AS task_id,
    'genesis-pipeline' AS service,
    '1.0.0' AS version
FROM numbers({rows})
"""

QUERY = """
SELECT timestamp, level, stderr, exit_code, duration_ms
FROM {target}
WHERE spec_id = 'spec_00042' AND exit_code != 0
ORDER BY timestamp DESC
LIMIT 10
"""


def measure(chdb: Any, profile: str, rows: int, specs: int) -> dict[str, Any]:
    spec = TableSpec("bench", f"logs_{profile}", profile, ttl_days=3650)
    for statement in render_statements(spec):
        chdb.query(statement)
    started = time.perf_counter()
    columns = ", ".join(field.name for field in SEED_FIELDS)
    chdb.query(FILL.format(target=spec.target, columns=columns, rows=rows, specs=specs))
    chdb.query(f"OPTIMIZE TABLE {spec.target} FINAL")
    fill_seconds = time.perf_counter() - started
    result = json.loads(str(chdb.query(QUERY.format(target=spec.target), "JSON")))
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        chdb.query(QUERY.format(target=spec.target))
        timings.append(time.perf_counter() - started)
    size = json.loads(
        str(
            chdb.query(
                "SELECT sum(bytes_on_disk) AS bytes, sum(rows) AS rows FROM system.parts "
                f"WHERE database = 'bench' AND table = 'logs_{profile}' AND active",
                "JSONEachRow",
            )
        )
    )
    explain = str(chdb.query(f"EXPLAIN indexes = 1 {QUERY.format(target=spec.target)}"))
    return {
        "profile": profile,
        "rows": rows,
        "rows_read": int(result["statistics"]["rows_read"]),
        "bytes_read": int(result["statistics"]["bytes_read"]),
        "result_rows": len(result["data"]),
        "query_seconds_median": sorted(timings)[len(timings) // 2],
        "bytes_on_disk": int(size["bytes"]),
        "fill_seconds": fill_seconds,
        "explain": explain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--specs", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        chdb = chdb_session.Session(directory)
        chdb.query("CREATE DATABASE IF NOT EXISTS bench")
        results = [
            measure(chdb, profile, args.rows, args.specs) for profile in ("seed", "default")
        ]
        chdb.close()
    seed, default = results
    assert seed["result_rows"] == default["result_rows"], "both profiles must answer the same"
    print(
        f"{'profile':<9} {'rows read':>12} {'bytes read':>12} {'on disk':>12} {'query (median)':>15}"
    )
    for r in results:
        print(
            f"{r['profile']:<9} {r['rows_read']:>12,} {r['bytes_read']:>12,} "
            f"{r['bytes_on_disk'] / 1e6:>10.1f}MB {r['query_seconds_median'] * 1000:>12.1f}ms"
        )
    print(
        f"default reads {seed['rows_read'] / max(1, default['rows_read']):.0f}x fewer rows than seed"
    )
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "schema_profiles",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "rows": args.rows,
        "specs": args.specs,
        "results": results,
    }
    (RESULTS / "schema_profiles.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
