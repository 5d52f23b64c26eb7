"""The dashboard's figures (from ``events``), its charts, and the sites pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask

from admin.web.charts import bar_chart
from admin.web.queries import dashboard
from admin.web.scope import Scope
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    World,
    add_notice,
    app_fixture,
    client_for,
    world_fixture,
)


def test_removal_rate_and_median_time_from_events(app: Flask, world: World) -> None:
    now = datetime.now(UTC)
    # Two more notices to the same recipient: one removed after 3 hours, one still up.
    add_notice(
        world,
        publisher_id=world.publishers["a"],
        match_id=world.matches["a"],
        url="https://pirate.example/read/a/1",
        sent_at=now - timedelta(hours=5),
        removed_at=now - timedelta(hours=2),
    )
    add_notice(
        world,
        publisher_id=world.publishers["a"],
        match_id=world.matches["a"],
        url="https://pirate.example/read/a/1",
        sent_at=now - timedelta(hours=1),
    )
    everyone = Scope(list(world.publishers.values()), everything=True)
    [recipient] = dashboard.removal_by_recipient(world.db, everyone)
    assert (recipient.name, recipient.sent, recipient.removed) == ("Pirate Host Abuse", 4, 3)
    assert recipient.median_seconds is not None
    assert abs(recipient.median_seconds - 24 * 3600) < 60  # 3 h, 24 h, 24 h
    [site] = dashboard.removal_by_site(world.db, everyone)
    assert (site.name, site.sent, site.removed) == ("pirate-example", 4, 3)
    only_b = dashboard.removal_by_recipient(world.db, Scope([world.publishers["b"]]))
    assert [(r.sent, r.removed, r.rate) for r in only_b] == [(1, 1, 1.0)]
    html = client_for(app, "admin").get("/").get_data(as_text=True)
    assert re.search(
        r"Pirate Host Abuse</td><td class=\"num\">4</td><td class=\"num\">3</td>"
        r"<td class=\"num\">75%</td><td class=\"num\">24.0 h</td>",
        html,
    )


def test_counts_and_daily_series(app: Flask, world: World) -> None:
    scope_a = Scope([world.publishers["a"]])
    counts = dashboard.counts(world.db, scope_a)
    assert (counts.works, counts.pages, counts.pending, counts.approved) == (1, 2, 1, 1)
    assert (counts.open_notices, counts.removed_notices) == (0, 1)
    days = dashboard.per_day(world.db, scope_a, days=30)
    assert len(days) == 30
    assert days[-1].matches == 2  # both of A's matches were found today
    assert sum(d.removals for d in days) == 1 and sum(d.notices for d in days) == 1
    [top] = dashboard.top_sites(world.db, scope_a)
    assert (top.name, top.matches, top.works) == ("pirate-example", 2, 1)


def test_dashboard_page_per_role(app: Flask, world: World) -> None:
    staff = client_for(app, "op_a").get("/").get_data(as_text=True)
    assert staff.count("<svg") == 3
    assert staff.count('class="bar') == 90
    assert "Crawl health" in staff and "pirate-example" in staff
    publisher = client_for(app, "pub_b").get("/").get_data(as_text=True)
    assert "Crawl health" not in publisher


def test_bar_chart_geometry() -> None:
    today = datetime(2026, 3, 31, tzinfo=UTC).date()
    points = [(today - timedelta(days=n), value) for n, value in enumerate([0, 1, 100, 0])][::-1]
    chart = bar_chart("x", points, width=400, height=130)
    assert [b.value for b in chart.bars] == [0, 100, 1, 0]
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.y == chart.plot_top and tallest.height == chart.plot_bottom - chart.plot_top
    assert chart.bars[2].height == 2.0  # small but visible next to the peak
    assert chart.total == 101 and chart.max_value == 100
    assert bar_chart("empty", []).bars == []


def test_add_and_edit_a_site_with_audit(app: Flask, world: World) -> None:
    client = client_for(app, "op_a")
    form = {
        "name": "newsite",
        "start_urls": "https://new.example/\nhttps://new.example/latest",
        "allowed_domains": "",
        "include_patterns": "/read/",
        "exclude_patterns": "",
        "max_depth": "3",
        "max_pages": "500",
        "rendering": "auto",
        "obey_robots": "on",
        "concurrency": "2",
        "delay_seconds": "1.5",
        "request_headers": "Accept-Language: ja",
        "cookies": "age=1",
        "time_budget_seconds": "600",
        "schedule": "0 4 * * *",
        "is_active": "on",
        "notes": "found via search",
    }
    added = client.post("/sites/new", data=form)
    assert added.status_code == 303, added.get_data(as_text=True)
    site_path = added.headers["Location"]
    page = client.get(site_path).get_data(as_text=True)
    assert "new.example" in page and "Accept-Language: ja" in page
    assert f'action="{site_path}/crawl"' in page and "Crawl now" in page
    edited = client.post(f"{site_path}/edit", data={**form, "obey_robots": ""})
    assert edited.status_code == 303
    bad = client.post(f"{site_path}/edit", data={**form, "include_patterns": "(unclosed"})
    assert bad.status_code == 400
    assert "is not a regular expression" in bad.get_data(as_text=True)
    with world.db.connection() as conn:
        site = conn.execute(
            "select allowed_domains, obey_robots, request_headers, delay_seconds from sites"
            " where name = 'newsite'"
        ).fetchone()
        audit = conn.execute(
            "select action, actor, details from audit_log where action like 'site.%' order by id"
        ).fetchall()
    assert site == (["new.example"], False, {"Accept-Language": "ja"}, 1.5)
    assert [(a, actor) for a, actor, _ in audit[-2:]] == [
        ("site.add", "operator@example.com"),
        ("site.edit", "operator@example.com"),
    ]
    assert audit[-1][2]["obey_robots"] == [True, False]
    listing = client.get("/sites").get_data(as_text=True)
    assert "robots off" in listing
