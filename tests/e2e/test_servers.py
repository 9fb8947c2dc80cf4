"""Every stop of every common server delivers (issue 21): the real servers, the real
ClickHouse, the recipes of ``docs/services.md`` as written.

Each scenario starts a server from this environment's packages (``python -m uvicorn``,
``-m gunicorn``, ``-m celery``) on a loopback port, configured by the recipe's code block
taken from the docs page (only the spool directory and ``flush_interval`` are changed:
60 s, so every record is still queued when the signal comes). Each request (or task)
logs one record with a unique id; after the signal the rows are counted by id in the
real server: 0 lost, 0 duplicated. One scenario runs without ``drain_on_signals`` and
shows the loss the option cures. Each test prints its row of the table in
``docs/reliability.md`` (``pytest -rP`` shows them).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.support.fakes import clean_env
from tests.support.server import LocalServer, Target, free_port

ROOT: Final = Path(__file__).resolve().parents[2]
SERVICES_DOC: Final = ROOT / "docs" / "services.md"
RECORDS: Final = 200  # records queued per scenario (requests or tasks)
DOC_SPOOL: Final = "/var/spool/genesis-logging/api"
START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 60.0

ASGI_APP: Final = """
import logging

log = logging.getLogger("app")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    log.info("request %s", scope["query_string"].decode().removeprefix("id="))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""

