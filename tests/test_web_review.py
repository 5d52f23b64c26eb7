"""Reviewing matches: decisions and their records, the guard against deciding twice, bulk
actions with confirmation, filters and order, and what an approval leads to."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from flask import Flask

from admin.users import get_user
from admin.web.decisions import decide
from admin.web.scope import Scope
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    EMAILS,
    TITLE_A,
    World,
    add_match,
    add_notice,
    app_fixture,
    client_for,
    copy_bytes,
    world_fixture,
)


def state_of(world: World, match_id: int) -> tuple[str, str | None]:
    with world.db.connection() as conn:
        row = conn.execute(
            "select m.review_state, u.email from matches m"
            " left join users u on u.id = m.reviewed_by where m.id = %s",
            (match_id,),
        ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


_serial = itertools.count(1)


def more_matches(world: World, count: int, **kwargs: object) -> list[int]:
    """Pending matches of work A, each found after every match made before it."""
    ids = []
    for _ in range(count):
        n = next(_serial)
        ids.append(
            add_match(
                world,
                page_id=world.pages["a"],
                page_url=f"https://pirate.example/extra/{n}",
                image_url=f"https://cdn.pirate.example/extra/{n}.jpg",
                image=copy_bytes(TITLE_A, 1, size=(500 + n, 750 + n)),
                created_at=datetime.now(UTC) + timedelta(seconds=n),
                **kwargs,  # type: ignore[arg-type]
            )
        )
    return ids


def test_approve_records_who_when_and_why(app: Flask, world: World) -> None:
    later = more_matches(world, 1)[0]
    client = client_for(app, "op_a")
    match = world.matches["a"]
    page = client.get(f"/review/{match}").get_data(as_text=True)
    assert 'data-key="a"' in page and 'data-key="r"' in page and 'data-key="l"' in page
    assert "Approving starts a new notice to <strong>Pirate Host Abuse</strong>" in page
    response = client.post(f"/review/{match}/decide", data={"action": "approve"})
    assert response.status_code == 303
    # The next pending match of the same queue loads next.
    assert response.headers["Location"] == f"/review/{later}"
    assert state_of(world, match) == ("approved", EMAILS["op_a"])
    with world.db.connection() as conn:
        event = conn.execute(
            "select event_type, from_state, to_state, actor_user_id, actor from events"
            " where subject_type = 'match' and subject_id = %s",
            (match,),
        ).fetchall()
        audit = conn.execute(
            "select actor, user_id, target_type, target_id, remote_addr from audit_log"
            " where action = 'match.approve'"
        ).fetchall()
        reviewed_at = conn.execute(
            "select reviewed_at from matches where id = %s", (match,)
        ).fetchone()
    assert event == [("reviewed", "pending", "approved", world.users["op_a"], "web")]
    assert audit == [(EMAILS["op_a"], world.users["op_a"], "match", match, "127.0.0.1")]
    assert reviewed_at is not None and reviewed_at[0] is not None
    flashed = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Approved match {match}" in flashed


def test_reject_and_licensed(app: Flask, world: World) -> None:
    client = client_for(app, "admin")
    assert (
        client.post(f"/review/{world.matches['b']}/decide", data={"action": "reject"}).status_code
        == 303
    )
    assert state_of(world, world.matches["b"]) == ("rejected", EMAILS["admin"])
    assert (
        client.post(f"/review/{world.matches['a']}/decide", data={"action": "licensed"}).status_code
        == 303
    )
    assert state_of(world, world.matches["a"]) == ("licensed", EMAILS["admin"])
    with world.db.connection() as conn:
        entry = conn.execute(
            "select publisher_id, work_id, domain, created_by from allowlist_entries"
            " where domain = 'pirate.example'"
        ).fetchone()
        details = conn.execute(
            "select details->>'allowlisted' from events where subject_id = %s"
            " and subject_type = 'match'",
            (world.matches["a"],),
        ).fetchone()
    assert entry == (
        world.publishers["a"],
        world.works["a"],
        "pirate.example",
        world.users["admin"],
    )
    assert details == ("pirate.example",)


def test_a_decision_applies_once(app: Flask, world: World) -> None:
    match = world.matches["a"]
    first, second = client_for(app, "op_a"), client_for(app, "admin")
    # Both reviewers opened the match while it was pending.
    assert "Approve" in first.get(f"/review/{match}").get_data(as_text=True)
    assert "Approve" in second.get(f"/review/{match}").get_data(as_text=True)
    first.post(f"/review/{match}/decide", data={"action": "reject"})
    late = second.post(f"/review/{match}/decide", data={"action": "approve"})
    assert late.status_code == 303
    assert state_of(world, match) == ("rejected", EMAILS["op_a"])
    page = second.get(late.headers["Location"]).get_data(as_text=True)
    assert f"Match {match} was already decided (rejected); nothing changed." in page
    with world.db.connection() as conn:
        events = conn.execute(
            "select count(*) from events where subject_type = 'match' and subject_id = %s",
            (match,),
        ).fetchone()
    assert events == (1,)
    admin = get_user(world.db, world.users["admin"])
    assert admin is not None
    assert not decide(
        world.db, Scope([], everything=True), match, "approve", user=admin, remote_addr=None
    )


def test_bulk_action_confirms_the_count_and_acts_on_what_was_confirmed(
    app: Flask, world: World
) -> None:
    extra = more_matches(world, 3, confidence=0.6, decision="review")
    client = client_for(app, "op_a")
    filters = {"work": str(world.works["a"]), "decision": "review"}
    confirm = client.post("/review/bulk", data={"action": "reject", **filters})
    assert confirm.status_code == 200
    html = confirm.get_data(as_text=True)
    assert "Reject 3 matches?" in html
    assert f'name="ids" value="{",".join(map(str, extra))}"' in html
    # A match found after the confirmation page was shown is not swept in.
    newcomer = more_matches(world, 1, confidence=0.6, decision="review")[0]
    done = client.post(
        "/review/bulk",
        data={"action": "reject", "confirmed": "1", "ids": ",".join(map(str, extra)), **filters},
    )
    assert done.status_code == 303
    assert done.headers["Location"].startswith("/review?")
    assert [state_of(world, m)[0] for m in extra] == ["rejected"] * 3
    assert state_of(world, newcomer)[0] == "pending"
    assert state_of(world, world.matches["a"])[0] == "pending"  # "confident": not in the filter
    with world.db.connection() as conn:
        bulk = conn.execute(
            "select count(*) from events where details->>'bulk' = 'true'"
        ).fetchone()
    assert bulk == (3,)
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Rejected 3 match(es)." in page


def test_queue_filters_and_order(app: Flask, world: World) -> None:
    low, high = more_matches(world, 2, decision="review")
    with world.db.connection() as conn:
        conn.execute("update matches set confidence = 0.55 where id = %s", (low,))
        conn.execute("update matches set confidence = 0.99 where id = %s", (high,))
    client = client_for(app, "admin")

    def listed(query: str) -> list[int]:
        html = client.get(f"/review?{query}").get_data(as_text=True)
        ids: list[int] = []
        for part in html.split('href="/review/')[1:]:
            number = int(part.split('"')[0].split("?")[0])
            if number not in ids:
                ids.append(number)
        return ids

    a, b = world.matches["a"], world.matches["b"]
    assert set(listed("")) == {a, b, low, high}
    assert listed(f"work={world.works['a']}&sort=confidence") == [high, a, low]
    assert listed(f"work={world.works['a']}&min_confidence=0.9&sort=confidence") == [high, a]
    assert set(listed("decision=confident")) == {a, b}
    assert listed(f"site={world.site_id}&work={world.works['b']}") == [b]
    assert listed("state=approved") != []  # the noticed matches of the world
    assert listed("min_confidence=nonsense&state=bogus") != []  # bad filters are ignored
    # j / k follow the same order and filters.
    page = client.get(f"/review/{a}?work={world.works['a']}&sort=confidence")
    html = page.get_data(as_text=True)
    assert f'data-key="j" href="/review/{low}?work={world.works["a"]}&amp;sort=confidence"' in html
    assert f'data-key="k" href="/review/{high}?work={world.works["a"]}&amp;sort=confidence"' in html


def test_preview_names_the_drafted_notice_an_approval_joins(app: Flask, world: World) -> None:
    another = more_matches(world, 1)[0]
    drafted = add_notice(
        world,
        publisher_id=world.publishers["a"],
        match_id=another,
        url="https://pirate.example/extra/drafted",
        state="drafted",
    )
    client = client_for(app, "op_a")
    page = client.get(f"/review/{world.matches['a']}").get_data(as_text=True)
    assert f'drafted <a href="/notices/{drafted}">notice #{drafted}</a>' in page
    listed = client.get(f"/review/{another}").get_data(as_text=True)
    assert f'Already listed in <a href="/notices/{drafted}">notice #{drafted}</a>' in listed


def test_publishers_see_their_matches_read_only(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    page = client.get(f"/review/{world.matches['a']}").get_data(as_text=True)
    assert "Read-only" in page and 'data-key="a"' not in page
    queue = client.get("/review").get_data(as_text=True)
    assert "Bulk action" not in queue
    assert (
        client.post(f"/review/{world.matches['a']}/decide", data={"action": "approve"}).status_code
        == 403
    )
    assert state_of(world, world.matches["a"]) == ("pending", None)


def test_review_page_shows_both_images_and_the_evidence(app: Flask, world: World) -> None:
    client = client_for(app, "op_a")
    match = world.matches["a"]
    html = client.get(f"/review/{match}").get_data(as_text=True)
    assert f'src="/media/pages/{world.pages["a"]}"' in html
    assert f'src="/media/matches/{match}/image"' in html
    assert f'src="/media/matches/{match}/screenshot"' in html
    assert "https://pirate.example/read/a/1" in html
    assert "https://cdn.pirate.example/a/001.jpg" in html
    assert "region score 7.50" in html and "203.0.113.7" in html
    manifest = client.get(f"/media/matches/{match}/manifest.json")
    assert manifest.is_json and manifest.get_json()["image_url"].endswith("/a/001.jpg")
