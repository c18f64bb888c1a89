"""A grid on an *existing* Ray cluster (``ray start --head``, then ``--address``).

test_reproduce_ray.py covers the local instance qdistill starts itself; here a head
node is started the way a cluster admin would, and qdistill only connects to it: the
runs execute in the cluster's worker processes, and the table equals the local pool's.
The head runs with ``RAY_AUTH_MODE=disabled`` so the test does not write a token into
~/.ray; the token path (Ray's default since 2.5x) was checked by hand, see
docs/scale-out.md. This file sorts before test_reproduce_ray.py, so the head is gone
before that module starts its own instance.
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_reproduce_ray import _same, _table
from test_reproduce_report import _tiny_grid

from qdistill.experiments import grids, reproduce


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(monkeypatch):
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip("the ray command is not installed next to this python")
    port = _free_port()
    # Short path: Ray's unix sockets live under it (108-byte limit).
    temp = tempfile.mkdtemp(prefix="qd-rayh-")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    log = open(Path(temp) / "head.log", "w+")  # noqa: SIM115 (closed at teardown)
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
         "--include-dashboard=false", "--temp-dir", temp],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 90
    while "Ray runtime started" not in Path(log.name).read_text():
        if head.poll() is not None or time.time() > deadline:
            pytest.fail(f"ray start --head failed:\n{Path(log.name).read_text()[-3000:]}")
        time.sleep(0.5)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    yield f"127.0.0.1:{port}"
    import ray

    ray.shutdown()
    # --block: SIGTERM stops what it started, but a graceful stop takes ~30 s; the head's
    # processes share its process group, so after 5 s the group is killed instead.
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(30)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.skipif(sys.platform != "linux", reason="process groups, unix sockets")
def test_existing_cluster_gives_the_local_table(tmp_path, monkeypatch, ray_head, caplog):
    monkeypatch.setitem(grids.GRIDS, "tiny", _tiny_grid)
    monkeypatch.setitem(grids.PAPER_TABLES, "tiny", lambda: {"digits 0-3": {"none": 50.0}})
    opt = grids.GridOptions()
    caplog.set_level(logging.INFO, logger="qdistill")
    on_cluster = reproduce.run_grid("tiny", opt, tmp_path / "cluster", executor="ray",
                                    address=ray_head)
    import ray

    assert not ray.is_initialized()  # connected for the grid only, then disconnected
    local = reproduce.run_grid("tiny", opt, tmp_path / "local", workers=2)
    assert any(f"4 to run on the Ray cluster at {ray_head}" in m for m in caplog.messages)
    assert {r["run_id"]: _same(r) for r in on_cluster} == {r["run_id"]: _same(r)
                                                           for r in local}
    assert _table(tmp_path / "cluster") == _table(tmp_path / "local")
