"""Records first logged at interpreter exit (no thread can start on 3.12+)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from genesis_logging.spool import Spool
from tests.support.scripts import (
    run_script,
)


class TestExitIsBounded:
    """Finding 7: records first logged at interpreter exit (no thread can start on 3.12+)
    are delivered inline, within ``shutdown_timeout``, or spooled."""

    @pytest.mark.parametrize("server", ["refusing", "black-holed"])
    def test_exit_within_the_timeout(self, tmp_path: Path, server: str) -> None:
        import socket

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if server == "black-holed":
            listener.listen(16)  # the kernel accepts connections; nobody ever answers
        else:
            listener.close()  # nobody listens: refused at once
        spool_dir = tmp_path / "spool"
        body = f"""
            import atexit
            warnings.simplefilter("ignore")
            from genesis_logging import ClickHouseHandler
            handler = ClickHouseHandler(url="clickhouse://default@127.0.0.1:{port}/genesis",
                                        spool_dir={str(spool_dir)!r}, shutdown_timeout=1,
                                        connect_timeout=10, send_receive_timeout=30)
            log = logging.getLogger("exit"); log.addHandler(handler); log.setLevel(logging.INFO)
            atexit.register(lambda: [log.info("at exit %d", i) for i in range(3)])
        """
        try:
            started = time.monotonic()
            done = run_script(tmp_path, body)
            took = time.monotonic() - started
        finally:
            listener.close()
        assert done.returncode == 0, done.stderr
        assert took < 1 + 4  # shutdown_timeout, plus the interpreter's own start and exit
        assert Spool(spool_dir).status().rows == 3
