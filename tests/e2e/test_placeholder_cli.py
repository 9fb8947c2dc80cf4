"""End-to-end scenarios run once, in tox's ``e2e`` environment (real projects, real servers)."""

from __future__ import annotations

from tests.fakes import run_cli


def test_the_installed_command_answers() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("genesis-logging ")
