"""Operations from the admin: the health check, "crawl now", and the staff's actions on a
notice (release, resend, recheck, escalate, close), each checked by what reached the job queue
(the default broker keeps it in the database: ``dramatiq.queue``) and by its audit row."""

from __future__ import annotations

import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin.web import resources
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    EMAILS,
    Queue,
    World,
    add_notice,
    app_fixture,
    client_for,
    make_app,
    queue_fixture,
    world_fixture,
)

# -- health


def test_healthz_answers_without_sign_in(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthz_is_503_when_the_database_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    app = make_app(f"postgresql://mamoru:s3cret-pw@127.0.0.1:{port}/mamoru")
    try:
        response = app.test_client().get("/healthz")
    finally:
        resources.close(app)
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "unreachable"}
    body = response.get_data(as_text=True)
    for secret in ("s3cret", "mamoru@", str(port), "127.0.0.1", "psycopg", "version"):
        assert secret not in body
    assert "the database is unreachable" in caplog.text


# -- crawl now


def crawl_audit(world: World) -> list[tuple[str, int, str]]:
    with world.db.connection() as conn:
        rows = conn.execute(
            "select actor, target_id, details->>'trigger' from audit_log"
            " where action = 'site.crawl' order by id"
        ).fetchall()
    return [(str(a), int(t), str(d)) for a, t, d in rows]


def test_crawl_now_enqueues_a_crawl_once(app: Flask, world: World, queue: Queue) -> None:
    client = client_for(app, "op_a")
    path = f"/sites/{world.site_id}"
    page = client.get(path).get_data(as_text=True)
    assert f'action="{path}/crawl"' in page
    assert re.search(r'<button class="button" type="submit" title="[^"]*">Crawl now', page)
    response = client.post(f"{path}/crawl")
    assert response.status_code == 303 and response.headers["Location"] == path
    assert queue.messages() == [("crawl", "crawl_site", [world.site_id, "manual"])]
    assert crawl_audit(world) == [(EMAILS["op_a"], world.site_id, "manual")]
    shown = client.get(path).get_data(as_text=True)
    assert "Crawl of pirate-example enqueued" in shown
    # A second click before a worker starts it enqueues nothing, and says why.
    assert "is waiting for a worker" in shown and "disabled" in shown
    client_for(app, "admin").post(f"{path}/crawl")
    assert len(queue.messages()) == 1
    assert len(crawl_audit(world)) == 1
    # Once the crawl has started, it is the running crawl that blocks another.
    with world.db.connection() as conn:
        conn.execute(
            "insert into crawls (site_id, state, trigger, started_at)"
            " values (%s, 'running', 'manual', now())",
            (world.site_id,),
        )
    client.post(f"{path}/crawl")
    refused = client.get(path).get_data(as_text=True)
    assert "already has crawl" in refused and "running" in refused
    assert "No crawl was enqueued." in refused
    assert len(queue.messages()) == 1
    # When it has finished, the site may be crawled again.
    with world.db.connection() as conn:
        conn.execute("update crawls set state = 'finished', finished_at = now()")
    client.post(f"{path}/crawl")
    assert len(queue.messages()) == 2


def test_crawl_now_refuses_an_inactive_site(app: Flask, world: World, queue: Queue) -> None:
    with world.db.connection() as conn:
        conn.execute("update sites set is_active = false where id = %s", (world.site_id,))
    client = client_for(app, "admin")
    response = client.post(f"/sites/{world.site_id}/crawl", follow_redirects=True)
    assert "is inactive" in response.get_data(as_text=True)
    assert queue.messages() == []
    assert crawl_audit(world) == []


def test_crawl_now_is_staff_only(app: Flask, world: World, queue: Queue) -> None:
    for role in ("pub_a", "pub_b"):
        assert client_for(app, role).post(f"/sites/{world.site_id}/crawl").status_code == 403
    assert client_for(app, "admin").post("/sites/999999/crawl").status_code == 404
    assert queue.messages() == []


# -- notice actions


def notice_in(
    world: World, state: str, *, held: str | None = None, sent_hours_ago: float | None = None
) -> int:
    """A notice of publisher A in ``state`` listing A's pending match."""
    notice_id = add_notice(
        world,
        publisher_id=world.publishers["a"],
        match_id=world.matches["a"],
        url="https://pirate.example/read/a/1",
        state=state,
    )
    sent_at = None
    if sent_hours_ago is not None:
        sent_at = datetime.now(UTC) - timedelta(hours=sent_hours_ago)
    with world.db.connection() as conn:
        conn.execute(
            "update notices set held_reason = %s, sent_at = %s where id = %s",
            (held, sent_at, notice_id),
        )
    return notice_id


