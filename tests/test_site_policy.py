"""`mamoru sites`: crawl targets and their policy, with audited changes."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result

from admin.cli import cli


def mamoru(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_add_show_edit_list(mamoru_env: Path, db_url: str) -> None:
    added = mamoru(
        "sites",
        "add",
        "mangafx",
        "http://127.0.0.1:8000/",
        "--rendering",
        "always",
        "--header",
        "Accept-Language: ja",
        "--cookie",
        "adult=1",
        "--exclude",
        r"/ads/",
        "--allow-private",
        "--json",
    )
    assert added.exit_code == 0, added.output
    site = json.loads(added.stdout)
    assert site["start_urls"] == ["http://127.0.0.1:8000/"]
    assert site["allowed_domains"] == ["127.0.0.1"]  # defaults to the start URLs' hosts
    assert site["rendering"] == "always"
    assert site["request_headers"] == {"Accept-Language": "ja"}
    assert site["cookies"] == {"adult": "1"}
    assert site["exclude_patterns"] == ["/ads/"]
    assert site["obey_robots"] is True
    assert site["allow_private_addresses"] is True

    edited = mamoru("sites", "edit", "mangafx", "--ignore-robots", "--max-pages", "50", "--json")
    assert edited.exit_code == 0, edited.output
    after = json.loads(edited.stdout)
    assert after["obey_robots"] is False
    assert after["max_pages"] == 50
    assert after["rendering"] == "always"  # untouched

    with psycopg.connect(db_url) as conn:
        audit = conn.execute(
            "select action, details from audit_log where target_type = 'site' order by id"
        ).fetchall()
    assert [a[0] for a in audit] == ["site.add", "site.edit"]
    assert audit[1][1] == {"obey_robots": [True, False], "max_pages": [2000, 50]}

    listing = mamoru("sites", "list")
    assert "mangafx  http://127.0.0.1:8000/  rendering=always  active" in listing.output
    shown = mamoru("sites", "show", "mangafx")
    assert "obey_robots              False" in shown.output


def test_invalid_policies_are_refused(mamoru_env: Path) -> None:
    cases = [
        (
            ["sites", "add", "x", "ftp://example.com/"],
            "start URL 'ftp://example.com/' is not an http(s) URL",
        ),
        (["sites", "add", "x"], "a site needs at least one start URL"),
        (
            ["sites", "add", "x", "http://a.example/", "--include", "("],
            "include_patterns: '(' is not a regular expression",
        ),
        (
            ["sites", "add", "x", "http://a.example/", "--concurrency", "0"],
            "concurrency must be between 1 and 64",
        ),
        (
            ["sites", "add", "x", "http://a.example/", "--schedule", "nightly"],
            "schedule must be a cron expression",
        ),
        (["sites", "edit", "nope", "--max-pages", "3"], "no site named 'nope'"),
        (["sites", "show", "nope"], "no site named 'nope'"),
    ]
    for args, message in cases:
        result = mamoru(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    ok = mamoru("sites", "add", "x", "http://a.example/")
    assert ok.exit_code == 0
    again = mamoru("sites", "add", "x", "http://b.example/")
    assert again.exit_code == 1
    assert "a site named 'x' already exists" in again.output
