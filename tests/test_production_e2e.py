"""The production configuration, end to end, on this machine's services.

External PostgreSQL (a scratch database on the server of ``MAMORU_E2E_POSTGRES``), RabbitMQ as
the broker, two separate worker processes, the scheduler, the admin under gunicorn, and an SMTP
server on loopback: a publisher's works are registered, an operator adds the sample pirate
site, a worker crawls it, the operator approves the matches through the JSON API, notices go
out by SMTP, the site takes one copy down, and a recheck sees it gone while the rest stay up.

``.ci/run`` runs it (``MAMORU_E2E=1``) after the default suite; ``make test`` skips it, because
it needs the machine's PostgreSQL and RabbitMQ services rather than embedded ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from admin.demosite.pirate import pirate_site
from admin.samples import SAMPLE_WORKS, slug, write_sample_work
from tests.workers import (
    MAMORU,
    ControlledSink,
    Worker,
    broker_unreachable,
    exclusive_rabbitmq,
    free_port,
    scratch_database,
    wait_until,
    worker_env,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MAMORU_E2E") != "1",
        reason="the production end-to-end test runs from .ci/run (MAMORU_E2E=1)",
    ),
]

POSTGRES = os.environ.get("MAMORU_E2E_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PUBLISHER = "E2E Comics"
OPERATOR = "operator@e2e.test"
REMOVED = "/art/last-lantern.jpg"


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [MAMORU, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"mamoru {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def __call__(self, method: str, path: str, payload: Any = None) -> Any:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(payload).encode() if payload is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())


def _service(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def services(tmp_path: Path) -> Iterator[dict[str, Any]]:
    reason = broker_unreachable("rabbitmq")
    if reason:
        pytest.fail(f"the production configuration needs RabbitMQ: {reason}")
    with (
        scratch_database(POSTGRES, tmp_path / "pg") as db_url,
        exclusive_rabbitmq() as broker_url,
        ControlledSink() as sink,
    ):
        site, _ = pirate_site(0)
        site.start()
        env = worker_env(db_url, tmp_path / "data", smtp_url=sink.url, broker_url=broker_url)
        env["MAMORU_WEB_SECRET_KEY"] = "e2e-secret-key-not-for-production"
        yield {"db_url": db_url, "sink": sink, "site": site, "env": env, "dir": tmp_path}
        site.stop()


def test_production_configuration_end_to_end(services: dict[str, Any]) -> None:
    env, site, sink, tmp = services["env"], services["site"], services["sink"], services["dir"]
    mamoru = Cli(env)

    # A publisher registers its works; an operator adds the site and its abuse contact.
    mamoru(
        "publishers", "add", PUBLISHER, "--agent-org", "E2E Rights Office",
        "--address", "1-1 Kanda, Chiyoda-ku, Tokyo", "--phone", "+81-3-0000-0000",
        "--email", "rights@e2e.test",
    )  # fmt: skip
    for work in SAMPLE_WORKS:
        paths = write_sample_work(work, tmp / "samples" / slug(work.title))
        mamoru("works", "add", "-p", PUBLISHER, "-t", work.title, *map(str, paths))
    mamoru(
        "sites", "add", "mangafx", "--start-url", site.url("/"), "--allow-private",
        "--delay", "0", "--concurrency", "4",
    )  # fmt: skip
    mamoru("contacts", "add", "mangafx", "--name", "MangaFX abuse", "--email", "abuse@mangafx.test")
    mamoru("users", "create", "--role", "operator", "--email", OPERATOR, "--password-stdin",
           stdin="correct horse battery staple\n")  # fmt: skip
    mamoru("users", "assign", OPERATOR, PUBLISHER)
    token = mamoru("users", "token", OPERATOR, "--name", "e2e").strip().splitlines()[-1]

    port = free_port()
    logs = tmp / "logs"
    logs.mkdir()
    processes = [
        _service(
            [str(Path(sys.executable).with_name("gunicorn")), "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--timeout", "120", "admin.web.wsgi:app"],
            env, logs / "web.log",
        ),
        _service([MAMORU, "scheduler"], env, logs / "scheduler.log"),
    ]  # fmt: skip
    workers = [Worker(env, log_path=logs / f"worker{n}.log") for n in (1, 2)]
    try:
        for worker in workers:
            worker.start()
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base + "/healthz"), timeout=60, message="gunicorn")
        api = Api(base + "/api/v1", token)

        # A worker crawls the site.
        mamoru("crawl", "mangafx", "--enqueue")
        with psycopg.connect(services["db_url"]) as conn:

            def crawl_state() -> str | None:
                row = conn.execute("select state from crawls order by id desc limit 1").fetchone()
                return None if row is None else str(row[0])

            wait_until(lambda: crawl_state() in ("finished", "failed"), timeout=600,
                       message=lambda: (logs / "worker1.log").read_text()[-3000:])  # fmt: skip
            assert crawl_state() == "finished"

        # The operator reviews every match through the API.
        pending = api("GET", "/matches?state=pending&limit=500")
        matches = pending["matches"] if isinstance(pending, dict) else pending
        assert len(matches) == 22  # 14 copies on pages, 2 covers seen twice, 6 in the CBZ
        for match in matches:
            decided = api("POST", f"/matches/{match['id']}/decision", {"decision": "approve"})
            assert decided["review_state"] == "approved"

        # Notices are composed and sent by the workers, to the SMTP server.
        mamoru("notices", "compose", "--enqueue")
        [message] = sink.wait_for(1, timeout=120)
        notices = api("GET", "/notices")
        notices = notices["notices"] if isinstance(notices, dict) else notices
        [notice] = notices
        assert notice["state"] == "sent"
        assert message.rcpt_tos == ("abuse@mangafx.test",)

        # The site takes one copy down; a recheck sees it gone and the others still up.
        site.add(REMOVED, b"gone", "text/plain", status=404)
        mamoru("notices", "recheck", str(notice["id"]))
        with psycopg.connect(services["db_url"]) as conn:
            items = dict(
                conn.execute(
                    "select infringing_url, state from notice_items where notice_id = %s",
                    (notice["id"],),
                ).fetchall()
            )
            state = conn.execute(
                "select state from notices where id = %s", (notice["id"],)
            ).fetchone()
            counts = conn.execute(
                "select (select count(*) from matches where review_state = 'approved'),"
                " (select count(*) from notices), (select count(*) from rechecks)"
            ).fetchone()
        assert items[site.url(REMOVED)] == "removed"
        assert all(s != "removed" for url, s in items.items() if url != site.url(REMOVED))
        assert state == ("sent",)  # not every copy is gone
        assert counts is not None and counts[0] == 22 and counts[1] == 1 and counts[2] >= len(items)
        assert len(sink.messages) == 1  # one notice, sent once
        for process in processes:
            assert process.poll() is None, "a service died"
        assert "scheduler active" in (logs / "scheduler.log").read_text()
    finally:
        for worker in workers:
            worker.stop()
        for process in processes:
            _stop(process)
