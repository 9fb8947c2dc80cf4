"""Children of fork and forkserver end with os._exit (no logging.shutdown)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scripts import Table, children_script, run_script, stored


class TestMultiprocessing:
    """Finding 3: children of fork and forkserver end with os._exit (no logging.shutdown).
    A pool ended by ``terminate()`` (``with Pool()``), whose workers get SIGTERM, is in
    ``test_delivery_at_exit.py``."""

    @pytest.mark.parametrize("method", ["fork", "forkserver", "fork-pool"])
    def test_children_deliver_what_they_logged(
        self, logs_table: Table, tmp_path: Path, method: str
    ) -> None:
        target, database, table = logs_table
        main = f"""
            method = {method!r}
            context = multiprocessing.get_context(method.removesuffix("-pool"))
            if method.endswith("-pool"):
                pool = context.Pool(2)
                pool.map(child, range(4))
                pool.close(); pool.join()
            else:
                children = [context.Process(target=child, args=(n,)) for n in range(4)]
                for p in children: p.start()
                for p in children: p.join()
                assert all(p.exitcode == 0 for p in children)
        """
        done = run_script(tmp_path, children_script(target.url(database), table, main))
        assert done.returncode == 0, done.stderr
        assert stored(target, database, table) == 4000
