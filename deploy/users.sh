#!/bin/bash
# The writer (for the services' handlers) and the read-only user (for the assistant, §3.6).
# Passwords come from the container's environment; nothing secret lives in this file.
set -euo pipefail
clickhouse client --user admin --password "$CLICKHOUSE_PASSWORD" --multiquery <<SQL
CREATE USER IF NOT EXISTS genesis_writer IDENTIFIED WITH sha256_password BY '${GENESIS_WRITER_PASSWORD}';
GRANT INSERT, SELECT ON genesis.* TO genesis_writer;
CREATE USER IF NOT EXISTS genesis_readonly IDENTIFIED WITH sha256_password BY '${GENESIS_READONLY_PASSWORD}' SETTINGS readonly = 1;
GRANT SELECT ON genesis.* TO genesis_readonly;
SQL
