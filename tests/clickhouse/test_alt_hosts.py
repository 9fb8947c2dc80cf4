"""Several hosts (issue 23, point 1): ``alt_hosts`` validated, passed to the driver, used.

The unit half checks the option the way ``host`` is checked (never echoing what was
given: a URL pasted there would carry its password). The integration half puts hosts that
fail in the three ways a host fails in front of the real server — one that refuses, one
that never completes the TCP handshake (a listening socket whose backlog is full), one
that accepts and never answers — and records arrive through the next host, each bad host
costing one ``connect_timeout`` or one ``send_receive_timeout``, not the driver's 300 s.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from genesis_logging import ClickHouseHandler
from genesis_logging.errors import ConfigurationError
from genesis_logging.settings import ConnectionSettings
from tests.support.fakes import run_cli
from tests.support.server import LocalServer, Target, free_port

SECRET = "pa55-in-a-pasted-url"


def resolve(**options: object) -> ConnectionSettings:
    return ConnectionSettings.resolve(environ={}, **options)


class TestTheOption:
    def test_url_parameter_and_keyword(self) -> None:
        from_url = resolve(url="clickhouse://u@h1:9001/db?alt_hosts=h2:9002,%20h3:9003")
        assert from_url.alt_hosts == "h2:9002,h3:9003"
        assert from_url.hosts == ["h1:9001", "h2:9002", "h3:9003"]
        keyword = resolve(url="clickhouse://u@h1:9001/db?alt_hosts=h2:9002", alt_hosts="h4:9004")
        assert keyword.alt_hosts == "h4:9004"  # the keyword wins over the URL, like host

    def test_a_missing_port_is_the_schemes_default(self) -> None:
        assert resolve(alt_hosts="h2,[::1]").alt_hosts == "h2:9000,[::1]:9000"
        assert resolve(alt_hosts="h2", secure=True).alt_hosts == "h2:9440"

    def test_passed_to_the_driver_with_round_robin(self) -> None:
        settings = resolve(url="clickhouse://h1/db?alt_hosts=h2:9000&round_robin=true")
        kwargs = settings.client_kwargs()
        assert kwargs["alt_hosts"] == "h2:9000"
        assert kwargs["round_robin"] is True
        assert "alt_hosts" not in resolve(host="h1").client_kwargs()
        assert "round_robin" not in resolve(url="clickhouse://h1/?round_robin=1").client_kwargs()
        handler = ClickHouseHandler(host="h1", alt_hosts="h2:9000", round_robin=True)
        try:
            assert handler.settings.client_kwargs()["round_robin"] is True
            assert handler.stats()["host"] is None  # nothing connected yet
        finally:
            handler.close()

    def test_redacted_url_shows_every_host_and_no_password(self) -> None:
        settings = resolve(url=f"clickhouse://u:{SECRET}@h1:9001/db?alt_hosts=h2:9002,h3:9003")
        assert settings.redacted_url() == "clickhouse://u@h1:9001/db?alt_hosts=h2:9002,h3:9003"
        again = resolve(url=settings.redacted_url() + "&round_robin=true")
        assert again.hosts == settings.hosts
        assert again.round_robin
        assert again.redacted_url().endswith("?alt_hosts=h2:9002,h3:9003&round_robin=true")

    @pytest.mark.parametrize(
        ("value", "complaint"),
        [
            ("h2:0", "item 1 must end with a port between 1 and 65535"),
            ("h2:65536", "item 1 must end with a port between 1 and 65535"),
            ("h2:", "item 1 must end with a port between 1 and 65535"),
            ("h2:9000,h3:http", "item 2 must end with a port between 1 and 65535"),
            ("h2:9000,", "item 2 must be host:port"),
            ("::1:9000", "item 1 must be host:port (an IPv6 address in brackets)"),
            ("bad host:9000", "item 1 must be host:port"),
            (f"clickhouse://u:{SECRET}@h2:9000", "item 1 must be host:port"),
            (f"u:{SECRET}@h2:9000", "item 1 must be host:port"),
        ],
    )
    def test_refused_without_echoing_the_value(self, value: str, complaint: str) -> None:
        with pytest.raises(ConfigurationError, match="alt_hosts") as raised:
            resolve(alt_hosts=value)
        assert complaint in str(raised.value)
        assert SECRET not in str(raised.value)
        with pytest.raises(ConfigurationError, match="alt_hosts"):
            ClickHouseHandler(alt_hosts=value)  # the handler refuses it up front too

    def test_round_robin_must_be_a_boolean(self) -> None:
        with pytest.raises(ConfigurationError, match="round_robin must be a boolean"):
            resolve(url="clickhouse://h1/db?alt_hosts=h2&round_robin=sometimes")


# -- hosts that fail, in front of the real server ----------------------------------------


@contextmanager
def refusing_host() -> Iterator[str]:
    """A port nobody listens on: the connection is refused at once."""
    yield f"127.0.0.1:{free_port()}"


@contextmanager
def blackhole_host() -> Iterator[str]:
    """A listening socket whose backlog is full: a new connection's SYN is dropped, so
    ``connect`` waits out ``connect_timeout`` (as for an unreachable address)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for sock in (*fillers, server):
            sock.close()


