"""The embedded PostgreSQL is shared by processes and stops when the last one exits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg

HOLDER = """
import sys
from store.embedded import start_embedded
url = start_embedded(__import__("pathlib").Path(sys.argv[1]))
print(url, flush=True)
sys.stdin.read()  # hold the server until the test closes our stdin
"""


def hold(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("postgresql://"), url
    return proc, url


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    close_pipes(proc)


def close_pipes(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


def postmaster_pid(data_dir: Path) -> int | None:
    pidfile = data_dir / "pgdata" / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().splitlines()[0])
    return pid if psutil.pid_exists(pid) else None


def wait_stopped(data_dir: Path, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if postmaster_pid(data_dir) is None:
            return True
        time.sleep(0.2)
    return False


def test_two_processes_share_one_server_until_the_last_exits(tmp_path: Path) -> None:
    first, url_a = hold(tmp_path)
    second, url_b = hold(tmp_path)
    assert url_a == url_b
    server = postmaster_pid(tmp_path)
    assert server is not None
    with psycopg.connect(url_a) as conn:
        conn.execute("create table shared_probe (x int)")
        conn.execute("insert into shared_probe values (42)")

    release(first)
    # Still serving the second process.
    assert postmaster_pid(tmp_path) == server
    with psycopg.connect(url_b) as conn:
        assert conn.execute("select x from shared_probe").fetchone() == (42,)

    release(second)
    assert wait_stopped(tmp_path), "server kept running after its last process exited"


def test_data_survives_a_restart(tmp_path: Path) -> None:
    proc, url = hold(tmp_path)
    with psycopg.connect(url) as conn:
        conn.execute("create table kept (x int)")
        conn.execute("insert into kept values (7)")
    release(proc)
    assert wait_stopped(tmp_path)
    proc, url = hold(tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("select x from kept").fetchone() == (7,)
    release(proc)


def test_a_killed_process_does_not_keep_the_server_alive(tmp_path: Path) -> None:
    proc, _ = hold(tmp_path)
    proc.kill()  # SIGKILL: no chance to deregister
    proc.wait(timeout=30)
    close_pipes(proc)
    handles = tmp_path / "pgdata" / ".handle_pids.json"
    assert proc.pid in json.loads(handles.read_text())

    survivor, _ = hold(tmp_path)
    assert proc.pid not in json.loads(handles.read_text())
    release(survivor)
    assert wait_stopped(tmp_path)
