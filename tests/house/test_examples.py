"""Every file in examples/ is run, and its output checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import LocalServer, Target

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLICKHOUSE_", "GENESIS_", "LOGGING_"))
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
    )


def test_worker_on_the_console() -> None:
    result = run("worker.py", {})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["message"] for line in lines] == [
        "Task recebida",
        "Task concluída",
        "Task recebida",
        "Falha ao processar",
    ]
    assert lines[1]["attributes"]["result"] == "2"
    assert "duration_ms" in lines[1]
    assert lines[3]["level"] == "error"
    assert lines[3]["exception"].endswith("ZeroDivisionError: integer division or modulo by zero")
    assert {line["service"] for line in lines} == {"example-worker"}


@pytest.mark.integration
def test_worker_in_production(running_local_server: LocalServer) -> None:
    target = Target("local", running_local_server.host, running_local_server.port)
    target.create_logs_table("genesis", "logs")
    result = run(
        "worker.py",
        {
            "LOGGING_CONFIG": str(EXAMPLES / "logging.prod.yaml"),
            "CLICKHOUSE_URL": target.url("genesis"),
        },
    )
    assert result.returncode == 0, result.stderr
    console = [json.loads(line)["message"] for line in result.stdout.splitlines()]
    stored = [
        m
        for (m,) in target.client().execute(
            "SELECT message FROM genesis.logs ORDER BY timestamp, message"
        )
    ]
    assert sorted(stored) == sorted(console)  # the same records on both tracks
    assert len(stored) == 4


def test_tdd_loop(tmp_path: Path) -> None:
    result = run("tdd_loop.py", {"GENESIS_LOG_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "iteration 1: failed, the logs say: AssertionError: add(2, 3) returned -1",
        "iteration 2: passed",
    ]
