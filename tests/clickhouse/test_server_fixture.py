"""The real server the integration tests use is there and speaks the native protocol."""

from __future__ import annotations

import pytest

from tests.support.server import Target


@pytest.mark.integration
def test_server_answers(clickhouse: Target) -> None:
    (version,) = clickhouse.client().execute("SELECT version()")[0]
    assert version
