"""The main job on embedded defaults, step by step (``mamoru demo`` drives it).

Everything runs on this machine and talks only to 127.0.0.1: the embedded PostgreSQL, one
Dramatiq worker consuming from it, the bundled sample pirate site (MangaFX, drawn from the
sample works), and the admin. Notices go to the outbox folder. Each step is idempotent, so the
demo can run again over the same data folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admin.demosite.pirate import SITE_NAME, pirate_site
from admin.demosite.server import Site as DemoSite
from admin.publishers import update_publisher
from admin.samples import SAMPLE_PUBLISHER
from crawler.sites import SiteError, SitePolicy, add_site, get_site, update_site
from store.config import Settings
from store.db import Database
from takedown.recipients import Contact, ensure_recipients

DEMO_SITE = "MangaFX (demo)"
SITE_PORT = 8765
DEMO_RECIPIENT = Contact(
    "MangaFX abuse desk (demo)", "abuse@mangafx.test", None, "site_operator", "configured", None
)
ADMIN_EMAIL = "admin@mamoru.demo"
# The demo publisher opts in to auto-approval of its strongest matches only (full-size copies
# of its pages), so the demo shows notices going out while thumbnails and weaker copies wait
# in the review queue.
AUTO_APPROVE = 0.999

MAMORU = str(Path(sys.executable).with_name("mamoru"))


@dataclass
class Children:
    """Processes the demo started; stopped together, whatever happens."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [MAMORU, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def children() -> Iterator[Children]:
    group = Children()
    try:
        yield group
    finally:
        group.stop()


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["MAMORU_DATA_DIR"] = str(settings.data_dir)
    return env


def prepare_publisher(db: Database) -> None:
    update_publisher(
        db,
        SAMPLE_PUBLISHER,
        agent_organisation="Sample Comics Rights Office (demo)",
        contact_email="rights@sample-comics.invalid",
        contact_address="1-1 Sample-cho, Chiyoda-ku, Tokyo 100-0000, Japan (fictitious)",
        contact_phone="+81-3-0000-0000",
        auto_approve_min_confidence=AUTO_APPROVE,
    )


def serve_demo_site(port: int = 0) -> DemoSite:
    site, _ = pirate_site(port)
    return site.start()


def prepare_site(db: Database, start_url: str) -> int:
    """The demo site's row (created, or pointed at this run's port) and its recipient."""
    changes: dict[str, Any] = {
        "start_urls": [start_url],
        "allowed_domains": ["127.0.0.1"],
        "allow_private_addresses": True,  # it is on loopback: allowed for this site only
        "rendering": "auto",
        "delay_seconds": 0.0,
        "concurrency": 4,
        "max_pages": 200,
        "time_budget_seconds": 600,
    }
    try:
        site = get_site(db, DEMO_SITE)
        site = update_site(db, DEMO_SITE, changes, actor="demo")
    except (LookupError, SiteError):
        site = add_site(db, DEMO_SITE, SitePolicy(**changes), actor="demo")
    with db.connection() as conn:
        ensure_recipients(conn, site.id, [DEMO_RECIPIENT])
    return site.id


def wait_for(
    predicate: Callable[[], bool], *, timeout: float, poll: float = 0.5, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def ensure_admin(db: Database, email: str, password: str) -> None:
    """The demo's admin account, with the demo's password (created, or reset to it)."""
    from admin.users import create_user, find_user, set_password

    if find_user(db, email) is None:
        create_user(db, email=email, role="admin", password=password, actor="demo")
    else:
        set_password(db, email, password, actor="demo")


def admin_password(settings: Settings) -> str:
    """The demo admin's password: generated once, kept (0600) in the data folder."""
    path = settings.data_dir / "demo-admin-password"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n", encoding="utf-8")
    return password


__all__ = [
    "ADMIN_EMAIL",
    "DEMO_SITE",
    "SITE_NAME",
    "SITE_PORT",
    "Children",
    "admin_password",
    "child_env",
    "children",
    "ensure_admin",
    "free_port",
    "prepare_publisher",
    "prepare_site",
    "serve_demo_site",
    "wait_for",
]