@contextmanager
def silent_host() -> Iterator[str]:
    """Accepts every connection and never says a word (a hung server, a wrong service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for sock in (*held, server):
            sock.close()


FAILING_HOSTS = {"refusing": refusing_host, "blackhole": blackhole_host, "silent": silent_host}


@pytest.mark.integration
class TestFailover:
    @pytest.mark.parametrize("kind", list(FAILING_HOSTS))
    def test_records_arrive_through_the_next_host(
        self, kind: str, logs_table: tuple[Target, str, str]
    ) -> None:
        target, database, table = logs_table
        good = f"{target.host}:{target.port}"
        with FAILING_HOSTS[kind]() as bad:
            url = target.url(database).replace(good, bad) + f"?alt_hosts={good}"
            handler = ClickHouseHandler(
                url=url,
                table=table,
                connect_timeout=1,
                send_receive_timeout=2,
                flush_interval=0.05,
                shutdown_timeout=30,
            )
            logger = logging.getLogger(f"test.alt_hosts.{kind}")
            logger.addHandler(handler)
            logger.propagate = False
            began = time.monotonic()
            try:
                for number in range(20):
                    logger.warning("through the next host %d", number)
                assert handler.drain(30)
                took = time.monotonic() - began
                stats = handler.stats()
            finally:
                handler.close()
                logger.removeHandler(handler)
        assert (stats["sent"], stats["spooled"]) == (20, 0), stats
        # The driver moved on by itself within the first attempt: no attempt was cut off by
        # the insert's watchdog (connect_timeout + 2 x send_receive_timeout) and retried.
        assert stats["retries"] == 0, stats
        assert stats["host"] == good  # stats() says which host is in use
        (count,) = target.client().execute(
            f"SELECT count() FROM {database}.{table} WHERE message LIKE 'through the next host%'"
        )[0]
        assert count == 20
        # One connect_timeout (1 s) or one send_receive_timeout (2 s) per bad host, then
        # the next host: far below the driver's default send_receive_timeout of 300 s.
        assert took < 60, took

    def test_the_cli_and_doctor_read_through_the_list(
        self, running_local_server: LocalServer
    ) -> None:
        target = Target("local", running_local_server.host, running_local_server.port)
        database = f"alt_hosts_{os.getpid()}"
        target.create_logs_table(database, "logs")
        good = f"{target.host}:{target.port}"
        with refusing_host() as bad:
            url = target.url(database).replace(good, bad) + f"?alt_hosts={good}"
            env = {"CLICKHOUSE_URL": url}
            answered = run_cli("query", "SELECT count() + 42 AS answer FROM logs", env=env)
            doctor = run_cli("doctor", "--database", database, env=env)
        target.client().execute(f"DROP DATABASE {database}")
        assert answered.returncode == 0, answered.stderr
        assert "42" in answered.stdout
        assert f"OK   host in use: {good} (of {bad}, {good}, in this order)" in doctor.stdout
        assert "Traceback" not in doctor.stderr
        assert "is Distributed" not in doctor.stdout  # a plain table: nothing to say
