"""``mamoru users`` and ``mamoru web``: accounts, assignments and tokens from the command line,
the development server, and the gunicorn entry point."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result

from admin.cli import cli
from admin.web import resources
from tests.web_fixtures import make_app

ADMIN = "root@example.com"


def mamoru(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def test_users_create_list_assign(mamoru_env: Path, db_url: str) -> None:
    created = mamoru(
        "users",
        "create",
        "--role",
        "admin",
        "--email",
        ADMIN,
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert created.exit_code == 0, created.output
    assert f"created admin 1: {ADMIN}" in created.output
    # Prompted twice when not piped: the confirmation must match.
    prompted = mamoru(
        "users",
        "create",
        "--role",
        "operator",
        "--email",
        "op@example.com",
        stdin="operator password\noperator password\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert mamoru("publishers", "add", "Gamma House").exit_code == 0
    publisher = mamoru(
        "users",
        "create",
        "--role",
        "publisher",
        "--email",
        "p@example.com",
        "--publisher",
        "Gamma House",
        "--password-stdin",
        stdin="publisher password\n",
    )
    assert publisher.exit_code == 0 and "of Gamma House" in publisher.output
    for args, stdin, message in (
        (("--role", "admin", "--email", ADMIN.upper()), "another password", "already exists"),
        (("--role", "publisher", "--email", "x@example.com"), "long password", "needs --publisher"),
        (("--role", "admin", "--email", "y@example.com"), "short", "at least 10 characters"),
        (("--role", "admin", "--email", "not-an-email"), "long password", "not an email"),
        (
            ("--role", "operator", "--email", "z@example.com", "--publisher", "Gamma House"),
            "long password",
            "only publisher users",
        ),
    ):
        result = mamoru("users", "create", *args, "--password-stdin", stdin=stdin + "\n")
        assert result.exit_code == 1, args
        assert message in result.output
    listed = mamoru("users", "list")
    assert "admin" in listed.output and "(Gamma House)" in listed.output
    assigned = mamoru("users", "assign", "op@example.com", "Gamma House")
    assert "op@example.com assigned to Gamma House" in assigned.output
    again = mamoru("users", "assign", "op@example.com", "Gamma House")
    assert "already assigned" in again.output
    wrong = mamoru("users", "assign", "p@example.com", "Gamma House")
    assert wrong.exit_code == 1 and "not an operator" in wrong.output
    with psycopg.connect(db_url) as conn:
        hashes = [r[0] for r in conn.execute("select password_hash from users")]
        actions = [r[0] for r in conn.execute("select action from audit_log order by id")]
    assert all(h.startswith(("scrypt:", "pbkdf2:")) for h in hashes)
    assert actions == ["user.create"] * 3 + ["user.assign"]


def test_tokens_from_the_command_line(mamoru_env: Path, db_url: str) -> None:
    mamoru(
        "users",
        "create",
        "--role",
        "admin",
        "--email",
        ADMIN,
        "--password-stdin",
        stdin="a long enough password\n",
    )
    made = mamoru("users", "token", ADMIN, "--name", "catalogue sync")
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert token.startswith("mmr_") and len(token) > 40
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("select token_sha256 from api_tokens").fetchone()
    assert stored is not None and token.encode() not in bytes(stored[0])
    app = make_app(db_url)
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/works", headers=auth).status_code == 200
        listed = mamoru("users", "tokens")
        assert "catalogue sync" in listed.output and "active" in listed.output
        assert "revoked" in mamoru("users", "revoke-token", "1").output
        assert "already revoked" in mamoru("users", "revoke-token", "1").output
        assert mamoru("users", "revoke-token", "99").exit_code == 1
        assert client.get("/api/v1/works", headers=auth).status_code == 401
    finally:
        resources.close(app)


def test_a_user_created_on_the_command_line_signs_in(mamoru_env: Path, db_url: str) -> None:
    mamoru(
        "users",
        "create",
        "--role",
        "admin",
        "--email",
        ADMIN,
        "--password-stdin",
        stdin="a long enough password\n",
    )
    app = make_app(db_url)
    try:
        client = app.test_client()
        wrong = client.post("/login", data={"email": ADMIN, "password": "not it at all"})
        assert wrong.status_code == 401
        ok = client.post(
            "/login", data={"email": ADMIN.upper(), "password": "a long enough password"}
        )
        assert ok.status_code == 302
        assert client.get("/users").status_code == 200
    finally:
        resources.close(app)


def test_users_page_creates_and_deactivates(mamoru_env: Path, db_url: str) -> None:
    mamoru(
        "users",
        "create",
        "--role",
        "admin",
        "--email",
        ADMIN,
        "--password-stdin",
        stdin="a long enough password\n",
    )
    mamoru("publishers", "add", "Gamma House")
    app = make_app(db_url)
    try:
        client = app.test_client()
        client.post("/login", data={"email": ADMIN, "password": "a long enough password"})
        made = client.post(
            "/users",
            data={
                "email": "new@example.com",
                "role": "publisher",
                "publisher": "Gamma House",
                "password": "new user password",
            },
        )
        assert made.status_code == 303
        page = client.get("/users").get_data(as_text=True)
        assert "Created publisher new@example.com." in page
        refused = client.post(
            "/users", data={"email": "x@example.com", "role": "admin", "password": "short"}
        )
        assert refused.status_code == 303
        assert "at least 10 characters" in client.get("/users").get_data(as_text=True)
        with psycopg.connect(db_url) as conn:
            new_id = conn.execute("select id from users where email = 'new@example.com'").fetchone()
        assert new_id is not None
        client.post(f"/users/{new_id[0]}/active", data={"active": "0"})
        own = client.post("/users/1/active", data={"active": "0"})
        assert own.status_code == 303
        assert "cannot deactivate yourself" in client.get("/users").get_data(as_text=True)
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("select email, is_active from users order by id").fetchall()
            audit = conn.execute(
                "select action, actor from audit_log where action like 'user.%' order by id"
            ).fetchall()
        assert rows == [(ADMIN, True), ("new@example.com", False)]
        assert audit[-2:] == [("user.create", ADMIN), ("user.deactivate", ADMIN)]
    finally:
        resources.close(app)


def test_wsgi_entry_point(mamoru_env: Path) -> None:
    import admin.web.wsgi as wsgi

    module = importlib.reload(wsgi)
    try:
        response = module.app.test_client().get("/login")
        assert response.status_code == 200
        assert module.app.config["SESSION_COOKIE_SECURE"] is True
    finally:
        resources.close(module.app)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mamoru_web_serves_the_admin(mamoru_env: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from admin.cli import main; main()", "web", "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as page:
                    assert page.status == 200
                    assert "Content-Security-Policy" in page.headers
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
    assert b"Mamoru admin on http://127.0.0.1" in errors
