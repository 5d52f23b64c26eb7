"""The JSON API: token authentication, registering works, listing matches and notices,
rights lookup (by upload and by URL, behind the SSRF guard), JSON errors, and the OpenAPI
document checked against the app's routes."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask

from admin.web import resources
from admin.web.api.openapi import document
from crawler.netguard import AddressPolicy
from tests.conftest import table_counts
from tests.test_web_works import png
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    TITLE_A,
    Queue,
    World,
    app_fixture,
    client_for,
    copy_bytes,
    make_app,
    queue_fixture,
    world_fixture,
)


def bearer(world: World, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[role]}"}


def test_openapi_document_matches_the_routes(app: Flask) -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    documented = {
        (path, method.upper()) for path, operations in doc["paths"].items() for method in operations
    }
    routed = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") and rule.rule != "/healthz":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routed.add((path, method))
    assert routed == documented
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for operations in doc["paths"].values():
        for operation in operations.values():
            assert operation["responses"], operation["operationId"]
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', str(doc).replace("'", '"'))
    for section, name in refs:
        assert name in doc["components"][section], name
    served = app.test_client().get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.get_json() == doc


def test_register_a_work_through_the_api(app: Flask, world: World) -> None:
    client = app.test_client()
    data = {
        "title": "API Volume",
        "isbn": "978-4-00-000077-8",
        "identifiers": '{"asin": "B0API"}',
        "pages": [
            (io.BytesIO(png(1, "API Volume")), "1.png"),
            (io.BytesIO(png(2, "API Volume")), "2.png"),
        ],
    }
    created = client.post("/api/v1/works", data=data, headers=bearer(world, "pub_a"))
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["created"] is True
    assert body["work"]["publisher"] == "Alpha Comics"
    assert body["work"]["identifiers"] == {"asin": "B0API"}
    assert [p["page_number"] for p in body["pages_added"]] == [1, 2]
    assert body["fingerprints_added"] > 0
    again = client.post(
        "/api/v1/works",
        data={"title": "API Volume", "pages": [(io.BytesIO(png(1, "API Volume")), "1.png")]},
        headers=bearer(world, "pub_a"),
    )
    assert again.status_code == 200
    assert again.get_json()["pages_skipped"] == [
        {"source": "1.png", "reason": "already registered as page 1"}
    ]
    work = client.get(f"/api/v1/works/{body['work']['id']}", headers=bearer(world, "pub_a"))
    assert [p["source_name"] for p in work.get_json()["work"]["pages_list"]] == ["1.png", "2.png"]


def test_api_registration_errors_are_json_and_change_nothing(app: Flask, world: World) -> None:
    client = app.test_client()
    before = table_counts(world.db_url)
    cases = [
        (
            "pub_a",
            {"title": "X", "pages": [(io.BytesIO(b"text"), "a.txt")]},
            400,
            "a.txt: not an image, CBZ/ZIP archive or PDF",
        ),
        (
            "pub_a",
            {"title": "X", "publisher": "Beta Books", "pages": [(io.BytesIO(png(1)), "1.png")]},
            404,
            "publisher",
        ),
        (
            "admin",
            {"title": "X", "pages": [(io.BytesIO(png(1)), "1.png")]},
            400,
            "publisher is required",
        ),
        ("pub_a", {"title": "X", "kind": "novel"}, 400, "kind must be one of"),
        ("pub_a", {"title": "X", "identifiers": "[1]"}, 400, "identifiers must be a JSON object"),
        ("pub_a", {"title": "", "pages": [(io.BytesIO(png(1)), "1.png")]}, 400, "title"),
    ]
    for role, data, status, message in cases:
        response = client.post("/api/v1/works", data=data, headers=bearer(world, role))
        assert response.status_code == status, (data, response.get_data(as_text=True))
        assert message in response.get_json()["error"]
    assert table_counts(world.db_url) == before


def test_api_lists_matches_and_notices_with_filters(app: Flask, world: World) -> None:
    client = app.test_client()
    headers = bearer(world, "admin")
    everything = client.get("/api/v1/matches", headers=headers).get_json()
    assert everything["total"] == 4
    pending = client.get("/api/v1/matches?state=pending", headers=headers).get_json()
    assert {m["id"] for m in pending["matches"]} == {world.matches["a"], world.matches["b"]}
    one = client.get(
        f"/api/v1/matches?work_id={world.works['b']}&state=pending&limit=1", headers=headers
    ).get_json()
    assert [m["id"] for m in one["matches"]] == [world.matches["b"]]
    assert one["matches"][0]["page_url"] == "https://pirate.example/read/b/1"
    for bad in ("limit=0", "limit=9999", "offset=-1", "state=nope", "limit=x"):
        response = client.get(f"/api/v1/matches?{bad}", headers=headers)
        assert response.status_code == 400 and "error" in response.get_json(), bad
    notices = client.get("/api/v1/notices?state=removed", headers=headers).get_json()["notices"]
    assert {n["id"] for n in notices} == set(world.notices.values())
    assert client.get("/api/v1/notices?state=sent", headers=headers).get_json()["notices"] == []
    detail = client.get(f"/api/v1/notices/{world.notices['a']}", headers=headers).get_json()
    notice = detail["notice"]
    assert notice["items_list"][0]["infringing_url"] == "https://pirate.example/read/a/old"
    assert [e["to_state"] for e in notice["timeline"]] == ["drafted", "sent", "removed"]


def test_api_errors_are_json(app: Flask, world: World) -> None:
    client = app.test_client()
    wrong_method = client.delete("/api/v1/works", headers=bearer(world, "pub_a"))
    assert wrong_method.status_code == 405
    assert wrong_method.get_json() == {"error": wrong_method.get_json()["error"]}
    missing = client.get("/api/v1/works/99999", headers=bearer(world, "pub_a"))
    assert missing.status_code == 404 and missing.get_json() == {"error": "no work with id 99999"}


def test_lookup_by_upload_is_scoped(app: Flask, world: World) -> None:
    client = app.test_client()
    copy = copy_bytes(TITLE_A, 1, size=(600, 900))

    def hits(role: str) -> list[dict[str, object]]:
        response = client.post(
            "/api/v1/lookup",
            data={"image": (io.BytesIO(copy), "found.jpg")},
            headers=bearer(world, role),
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        result: list[dict[str, object]] = response.get_json()["matches"]
        return result

    found = hits("pub_a")
    assert [(h["work_title"], h["page_number"]) for h in found] == [(TITLE_A, 1)]
    assert found[0]["publisher"] == "Alpha Comics"
    assert hits("pub_b") == []  # B's user learns nothing about A's works
    assert [h["work_id"] for h in hits("admin")] == [world.works["a"]]
    broken = client.post(
        "/api/v1/lookup",
        data={"image": (io.BytesIO(b"not an image"), "x.jpg")},
        headers=bearer(world, "pub_a"),
    )
    assert broken.status_code == 422 and "x.jpg" in broken.get_json()["error"]


def test_lookup_page_by_upload(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    response = client.post(
        "/lookup",
        data={"image": (io.BytesIO(copy_bytes(TITLE_A, 1)), "found.jpg")},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 match for" in html and TITLE_A in html
    assert f'src="/media/pages/{world.pages["a"]}?size=thumb"' in html


class _ImageHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    _ImageHandler.body = copy_bytes(TITLE_A, 1, size=(640, 960))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/copy.jpg"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_lookup_by_url_refuses_private_addresses(
    app: Flask, world: World, image_server: str
) -> None:
    client = app.test_client()
    for url in (
        image_server,
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:80/x",
        "http://localhost/x",
        "file:///etc/passwd",
    ):
        response = client.post("/api/v1/lookup", json={"url": url}, headers=bearer(world, "pub_a"))
        assert response.status_code == 422, url
        assert "cannot fetch the URL" in response.get_json()["error"]
    page = client.post("/lookup", data={"url": image_server})
    assert page.status_code == 302  # the page needs a session first


def test_lookup_by_url_with_an_allowed_host(db_url: str, world: World, image_server: str) -> None:
    app = make_app(
        db_url, LOOKUP_FETCH_POLICY=AddressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    )
    try:
        client = app.test_client()
        response = client.post(
            "/api/v1/lookup", json={"url": image_server}, headers=bearer(world, "op_a")
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert [h["work_title"] for h in response.get_json()["matches"]] == [TITLE_A]
    finally:
        resources.close(app)


def test_review_through_the_api(app: Flask, world: World) -> None:
    client = app.test_client()
    match = world.matches["a"]
    one = client.get(f"/api/v1/matches/{match}", headers=bearer(world, "pub_a"))
    assert one.status_code == 200 and one.get_json()["match"]["review_state"] == "pending"
    decided = client.post(
        f"/api/v1/matches/{match}/decision",
        json={"decision": "approve"},
        headers=bearer(world, "op_a"),
    )
    assert decided.status_code == 200, decided.get_data(as_text=True)
    body = decided.get_json()
    assert body["review_state"] == "approved" and body["reviewed_at"] is not None
    # The match exactly as the list shows it.
    listed = client.get("/api/v1/matches?state=approved", headers=bearer(world, "op_a"))
    assert body in listed.get_json()["matches"]
    with world.db.connection() as conn:
        event = conn.execute(
            "select from_state, to_state, actor, actor_user_id, details->>'via' from events"
            " where subject_type = 'match' and subject_id = %s",
            (match,),
        ).fetchall()
        audit = conn.execute(
            "select actor, target_id, details->>'via' from audit_log where action = 'match.approve'"
        ).fetchall()
    assert event == [("pending", "approved", "api", world.users["op_a"], "api")]
    assert audit == [("operator@example.com", match, "api")]
    # Deciding again is a conflict that changes nothing.
    again = client.post(
        f"/api/v1/matches/{match}/decision",
        json={"decision": "reject"},
        headers=bearer(world, "admin"),
    )
    assert again.status_code == 409
    assert again.get_json()["error"] == (
        f"match {match} is no longer pending (it was approved by operator@example.com);"
        " nothing changed"
    )
    assert (
        client.get(f"/api/v1/matches/{match}", headers=bearer(world, "admin")).get_json()["match"][
            "review_state"
        ]
        == "approved"
    )


def test_api_licensed_decision_allowlists_the_domain(app: Flask, world: World) -> None:
    response = app.test_client().post(
        f"/api/v1/matches/{world.matches['b']}/decision",
        json={"decision": "licensed"},
        headers=bearer(world, "admin"),
    )
    assert response.status_code == 200 and response.get_json()["review_state"] == "licensed"
    with world.db.connection() as conn:
        entry = conn.execute(
            "select publisher_id, work_id from allowlist_entries where domain = 'pirate.example'"
        ).fetchone()
    assert entry == (world.publishers["b"], world.works["b"])


def test_api_decision_errors(app: Flask, world: World) -> None:
    client = app.test_client()
    before = table_counts(world.db_url)
    match_a, match_b = world.matches["a"], world.matches["b"]
    cases = [
        ("pub_a", match_a, {"decision": "approve"}, 403, "only operators and admins"),
        ("op_a", match_b, {"decision": "approve"}, 404, f"no match with id {match_b}"),
        ("admin", 999999, {"decision": "approve"}, 404, "no match with id 999999"),
        ("op_a", match_a, {"decision": "delete"}, 400, "decision must be one of"),
        ("op_a", match_a, {}, 400, "decision must be one of"),
        ("op_a", match_a, ["approve"], 400, "send a JSON object"),
        ("op_a", match_a, None, 400, "send a JSON object"),
    ]
    for role, match_id, payload, status, message in cases:
        response = client.post(
            f"/api/v1/matches/{match_id}/decision", json=payload, headers=bearer(world, role)
        )
        assert response.status_code == status, (role, payload, response.get_data(as_text=True))
        assert message in response.get_json()["error"]
    assert table_counts(world.db_url) == before


def test_notice_actions_through_the_api(app: Flask, world: World, queue: Queue) -> None:
    client = app.test_client()
    notice = world.notices["a"]
    detail = client.get(f"/api/v1/notices/{notice}", headers=bearer(world, "op_a")).get_json()
    assert detail["notice"]["actions"] == [{"action": "close", "available": True, "reason": None}]
    mine = client.get(f"/api/v1/notices/{notice}", headers=bearer(world, "pub_a")).get_json()
    assert "actions" not in mine["notice"]
    refused = client.post(
        f"/api/v1/notices/{notice}/actions",
        json={"action": "resend"},
        headers=bearer(world, "op_a"),
    )
    assert refused.status_code == 409
    assert refused.get_json()["error"] == (
        f"Notice {notice} is removed: resend is not possible now; nothing changed."
    )
    closed = client.post(
        f"/api/v1/notices/{notice}/actions", json={"action": "close"}, headers=bearer(world, "op_a")
    )
    assert closed.status_code == 200, closed.get_data(as_text=True)
    body = closed.get_json()
    assert body["notice"]["state"] == "closed" and body["action"] == "close"
    assert body["enqueued"] == [] and body["message"] == f"Notice {notice} closed."
    with world.db.connection() as conn:
        audit = conn.execute(
            "select action, details->>'via' from audit_log where target_type = 'notice'"
        ).fetchall()
    assert audit == [("notice.close", "api")]
    # A failed delivery is resent: queued, and its send enqueued.
    with world.db.connection() as conn:
        conn.execute(
            "update notices set state = 'delivery_failed' where id = %s", (world.notices["b"],)
        )
    resent = client.post(
        f"/api/v1/notices/{world.notices['b']}/actions",
        json={"action": "resend"},
        headers=bearer(world, "admin"),
    )
    assert resent.status_code == 200
    assert resent.get_json()["notice"]["state"] == "queued"
    assert resent.get_json()["enqueued"] == ["send_notice"]
    assert queue.messages() == [("notices", "send_notice", [world.notices["b"]])]


def test_api_notice_action_errors(app: Flask, world: World) -> None:
    client = app.test_client()
    before = table_counts(world.db_url)
    notice_a, notice_b = world.notices["a"], world.notices["b"]
    cases = [
        ("pub_a", notice_a, {"action": "close"}, 403, "only operators and admins"),
        ("op_a", notice_b, {"action": "close"}, 404, f"no notice with id {notice_b}"),
        ("admin", 999999, {"action": "close"}, 404, "no notice with id 999999"),
        ("op_a", notice_a, {"action": "delete"}, 400, "action must be one of"),
        ("op_a", notice_a, "close", 400, "send a JSON object"),
    ]
    for role, notice_id, payload, status, message in cases:
        response = client.post(
            f"/api/v1/notices/{notice_id}/actions", json=payload, headers=bearer(world, role)
        )
        assert response.status_code == status, (role, payload, response.get_data(as_text=True))
        assert message in response.get_json()["error"]
    assert table_counts(world.db_url) == before
