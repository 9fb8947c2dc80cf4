"""The package is laid out as the design card gives it, and tests run against the wheel."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from importlib import metadata

import genesis_logging
from tests.support.fakes import OUTSIDE_CHECKOUT, run_cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _installed_editable() -> bool:
    direct_url = metadata.distribution("genesis-logging").read_text("direct_url.json")
    return bool(direct_url) and json.loads(direct_url).get("dir_info", {}).get("editable", False)


class TestLayout:
    """Top level: pyproject.toml, genesis_logging, tests, docs, tox.ini; no src/."""

    def test_top_level_entries(self) -> None:
        for entry in ("pyproject.toml", "genesis_logging", "tests", "docs", "tox.ini"):
            assert (ROOT / entry).exists(), entry
        assert not (ROOT / "src").exists()

    def test_tests_import_the_installed_package(self) -> None:
        """Under tox the wheel is tested, never the checkout (an editable dev install aside)."""
        location = pathlib.Path(genesis_logging.__file__).resolve()
        in_checkout = location.parent == ROOT / "genesis_logging"  # (.tox/ sits in the checkout)
        if os.environ.get("TOX_ENV_NAME"):
            assert not in_checkout, location
        else:
            assert not in_checkout or _installed_editable(), location

    def test_subprocesses_import_what_the_tests_import(self) -> None:
        done = subprocess.run(
            [sys.executable, "-c", "import genesis_logging; print(genesis_logging.__file__)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=OUTSIDE_CHECKOUT,
        )
        assert (
            pathlib.Path(done.stdout.strip()).resolve()
            == pathlib.Path(genesis_logging.__file__).resolve()
        )

    def test_cli_reports_its_version(self) -> None:
        done = run_cli("--version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"genesis-logging {genesis_logging.__version__}"
