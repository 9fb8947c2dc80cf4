"""deploy/: what can be checked without Docker."""

from __future__ import annotations

import pathlib

import yaml

from genesis_logging.ddl import TableSpec, render_statements
from tests.support.fakes import run_cli

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"


def test_init_sql_is_what_the_cli_renders_today() -> None:
    rendered = run_cli("schema").stdout
    assert (DEPLOY / "init.sql").read_text() == rendered
    assert rendered == "".join(f"{s};\n\n" for s in render_statements(TableSpec()))


def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    clickhouse, mcp = compose["services"]["clickhouse"], compose["services"]["mcp"]
    assert clickhouse["image"].startswith("clickhouse/clickhouse-server:")
    assert "9000:9000" in clickhouse["ports"]
    assert "8123:8123" in clickhouse["ports"]
    mounts = {
        m.split(":")[1]: m.split(":")[0] for m in clickhouse["volumes"] if m.startswith("./")
    }
    assert mounts["/docker-entrypoint-initdb.d/01-genesis-schema.sql"] == "./init.sql"
    assert mounts["/docker-entrypoint-initdb.d/02-genesis-users.sh"] == "./users.sh"
    # The MCP server reads as the read-only user over HTTP, with the variables docs/mcp.md names.
    env = mcp["environment"]
    assert env["CLICKHOUSE_USER"] == "genesis_readonly"
    assert env["CLICKHOUSE_PORT"] == "8123"
    assert {"CLICKHOUSE_HOST", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_SECURE"} <= set(env)
    assert "mcp-clickhouse" in mcp["command"]
    # No secret is written in the file: every password is a variable.
    for service in (clickhouse, mcp):
        for key, value in service["environment"].items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), key


def test_users_script_keeps_secrets_in_the_environment() -> None:
    script = (DEPLOY / "users.sh").read_text()
    assert "${GENESIS_READONLY_PASSWORD}" in script
    assert "readonly = 1" in script
    assert "GRANT SELECT ON genesis.* TO genesis_readonly" in script
