"""The specification's worker template (§2.2), in Python.

    python examples/worker.py                                   # console JSON
    CLICKHOUSE_URL=clickhouse://... LOGGING_CONFIG=examples/logging.prod.yaml python examples/worker.py

The worker's code is the same in both cases: only the logging configuration changes.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import time
from pathlib import Path

import yaml

config = Path(os.environ.get("LOGGING_CONFIG", Path(__file__).with_name("logging.yaml")))
logging.config.dictConfig(yaml.safe_load(config.read_text()))
logger = logging.getLogger("worker")


def handle(task_id: str, topic: str, payload: dict[str, int]) -> int:
    logger.info("Task recebida", extra={"task_id": task_id, "topic": topic})
    started = time.monotonic()
    try:
        result = payload["a"] // payload["b"]
    except Exception as err:
        logger.error(
            "Falha ao processar", exc_info=True, extra={"task_id": task_id, "error": str(err)}
        )
        raise
    duration_ms = round((time.monotonic() - started) * 1000)
    logger.info(
        "Task concluída", extra={"task_id": task_id, "result": result, "duration_ms": duration_ms}
    )
    return result


if __name__ == "__main__":
    handle("T01", "orders", {"a": 6, "b": 3})
    with contextlib.suppress(ZeroDivisionError):
        handle("T02", "orders", {"a": 1, "b": 0})
