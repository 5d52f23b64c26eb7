"""Who may see and do what: every route of the admin and the API, for every role, including
ids of the other publisher's objects (IDOR), which must look exactly like ids that do not
exist (404)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from tests.web_fixtures import (  # noqa: F401 (fixtures)
    ROLES,
    TITLE_A,
    TITLE_B,
    Queue,
    World,
    app_fixture,
    client_for,
    queue_fixture,
    world_fixture,
)

# Expected status per role, in the order of ROLES: anon, pub_a, pub_b, op_a, admin.
# 302 for anonymous means "redirected to sign in".
OPEN = (302, 200, 200, 200, 200)
A_ONLY = (302, 200, 404, 200, 200)
B_ONLY = (302, 404, 200, 404, 200)
STAFF = (302, 403, 403, 200, 200)
ADMIN = (302, 403, 403, 403, 200)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expect: tuple[int, int, int, int, int]
    data: dict[str, str] | None = None


CASES: tuple[Case, ...] = (
    Case("GET", "/login", (200, 302, 302, 302, 302)),
    Case("POST", "/login", (401, 401, 401, 401, 401), {"email": "x@example.com", "password": "x"}),
    Case("GET", "/", OPEN),
    Case("GET", "/works", OPEN),
    Case("GET", "/works/new", OPEN),
    Case("GET", "/works/{work_a}", A_ONLY),
    Case("GET", "/works/{work_b}", B_ONLY),
    Case("GET", "/works/999999", (302, 404, 404, 404, 404)),
    Case("GET", "/allowlist", OPEN),
    Case("GET", "/media/pages/{page_a}", A_ONLY),
    Case("GET", "/media/pages/{page_b}?size=thumb", B_ONLY),
    Case("GET", "/media/matches/{match_a}/image", A_ONLY),
    Case("GET", "/media/matches/{match_b}/image?size=thumb", B_ONLY),
    Case("GET", "/media/matches/{match_a}/screenshot", A_ONLY),
    Case("GET", "/media/matches/{match_b}/manifest.json", B_ONLY),
    Case("GET", "/media/matches/{match_a}/page.html.txt", A_ONLY),
    Case("GET", "/sites", STAFF),
    Case("GET", "/sites/new", STAFF),
    Case("GET", "/sites/{site}", STAFF),
    Case("GET", "/sites/{site}/edit", STAFF),
    Case("GET", "/review", OPEN),
    Case("GET", "/review/{match_a}", A_ONLY),
    Case("GET", "/review/{match_b}", B_ONLY),
    Case("GET", "/notices", OPEN),
    Case("GET", "/notices/{notice_a}", A_ONLY),
    Case("GET", "/notices/{notice_b}", B_ONLY),
    Case("GET", "/notices/{notice_a}/body.html", A_ONLY),
    Case("GET", "/notices/{notice_b}/body.html", B_ONLY),
    Case("GET", "/lookup", OPEN),
    Case("GET", "/users", ADMIN),
    Case("GET", "/audit", ADMIN),
    Case("GET", "/healthz", (200, 200, 200, 200, 200)),
    # Writes (each role runs against a world of its own, so one role's writes never change
    # what another role's requests find).
    Case("POST", "/review/{match_b}/decide", (302, 403, 403, 404, 303), {"action": "reject"}),
    Case("POST", "/review/{match_a}/decide", (302, 403, 403, 303, 303), {"action": "reject"}),
    Case("POST", "/review/{match_a}/decide", (302, 403, 403, 400, 400), {"action": "delete"}),
    Case("POST", "/review/bulk", STAFF, {"action": "approve"}),
    Case(
        "POST",
        "/allowlist",
        (302, 404, 303, 404, 303),
        {"work_id": "{work_b}", "domain": "licensed-b.example"},
    ),
    Case(
        "POST",
        "/allowlist",
        (302, 303, 303, 303, 303),
        # Refused for A and the operator with a message (see the test below), added for B.
        {"publisher_id": "{pub_b}", "domain": "x.example"},
    ),
    Case("POST", "/allowlist/{entry_b}/delete", (302, 404, 303, 404, 303)),
    Case("POST", "/lookup", (302, 400, 400, 400, 400), {}),
    Case("POST", "/sites/new", (302, 403, 403, 400, 400), {"name": ""}),
    Case("POST", "/sites/{site}/edit", (302, 403, 403, 400, 400), {"start_urls": ""}),
    Case("POST", "/sites/{site}/crawl", (302, 403, 403, 303, 303)),
    Case("POST", "/sites/999999/crawl", (302, 403, 403, 404, 404)),
    Case("POST", "/notices/{notice_b}/actions", (302, 403, 403, 404, 303), {"action": "close"}),
    Case("POST", "/notices/{notice_a}/actions", (302, 403, 403, 303, 303), {"action": "close"}),
    Case("POST", "/notices/{notice_a}/actions", (302, 403, 403, 400, 400), {"action": "drop"}),
    Case("POST", "/users", (*ADMIN[:4], 303), {"email": "bad"}),
    Case("POST", "/users/{user_pub_b}/active", (*ADMIN[:4], 303), {"active": "1"}),
    Case("POST", "/users/{user_op_a}/assign", (*ADMIN[:4], 303), {"publisher": "Beta Books"}),
    Case("POST", "/tokens/{token_pub_b}/revoke", (*ADMIN[:4], 303)),
    Case("POST", "/works/new", (302, 400, 400, 400, 400), {"publisher_id": "{pub_b}"}),
    Case("POST", "/users/{user_op_a}/unassign/{pub_a}", (*ADMIN[:4], 303)),
    Case("POST", "/logout", (302, 302, 302, 302, 302)),
)


def _fill(template: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)


def _ids(world: World) -> dict[str, int]:
    ids = world.ids()
    ids.update({f"pub_{k}": v for k, v in world.publishers.items()})
    return ids


def test_every_route_is_in_the_matrix(app: Flask) -> None:
    def shape(path: str) -> str:
        return re.sub(r"<[^>]+>|\{\w+\}|\d+", "<id>", path.split("?")[0])

    covered = {(case.method, shape(case.path)) for case in CASES}
    covered |= {(method, shape(path)) for method, path, *_ in API_CASES}
    missing = [
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        if (method, shape(rule.rule)) not in covered
    ]
    assert missing == []


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(app: Flask, world: World, queue: Queue, role: str) -> None:
    ids = _ids(world)
    client = client_for(app, role)
    column = ROLES.index(role)
    failures = []
    for case in CASES:
        expected = case.expect[column]
        path = _fill(case.path, ids)
        data: dict[str, Any] | None = (
            {k: _fill(v, ids) for k, v in case.data.items()} if case.data is not None else None
        )
        response = client.open(path, method=case.method, data=data)
        if response.status_code != expected:
            failures.append(f"{case.method} {path}: {response.status_code}, expected {expected}")
        if role == "anon" and expected == 302:
            assert response.headers["Location"].startswith("/login"), path
    assert failures == []


@pytest.mark.parametrize(
    ("role", "visible", "hidden"),
    [("pub_a", TITLE_A, TITLE_B), ("pub_b", TITLE_B, TITLE_A), ("op_a", TITLE_A, TITLE_B)],
)
def test_lists_show_only_the_users_publishers(
    app: Flask, world: World, role: str, visible: str, hidden: str
) -> None:
    client = client_for(app, role)
    for path in ("/", "/works", "/review?state=all", "/notices", "/allowlist"):
        html = client.get(path).get_data(as_text=True)
        assert hidden not in html, path
    assert visible in client.get("/works").get_data(as_text=True)
    assert visible in client.get("/review").get_data(as_text=True)


def test_cross_publisher_writes_change_nothing(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    client.post("/allowlist", data={"publisher_id": str(world.publishers["b"]), "domain": "x.io"})
    client.post(f"/allowlist/{world.entries['b']}/delete")
    operator = client_for(app, "op_a")
    operator.post(f"/review/{world.matches['b']}/decide", data={"action": "approve"})
    operator.post(
        "/review/bulk",
        data={"action": "approve", "confirmed": "1", "ids": str(world.matches["b"])},
    )
    with world.db.connection() as conn:
        domains = [r[0] for r in conn.execute("select domain from allowlist_entries")]
        state = conn.execute(
            "select review_state from matches where id = %s", (world.matches["b"],)
        ).fetchone()
    assert "x.io" not in domains
    assert "partner-b.example" in domains
    assert state == ("pending",)


ApiCase = tuple[str, str, tuple[int, int, int, int, int], dict[str, str] | None]

API_CASES: tuple[ApiCase, ...] = (
    # anon means no token at all; a body given is sent as JSON, else an empty form.
    ("GET", "/api/v1/openapi.json", (200, 200, 200, 200, 200), None),
    ("GET", "/api/v1/works", (401, 200, 200, 200, 200), None),
    ("GET", "/api/v1/works/{work_a}", (401, 200, 404, 200, 200), None),
    ("GET", "/api/v1/works/{work_b}", (401, 404, 200, 404, 200), None),
    ("GET", "/api/v1/matches", (401, 200, 200, 200, 200), None),
    ("GET", "/api/v1/matches/{match_a}", (401, 200, 404, 200, 200), None),
    ("GET", "/api/v1/matches/{match_b}", (401, 404, 200, 404, 200), None),
    (
        "POST",
        "/api/v1/matches/{match_b}/decision",
        (401, 403, 403, 404, 200),
        {"decision": "reject"},
    ),
    (
        "POST",
        "/api/v1/matches/{match_a}/decision",
        (401, 403, 403, 200, 200),
        {"decision": "reject"},
    ),
    (
        "POST",
        "/api/v1/matches/{match_a}/decision",
        (401, 403, 403, 409, 409),
        {"decision": "approve"},
    ),
    ("POST", "/api/v1/matches/999999/decision", (401, 403, 403, 404, 404), {"decision": "reject"}),
    ("POST", "/api/v1/matches/{match_a}/decision", (401, 403, 403, 400, 400), None),
    ("GET", "/api/v1/notices", (401, 200, 200, 200, 200), None),
    ("GET", "/api/v1/notices/{notice_a}", (401, 200, 404, 200, 200), None),
    ("GET", "/api/v1/notices/{notice_b}", (401, 404, 200, 404, 200), None),
    ("POST", "/api/v1/notices/{notice_b}/actions", (401, 403, 403, 404, 200), {"action": "close"}),
    ("POST", "/api/v1/notices/{notice_a}/actions", (401, 403, 403, 200, 200), {"action": "close"}),
    ("POST", "/api/v1/notices/{notice_a}/actions", (401, 403, 403, 409, 409), {"action": "close"}),
    ("POST", "/api/v1/notices/999999/actions", (401, 403, 403, 404, 404), {"action": "close"}),
    ("POST", "/api/v1/notices/{notice_a}/actions", (401, 403, 403, 400, 400), None),
    ("POST", "/api/v1/lookup", (401, 400, 400, 400, 400), None),
    ("POST", "/api/v1/works", (401, 400, 400, 400, 400), None),
    ("GET", "/api/v1/nothing-here", (404, 404, 404, 404, 404), None),
)


@pytest.mark.parametrize("role", ROLES)
def test_api_access_matrix(app: Flask, world: World, role: str) -> None:
    ids = _ids(world)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {world.tokens[role]}"} if role != "anon" else {}
    column = ROLES.index(role)
    failures = []
    for method, template, expect, body in API_CASES:
        path = _fill(template, ids)
        if body is None:
            response = client.open(path, method=method, headers=headers, data={})
        else:
            response = client.open(path, method=method, headers=headers, json=body)
        if response.status_code != expect[column]:
            failures.append(f"{method} {path}: {response.status_code}, expected {expect[column]}")
        if response.status_code >= 400:
            assert response.is_json and "error" in response.get_json(), path
    assert failures == []


def test_api_lists_are_scoped(app: Flask, world: World) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {world.tokens['pub_a']}"}
    works = client.get("/api/v1/works", headers=headers).get_json()["works"]
    assert [w["title"] for w in works] == [TITLE_A]
    matches = client.get("/api/v1/matches", headers=headers).get_json()
    assert {m["publisher"]["id"] for m in matches["matches"]} == {world.publishers["a"]}
    notices = client.get("/api/v1/notices", headers=headers).get_json()["notices"]
    assert [n["id"] for n in notices] == [world.notices["a"]]


def test_api_ignores_the_session_cookie(app: Flask, world: World) -> None:
    """A signed-in browser cannot be ridden into the API (which has no CSRF tokens)."""
    client = client_for(app, "admin")
    response = client.get("/api/v1/works")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_and_unknown_tokens_are_refused(app: Flask, world: World) -> None:
    admin = client_for(app, "admin")
    assert admin.post(f"/tokens/{world.token_ids['pub_a']}/revoke").status_code == 303
    client = app.test_client()
    for token in (world.tokens["pub_a"], "mmr_not-a-token", "garbage"):
        response = client.get("/api/v1/works", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
    ok = client.get("/api/v1/works", headers={"Authorization": f"Bearer {world.tokens['pub_b']}"})
    assert ok.status_code == 200