def buttons(html: str) -> list[str]:
    return re.findall(r'data-action="(\w+)"', html)


def state_of(world: World, notice_id: int) -> tuple[str, str | None]:
    with world.db.connection() as conn:
        row = conn.execute(
            "select state, held_reason from notices where id = %s", (notice_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


def notice_audit(world: World, notice_id: int) -> list[tuple[str, str, dict[str, object]]]:
    with world.db.connection() as conn:
        rows = conn.execute(
            "select action, actor, details from audit_log"
            " where target_type = 'notice' and target_id = %s order by id",
            (notice_id,),
        ).fetchall()
    return [(str(a), str(b), dict(c)) for a, b, c in rows]


@pytest.mark.parametrize(
    ("state", "held", "sent_hours_ago", "expected"),
    [
        ("drafted", "flood guard", None, ["release", "close"]),
        ("drafted", None, None, ["close"]),
        ("approved", None, None, ["close"]),
        ("queued", None, None, ["close"]),
        ("delivery_failed", None, None, ["resend", "escalate", "close"]),
        ("sent", None, 25, ["recheck", "close"]),
        ("acknowledged", None, 25, ["recheck", "close"]),
        ("still_up", None, 80, ["recheck", "escalate", "close"]),
        ("escalated", None, 200, ["close"]),
        ("removed", None, 50, ["close"]),
        ("closed", None, None, []),
    ],
)
def test_a_notice_offers_only_the_actions_of_its_state(
    app: Flask,
    world: World,
    state: str,
    held: str | None,
    sent_hours_ago: float | None,
    expected: list[str],
) -> None:
    notice_id = notice_in(world, state, held=held, sent_hours_ago=sent_hours_ago)
    page = client_for(app, "op_a").get(f"/notices/{notice_id}").get_data(as_text=True)
    assert buttons(page) == expected
    assert 'type="button" disabled' not in page  # no placeholder buttons left
    # Publishers read notices; they do not act on them.
    assert (
        buttons(client_for(app, "pub_a").get(f"/notices/{notice_id}").get_data(as_text=True)) == []
    )


def test_close_records_the_operator(app: Flask, world: World) -> None:
    notice_id = world.notices["a"]  # removed
    client = client_for(app, "op_a")
    response = client.post(f"/notices/{notice_id}/actions", data={"action": "close"})
    assert response.status_code == 303 and response.headers["Location"] == f"/notices/{notice_id}"
    assert state_of(world, notice_id) == ("closed", None)
    with world.db.connection() as conn:
        event = conn.execute(
            "select from_state, to_state, actor, actor_user_id from events"
            " where subject_type = 'notice' and subject_id = %s order by id desc limit 1",
            (notice_id,),
        ).fetchone()
    assert event == ("removed", "closed", "web", world.users["op_a"])
    [(action, actor, details)] = notice_audit(world, notice_id)
    assert (action, actor) == ("notice.close", EMAILS["op_a"])
    assert details["from_state"] == "removed" and details["via"] == "web"
    page = client.get(f"/notices/{notice_id}").get_data(as_text=True)
    assert f"Notice {notice_id} closed." in page and buttons(page) == []
    # Again: nothing to do, and said so.
    client.post(f"/notices/{notice_id}/actions", data={"action": "close"})
    page = client.get(f"/notices/{notice_id}").get_data(as_text=True)
    assert "close is not possible now; nothing changed" in page
    assert len(notice_audit(world, notice_id)) == 1


def test_resend_queues_and_enqueues_the_send(app: Flask, world: World, queue: Queue) -> None:
    notice_id = notice_in(world, "delivery_failed")
    client = client_for(app, "admin")
    client.post(f"/notices/{notice_id}/actions", data={"action": "resend"})
    assert state_of(world, notice_id) == ("queued", None)
    assert queue.messages() == [("notices", "send_notice", [notice_id])]
    [(action, actor, details)] = notice_audit(world, notice_id)
    assert (action, actor, details["to_state"]) == ("notice.resend", EMAILS["admin"], "queued")
    page = client.get(f"/notices/{notice_id}").get_data(as_text=True)
    assert "queued for sending again; a worker sends it" in page


def test_release_validates_approves_and_enqueues_the_send(
    app: Flask, world: World, queue: Queue
) -> None:
    notice_id = notice_in(world, "drafted", held="flood guard: 40 matches in a day")
    client = client_for(app, "op_a")
    # Publisher A has no postal address yet: the validator refuses the notice.
    client.post(f"/notices/{notice_id}/actions", data={"action": "release"})
    page = client.get(f"/notices/{notice_id}").get_data(as_text=True)
    assert "was released but the validator refused it, so it stays drafted" in page
    assert state_of(world, notice_id) == ("drafted", None)
    assert queue.messages() == []
    assert notice_audit(world, notice_id)[0][2]["refused"]
    # Completed and held again, it is released, approved and its send enqueued.
    with world.db.connection() as conn:
        conn.execute(
            "update publishers set contact_address = '1-1 Kanda, Tokyo',"
            " contact_email = 'rights@alpha.example', contact_phone = '+81-3-0000-0000'"
            " where id = %s",
            (world.publishers["a"],),
        )
        conn.execute("update notices set held_reason = 'flood guard' where id = %s", (notice_id,))
    client.post(f"/notices/{notice_id}/actions", data={"action": "release"})
    assert state_of(world, notice_id) == ("approved", None)
    assert queue.messages() == [("notices", "send_notice", [notice_id])]
    with world.db.connection() as conn:
        events = conn.execute(
            "select event_type, actor, actor_user_id from events"
            " where subject_type = 'notice' and subject_id = %s and event_type = 'released'",
            (notice_id,),
        ).fetchall()
    assert events[-1] == ("released", "web", world.users["op_a"])
    assert "released and approved; a worker sends it" in client.get(
        f"/notices/{notice_id}"
    ).get_data(as_text=True)


def test_recheck_now_is_enqueued_at_once_naming_the_operator(
    app: Flask, world: World, queue: Queue
) -> None:
    client = client_for(app, "op_a")
    # Sent an hour ago: no scheduled round is due, and "Recheck now" still rechecks now.
    fresh = notice_in(world, "sent", sent_hours_ago=1)
    page = client.get(f"/notices/{fresh}").get_data(as_text=True)
    assert re.search(r'data-action="recheck" title="Ask a worker to check now', page)
    client.post(f"/notices/{fresh}/actions", data={"action": "recheck"})
    assert queue.messages() == [("followup", "recheck_notice", [fresh])]
    with world.db.connection() as conn:
        [(kwargs,)] = conn.execute("select message -> 'kwargs' from dramatiq.queue").fetchall()
    assert kwargs == {
        "force": True,
        "actor": "web",
        "user_id": world.users["op_a"],
        "requested_by": EMAILS["op_a"],
    }
    [(action, actor, details)] = notice_audit(world, fresh)
    assert (action, actor) == ("notice.recheck", EMAILS["op_a"])
    assert details["enqueued"] == "recheck_notice"
    assert "a worker checks its URLs now" in client.get(f"/notices/{fresh}").get_data(as_text=True)
    assert state_of(world, fresh) == ("sent", None)  # the worker moves it, not the admin


def recheck_round(world: World, notice_id: int, *, clock_behind: timedelta) -> None:
    """What a worker's recheck round leaves: its ``rechecked`` event, stamped with the worker's
    clock (here ``clock_behind`` the database's)."""
    with world.db.connection() as conn:
        conn.execute(
            "insert into events (occurred_at, subject_type, subject_id, event_type, actor)"
            " values (now() - %s, 'notice', %s, 'rechecked', 'worker')",
            (clock_behind, notice_id),
        )


def recheck_button(html: str) -> str:
    found = re.search(r'<button[^>]*data-action="recheck"[^>]*>', html)
    assert found, html
    return found.group(0)


def test_recheck_now_is_enqueued_once_until_it_has_run(
    app: Flask, world: World, queue: Queue
) -> None:
    notice_id = notice_in(world, "sent", sent_hours_ago=30)
    path = f"/notices/{notice_id}"
    # A scheduled round ran before anyone asked: it does not count as the recheck asked for.
    recheck_round(world, notice_id, clock_behind=timedelta(hours=6))
    client = client_for(app, "op_a")
    client.post(f"{path}/actions", data={"action": "recheck"})
    assert queue.messages() == [("followup", "recheck_notice", [notice_id])]
    shown = client.get(path).get_data(as_text=True)
    assert f"Recheck of notice {notice_id} enqueued" in shown
    waiting = f"A recheck of notice {notice_id} was requested by {EMAILS['op_a']} at "
    assert "disabled" in recheck_button(shown) and waiting in recheck_button(shown)
    # A double click, and another operator, before the worker has run it: nothing enqueued,
    # nothing audited, and the page says why.
    client.post(f"{path}/actions", data={"action": "recheck"})
    refused = client.get(path).get_data(as_text=True)
    assert f"Notice {notice_id}: nothing enqueued. {waiting}" in refused
    assert "and has not run yet." in refused
    client_for(app, "admin").post(f"{path}/actions", data={"action": "recheck"})
    assert len(queue.messages()) == 1
    [(action, actor, details)] = notice_audit(world, notice_id)
    assert (action, actor) == ("notice.recheck", EMAILS["op_a"])
    assert details["enqueued"] == "recheck_notice"
    # The API refuses it the same way.
    api = app.test_client()
    token = {"Authorization": f"Bearer {world.tokens['op_a']}"}
    actions = api.get(f"/api/v1{path}", headers=token).get_json()["notice"]["actions"]
    [recheck] = [a for a in actions if a["action"] == "recheck"]
    assert recheck["available"] is False and waiting in recheck["reason"]
    answer = api.post(f"/api/v1{path}/actions", json={"action": "recheck"}, headers=token)
    assert answer.status_code == 409 and waiting in answer.get_json()["error"]
    assert len(queue.messages()) == 1
    # Once the worker has recorded its round (even with a clock behind the database's: rounds
    # are told apart by event, not by time), the notice may be rechecked again.
    recheck_round(world, notice_id, clock_behind=timedelta(minutes=5))
    assert "disabled" not in recheck_button(client.get(path).get_data(as_text=True))
    client.post(f"{path}/actions", data={"action": "recheck"})
    assert len(queue.messages()) == 2
    assert [a for a, _, _ in notice_audit(world, notice_id)] == ["notice.recheck"] * 2


def test_a_recheck_that_never_runs_blocks_only_for_a_while(
    app: Flask, world: World, queue: Queue
) -> None:
    notice_id = notice_in(world, "still_up", sent_hours_ago=80)
    client = client_for(app, "op_a")
    client.post(f"/notices/{notice_id}/actions", data={"action": "recheck"})
    client.post(f"/notices/{notice_id}/actions", data={"action": "recheck"})
    assert len(queue.messages()) == 1
    # Its message was lost: after REQUEST_PENDING_FOR the request no longer blocks another.
    with world.db.connection() as conn:
        conn.execute(
            "update audit_log set occurred_at = now() - interval '11 minutes'"
            " where action = 'notice.recheck'"
        )
    client.post(f"/notices/{notice_id}/actions", data={"action": "recheck"})
    assert len(queue.messages()) == 2


def test_two_recheck_clicks_at_once_enqueue_one(app: Flask, world: World, queue: Queue) -> None:
    notice_id = notice_in(world, "acknowledged", sent_hours_ago=30)
    clients = [client_for(app, "op_a"), client_for(app, "admin")]
    start = threading.Barrier(len(clients))

    def click(client: FlaskClient) -> int:
        start.wait()
        response = client.post(f"/notices/{notice_id}/actions", data={"action": "recheck"})
        return response.status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        assert list(pool.map(click, clients)) == [303, 303]
    assert queue.messages() == [("followup", "recheck_notice", [notice_id])]
    assert len(notice_audit(world, notice_id)) == 1


def test_escalate_enqueues_the_escalation(app: Flask, world: World, queue: Queue) -> None:
    notice_id = notice_in(world, "still_up", sent_hours_ago=200)
    client = client_for(app, "admin")
    client.post(f"/notices/{notice_id}/actions", data={"action": "escalate"})
    assert queue.messages() == [("followup", "escalate", [notice_id])]
    assert "Escalation of notice" in client.get(f"/notices/{notice_id}").get_data(as_text=True)
    # An action the state does not offer changes nothing and enqueues nothing.
    client.post(f"/notices/{notice_id}/actions", data={"action": "resend"})
    assert state_of(world, notice_id) == ("still_up", None)
    assert len(queue.messages()) == 1


def test_notice_actions_are_staff_only_and_scoped(app: Flask, world: World) -> None:
    for role in ("pub_a", "pub_b"):
        response = client_for(app, role).post(
            f"/notices/{world.notices['a']}/actions", data={"action": "close"}
        )
        assert response.status_code == 403
    operator = client_for(app, "op_a")
    other = operator.post(f"/notices/{world.notices['b']}/actions", data={"action": "close"})
    assert other.status_code == 404
    unknown = operator.post(f"/notices/{world.notices['a']}/actions", data={"action": "delete"})
    assert unknown.status_code == 400
    assert state_of(world, world.notices["a"]) == ("removed", None)
    assert state_of(world, world.notices["b"]) == ("removed", None)