WSGI_APP: Final = """
import logging

log = logging.getLogger("app")


def application(environ, start_response):
    log.info("request %s", environ["QUERY_STRING"].removeprefix("id="))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def recipe(title: str) -> str:
    """The code block of ``docs/services.md`` whose first line is ``# <title>``."""
    text = SERVICES_DOC.read_text(encoding="utf-8")
    for match in re.finditer(r"^```[a-z]+\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        body = match.group(1)
        if body.startswith(f"# {title}\n"):
            return body
    raise AssertionError(f"no block '# {title}' in {SERVICES_DOC}")


@dataclass
class Outcome:
    """One cell row of the table: records queued at the signal, and what became of them."""

    server: str
    signal: str
    queued: int
    delivered: int
    duplicated: int
    stop_seconds: float
    exit: str

    @property
    def lost(self) -> int:
        return self.queued - self.delivered

    def row(self) -> str:
        return (
            f"| {self.server} | {self.signal} | {self.queued} | {self.delivered} | "
            f"{self.lost} | {self.duplicated} | {self.stop_seconds:.1f} s | {self.exit} |"
        )


@pytest.fixture(scope="module")
def server(local_server: LocalServer) -> Target:
    """One ClickHouse server for every scenario."""
    if not local_server.running:
        local_server.start()
    return Target("local", local_server.host, local_server.port, local=local_server)


_databases = iter(range(1, 1000))


class Service:
    """One server process (its process group), its database and its request ids."""

    def __init__(self, target: Target, tmp_path: Path, name: str) -> None:
        self.target = target
        self.dir = tmp_path
        self.database = f"srv_{os.getpid()}_{next(_databases)}"
        target.create_logs_table(self.database, "logs")
        self.port = free_port()
        self.spool = tmp_path / "spool"
        self.env = {
            **clean_env(),
            "CLICKHOUSE_URL": target.url(self.database),
            "PYTHONPATH": str(tmp_path),
            "PYTHONUNBUFFERED": "1",
        }
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.sent = 0

    def start(self, *argv: str) -> None:
        self.log = (self.dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=self.dir,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    def get(self, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.output()
            try:
                self.get("/?id=probe")
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"{self.name} did not start:\n{self.output()}")

    def requests(self, count: int) -> None:
        for _ in range(count):
            assert self.get(f"/?id={self.name}-{self.sent}") == 200
            self.sent += 1

    def stop(self, signum: int, *, group: bool = False) -> tuple[float, str]:
        """Send ``signum``; seconds until the server's process ended, and how it ended."""
        assert self.process is not None
        started = time.monotonic()
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"{self.name} did not stop:\n{self.output()}") from None
        elapsed = time.monotonic() - started
        self.reap()
        ended = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        return elapsed, ended

    def reap(self) -> None:
        """Nothing of the server's group may outlive it (workers, pool processes)."""
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.killpg(self.process.pid, signal.SIGKILL)
        raise AssertionError(f"{self.name}: processes outlived the server:\n{self.output()}")

    def rows(self, prefix: str = "request ") -> tuple[int, int]:
        """(rows, distinct messages) of this scenario's records in ClickHouse."""
        pattern = f"{prefix}{self.name}-%"
        ((rows, distinct),) = self.target.client(self.database).execute(
            "SELECT count(), uniqExact(message) FROM logs WHERE message LIKE %(p)s",
            {"p": pattern},
        )
        return int(rows), int(distinct)

    def wait_rows(self, expected: int, timeout: float, prefix: str = "request ") -> float:
        """Seconds until ``expected`` rows are stored (or the timeout passed)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout and self.rows(prefix)[0] < expected:
            time.sleep(0.1)
        return time.monotonic() - started

    def outcome(
        self, server: str, signame: str, seconds: float, ended: str, prefix: str = "request "
    ) -> Outcome:
        rows, distinct = self.rows(prefix)
        result = Outcome(server, signame, self.sent, distinct, rows - distinct, seconds, ended)
        print(result.row())
        return result


def uvicorn_yaml(tmp_path: Path, *, drain: bool = True, hold: bool = True) -> Path:
    text = recipe("logging.yaml (uvicorn)").replace(DOC_SPOOL, str(tmp_path / "spool"))
    if hold:  # every record still queued at the signal
        text = text.replace(
            "    shutdown_timeout: 5\n", "    shutdown_timeout: 5\n    flush_interval: 60\n"
        )
    if not drain:
        text = text.replace("    drain_on_signals: [SIGTERM, SIGINT]\n", "")
    path = tmp_path / "logging.yaml"
    path.write_text(text)
    return path


def assert_whole(result: Outcome) -> None:
    assert (result.lost, result.duplicated) == (0, 0), result


# -- uvicorn --------------------------------------------------------------------------------


UVICORN_CASES: Final = [
    ("single", signal.SIGTERM),
    ("single", signal.SIGINT),
    ("workers 2", signal.SIGTERM),
    ("workers 2", signal.SIGINT),
]


@pytest.mark.parametrize(
    ("mode", "signum"), UVICORN_CASES, ids=[f"{m}-{s.name}" for m, s in UVICORN_CASES]
)
def test_uvicorn_stop_delivers(
    server: Target, tmp_path: Path, mode: str, signum: signal.Signals
) -> None:
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "uv")
    workers = ["--workers", "2"] if mode == "workers 2" else []
    service.start(
        "uvicorn", "app:app", "--port", str(service.port), "--log-config",
        str(uvicorn_yaml(tmp_path)), *workers,
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    ctrl_c = signum == signal.SIGINT  # Ctrl-C: the terminal signals the whole group
    seconds, ended = service.stop(signum, group=ctrl_c)
    name = "SIGINT (Ctrl-C)" if ctrl_c else signum.name
    result = service.outcome(f"uvicorn ({mode})", name, seconds, ended)
    assert_whole(result)
    # The process still ends as uvicorn means it to: a single process dies by SIGTERM
    # (uvicorn raises it again), and turns Ctrl-C's KeyboardInterrupt into exit 0; a
    # supervisor exits 0.
    expected = "signal SIGTERM" if (mode, signum) == ("single", signal.SIGTERM) else "exit 0"
    assert ended == expected, service.output()
    # Records logged after the app's shutdown reach the table too.
    finished = server.client(service.database).execute(
        "SELECT count() FROM logs WHERE message LIKE 'Finished server process%'"
    )[0][0]
    assert finished == (2 if mode == "workers 2" else 1), service.output()
    assert (
        server.client(service.database).execute(
            "SELECT count() FROM logs WHERE logger = 'uvicorn.access'"
        )[0][0]
        == RECORDS + 1
    )  # the probe request too


def test_uvicorn_stop_under_load_delivers(server: Target, tmp_path: Path) -> None:
    """The issue's live case: default ``flush_interval``, requests still coming when
    SIGTERM arrives. Every request answered 200 was logged, and is stored once."""
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "uv")
    service.start(
        "uvicorn", "app:app", "--port", str(service.port), "--log-config",
        str(uvicorn_yaml(tmp_path, hold=False)), "--workers", "2",
    )  # fmt: skip
    service.wait_ready()
    answered: list[str] = []
    stop = threading.Event()

    def load() -> None:
        number = 0
        while not stop.is_set():
            ident = f"{service.name}-{number}"
            number += 1
            try:
                if service.get(f"/?id={ident}") == 200:
                    answered.append(ident)
            except OSError:
                time.sleep(0.01)  # a worker is stopping: keep trying until the end

    driver = threading.Thread(target=load)
    driver.start()
    time.sleep(1.5)
    try:
        seconds, ended = service.stop(signal.SIGTERM)
    finally:
        stop.set()
        driver.join()
    stored = [
        m.removeprefix("request ")
        for (m,) in server.client(service.database).execute(
            "SELECT message FROM logs WHERE message LIKE %(p)s", {"p": f"request {service.name}-%"}
        )
    ]
    service.sent = len(answered)
    result = Outcome(
        "uvicorn (workers 2), under load, flush_interval 1 s",
        "SIGTERM",
        len(answered),
        len(set(answered) & set(stored)),
        len(stored) - len(set(stored)),
        seconds,
        ended,
    )
    print(result.row())
    assert answered
    assert_whole(result)


def test_uvicorn_without_the_option_loses_the_queue(server: Target, tmp_path: Path) -> None:
    """The loss the option cures (the issue's figure): every queued record, each stop."""
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "uv")
    service.start(
        "uvicorn", "app:app", "--port", str(service.port), "--log-config",
        str(uvicorn_yaml(tmp_path, drain=False)), "--workers", "2",
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    seconds, ended = service.stop(signal.SIGTERM)
    result = service.outcome("uvicorn (workers 2), no option", "SIGTERM", seconds, ended)
    assert (result.delivered, result.lost) == (0, RECORDS)


def test_uvicorn_workers_sighup_restart_delivers(server: Target, tmp_path: Path) -> None:
    """``SIGHUP`` to a ``--workers`` supervisor restarts the workers (with ``SIGTERM``)."""
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "uv")
    service.start(
        "uvicorn", "app:app", "--port", str(service.port), "--log-config",
        str(uvicorn_yaml(tmp_path)), "--workers", "2",
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    assert service.process is not None
    service.process.send_signal(signal.SIGHUP)
    seconds = service.wait_rows(RECORDS, 30)
    result = service.outcome("uvicorn (workers 2)", "SIGHUP (restart)", seconds, "running")
    assert_whole(result)
    service.wait_ready()
    service.stop(signal.SIGTERM)


def test_uvicorn_reload_delivers(server: Target, tmp_path: Path) -> None:
    """``--reload``: each change stops the worker with ``SIGTERM`` and starts another."""
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "uv")
    service.start(
        "uvicorn", "app:app", "--port", str(service.port), "--log-config",
        str(uvicorn_yaml(tmp_path)), "--reload", "--reload-dir", str(tmp_path),
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    (tmp_path / "app.py").write_text(ASGI_APP + "\n# changed\n")
    seconds = service.wait_rows(RECORDS, 30)
    result = service.outcome("uvicorn --reload", "file change", seconds, "running")
    assert_whole(result)
    service.wait_ready()
    service.stop(signal.SIGTERM)


def test_fastapi_lifespan_delivers_the_app_records(server: Target, tmp_path: Path) -> None:
    """The lifespan recipe alone (no ``drain_on_signals``) delivers what the app logged."""
    (tmp_path / "main.py").write_text(recipe("main.py (FastAPI)"))
    service = Service(server, tmp_path, "fa")
    service.start(
        "uvicorn", "main:app", "--port", str(service.port), "--log-config",
        str(uvicorn_yaml(tmp_path, drain=False)), "--workers", "2",
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    seconds, ended = service.stop(signal.SIGTERM)
    result = service.outcome(
        "uvicorn (workers 2) + FastAPI lifespan, no option", "SIGTERM", seconds, ended
    )
    assert_whole(result)
    # What uvicorn logs after the lifespan is still lost without drain_on_signals.
    finished = server.client(service.database).execute(
        "SELECT count() FROM logs WHERE message LIKE 'Finished server process%'"
    )[0][0]
    assert finished == 0


# -- gunicorn -------------------------------------------------------------------------------


def gunicorn_conf(tmp_path: Path, *, hooks: bool = True, quit_fix: bool = True) -> Path:
    text = recipe("gunicorn.conf.py").replace(DOC_SPOOL, str(tmp_path / "spool"))
    if not hooks:  # the recipe without its post_worker_init
        text = text[: text.index("def post_worker_init")]
    elif not quit_fix:  # without what makes UvicornWorker's SIGQUIT stop uvicorn
        text = text[: text.index("    if hasattr(worker")]
    text += '\nlogconfig_dict["handlers"]["clickhouse"]["flush_interval"] = 60\n'
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(text)
    return path


GUNICORN_CASES: Final = [
    (worker, signum)
    for worker in ("sync", "uvicorn_worker.UvicornWorker")
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
]


@pytest.mark.parametrize(
    ("worker", "signum"),
    GUNICORN_CASES,
    ids=[f"{w.split('.')[0]}-{s.name}" for w, s in GUNICORN_CASES],
)
def test_gunicorn_stop_delivers(
    server: Target, tmp_path: Path, worker: str, signum: signal.Signals
) -> None:
    asgi = worker != "sync"
    (tmp_path / "app.py").write_text(ASGI_APP if asgi else WSGI_APP)
    service = Service(server, tmp_path, "gu")
    service.start(
        "gunicorn", "-c", str(gunicorn_conf(tmp_path)), "--bind", f"127.0.0.1:{service.port}",
        "-k", worker, "app:app" if asgi else "app:application",
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    label = f"gunicorn ({'UvicornWorker' if asgi else 'sync'})"
    if signum == signal.SIGHUP:  # reload: new workers, the old ones stopped gracefully
        assert service.process is not None
        service.process.send_signal(signum)
        seconds = service.wait_rows(RECORDS, 30)
        result = service.outcome(label, "SIGHUP (reload)", seconds, "running")
        service.wait_ready()
        service.stop(signal.SIGTERM)
    elif signum == signal.SIGINT:  # Ctrl-C: the terminal signals the whole group
        seconds, ended = service.stop(signum, group=True)
        result = service.outcome(label, "SIGINT (Ctrl-C)", seconds, ended)
    else:  # SIGQUIT: gunicorn's quick stop
        seconds, ended = service.stop(signum)
        result = service.outcome(label, signum.name, seconds, ended)
    assert_whole(result)


# -- Celery ---------------------------------------------------------------------------------


def start_celery(server: Target, tmp_path: Path, *, receiver: bool = True) -> Service:
    """The Celery recipe with :data:`RECORDS` tasks queued and run, none stored yet."""
    broker = tmp_path / "broker"
    broker.mkdir()
    tasks = recipe("tasks.py")
    if not receiver:  # the recipe without its worker_process_shutdown receiver
        receiver_block = tasks[tasks.index("@worker_process_shutdown") : tasks.index("@app.task")]
        tasks = tasks.replace(receiver_block, "")
    tasks += (
        "\napp.conf.broker_transport_options = {"
        f"'data_folder_in': {str(broker)!r}, 'data_folder_out': {str(broker)!r}}}\n"
    )
    (tmp_path / "tasks.py").write_text(tasks)
    uvicorn_yaml(tmp_path)  # logging.yaml: "the uvicorn one"
    service = Service(server, tmp_path, "ce")
    service.env["CELERY_BROKER_URL"] = "filesystem://"
    subprocess.run(  # the tasks are queued first, by a client process
        [
            sys.executable,
            "-c",
            f"from tasks import work\nfor i in range({RECORDS}): work.delay('ce-%d' % i)",
        ],
        cwd=tmp_path,
        env=service.env,
        check=True,
        timeout=120,
    )
    service.sent = RECORDS
    service.start(
        "celery", "-A", "tasks", "worker", "--pool", "prefork", "--concurrency", "2",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
    )  # fmt: skip
    # Every task ran (its line is on the console) before the signal.
    deadline = time.monotonic() + START_TIMEOUT
    while service.output().count('"job ce-') < RECORDS:
        assert time.monotonic() < deadline, service.output()[-3000:]
        assert service.process is not None
        assert service.process.poll() is None, service.output()
        time.sleep(0.2)
    return service


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_celery_prefork_stop_delivers(
    server: Target, tmp_path: Path, signum: signal.Signals
) -> None:
    service = start_celery(server, tmp_path)
    ctrl_c = signum == signal.SIGINT  # Ctrl-C: the terminal signals the whole group
    seconds, ended = service.stop(signum, group=ctrl_c)
    name = "SIGINT (Ctrl-C)" if ctrl_c else signum.name
    result = service.outcome("celery (prefork, 2)", name, seconds, ended, prefix="job ")
    assert_whole(result)


# -- the loss each part of the recipes cures -----------------------------------------------


def test_celery_without_the_receiver_loses_the_pool_records(
    server: Target, tmp_path: Path
) -> None:
    """Pool processes end with ``os._exit()``: without ``worker_process_shutdown``, lost."""
    service = start_celery(server, tmp_path, receiver=False)
    seconds, ended = service.stop(signal.SIGTERM)
    result = service.outcome(
        "celery (prefork, 2), no receiver", "SIGTERM", seconds, ended, prefix="job "
    )
    assert (result.delivered, result.lost) == (0, RECORDS)


def test_gunicorn_uvicorn_worker_without_post_worker_init_loses(
    server: Target, tmp_path: Path
) -> None:
    """gunicorn resets the signals in its workers: without ``install_drain_hooks()`` the
    UvicornWorker dies by the SIGTERM uvicorn raises again, its queue with it."""
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "gu")
    service.start(
        "gunicorn", "-c", str(gunicorn_conf(tmp_path, hooks=False)),
        "--bind", f"127.0.0.1:{service.port}", "-k", "uvicorn_worker.UvicornWorker", "app:app",
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    seconds, ended = service.stop(signal.SIGTERM)
    result = service.outcome(
        "gunicorn (UvicornWorker), no post_worker_init", "SIGTERM", seconds, ended
    )
    assert (result.delivered, result.lost) == (0, RECORDS)


def test_gunicorn_uvicorn_worker_sigquit_without_the_fix_is_killed(
    server: Target, tmp_path: Path
) -> None:
    """UvicornWorker's own SIGQUIT handler does not stop uvicorn: the master kills the
    worker when ``graceful_timeout`` (3 s here) is over, queue and all."""
    (tmp_path / "app.py").write_text(ASGI_APP)
    service = Service(server, tmp_path, "gu")
    service.start(
        "gunicorn", "-c", str(gunicorn_conf(tmp_path, quit_fix=False)),
        "--bind", f"127.0.0.1:{service.port}", "-k", "uvicorn_worker.UvicornWorker",
        "--graceful-timeout", "3", "app:app",
    )  # fmt: skip
    service.wait_ready()
    service.requests(RECORDS)
    seconds, ended = service.stop(signal.SIGQUIT)
    result = service.outcome(
        "gunicorn (UvicornWorker), no SIGQUIT fix, graceful_timeout 3", "SIGQUIT", seconds, ended
    )
    assert (result.delivered, result.lost) == (0, RECORDS)
