"""Exports: Lumen submissions and the CSV for search engines' bulk removal forms."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from takedown.exports import SEARCH_ENGINE_CSV_HEADER, lumen_json, lumen_notice, search_engine_csv
from takedown.notice_content import NoticeItem, WorkRef
from tests.test_notice_formats import COVER, VOLUME, make_notice


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_lumen_notice_has_the_documented_shape() -> None:
    payload = lumen_notice(make_notice("dmca"))
    notice = payload["notice"]
    assert set(payload) == {"notice"}
    assert notice["type"] == "DMCA"
    assert notice["title"] == "DMCA (Copyright) Complaint to Pirate Host Ltd"
    assert notice["date_sent"] == "2026-03-01"
    assert notice["language"] == "en"
    volume, cover = notice["works_attributes"]
    assert volume == {
        "kind": "book",
        "description": "Example, Vol. 1 (ISBN 978-4-00-000000-0)",
        "copyrighted_urls_attributes": [{"url": VOLUME.official_url}],
        "infringing_urls_attributes": [
            {"url": "https://cdn.pirate.example/v1/001.jpg"},
            {"url": "https://pirate.example/read/example-1?p=1"},
            {"url": "https://cdn.pirate.example/v1/002.jpg"},
            {"url": "https://pirate.example/read/example-1?p=2"},
        ],
    }
    assert cover["kind"] == "illustration"
    assert cover["copyrighted_urls_attributes"] == []
    roles = {
        role["name"]: role["entity_attributes"] for role in notice["entity_notice_roles_attributes"]
    }
    assert roles["sender"] == {
        "name": "Example Comics Rights Office",
        "kind": "organization",
        "address_line_1": "1-2-3 Kanda",
        "address_line_2": "Chiyoda-ku, Tokyo 101-0051, Japan",
        "country_code": "JP",
        "phone": "+81-3-0000-0000",
        "email": "rights@example.com",
    }
    assert roles["principal"] == {
        "name": "Example Comics",
        "kind": "organization",
        "country_code": "JP",
    }
    assert roles["recipient"] == {
        "name": "Pirate Host Ltd",
        "kind": "organization",
        "email": "abuse@host.example",
    }


def test_lumen_json_is_one_submission_per_notice() -> None:
    notices = [
        make_notice("dmca"),
        make_notice("jp_provider", language="ja-JP"),
        make_notice("eu_dsa"),
    ]
    loaded = json.loads(lumen_json(notices))
    assert [entry["notice"]["type"] for entry in loaded] == ["DMCA"] * 3
    assert loaded[1]["notice"]["language"] == "ja"
    assert "送信防止措置依頼" in loaded[1]["notice"]["title"]
    assert "送信防止措置依頼" in lumen_json(notices)  # readable, not \\u-escaped
    assert json.loads(lumen_json([])) == []


def test_csv_has_one_row_per_url_and_work() -> None:
    rows = read_csv(search_engine_csv([make_notice("dmca"), make_notice("eu_dsa")]))
    assert tuple(rows[0]) == SEARCH_ENGINE_CSV_HEADER
    body = rows[1:]
    # Three images and three pages, each once although two notices list them.
    assert [row[0] for row in body] == [
        "https://cdn.pirate.example/v1/001.jpg",
        "https://cdn.pirate.example/v1/002.jpg",
        "https://cdn.pirate.example/cover.webp",
        "https://pirate.example/read/example-1?p=1",
        "https://pirate.example/read/example-1?p=2",
        "https://pirate.example/gallery?a=1&b=2",
    ]
    first = body[0]
    assert first[1:3] == ["Example, Vol. 1", VOLUME.official_url]
    assert first[3] == (
        "Image copying page 1 of “Example, Vol. 1 (ISBN 978-4-00-000000-0)”,"
        " shown on https://pirate.example/read/example-1?p=1"
    )
    cover_page = body[5]
    assert cover_page[1:3] == [COVER.title, ""]
    assert cover_page[3].startswith("Web page showing “Cover art (JAN 4900000000000)”")


def test_csv_page_row_names_every_page_it_shows() -> None:
    notice = make_notice("dmca")
    same_page = tuple(
        dataclasses.replace(item, page_url="https://pirate.example/read/example-1")
        for item in notice.items[:2]
    )
    rows = read_csv(search_engine_csv([dataclasses.replace(notice, items=same_page)]))
    assert rows[-1][0] == "https://pirate.example/read/example-1"
    assert "pages 1, 2 of" in rows[-1][3]


def test_csv_round_trips_hostile_urls_and_titles() -> None:
    url = 'https://pirate.example/a,b?q="quoted",x\r\ny\nz'
    title = 'Title, with "quotes"\nand a line break'
    hostile = NoticeItem(
        image_url=url,
        page_url="https://pirate.example/p,1",
        work=WorkRef(title=title, official_url="https://example.com/a,b"),
        page_number=3,
    )
    rows = read_csv(search_engine_csv([make_notice("dmca", items=(hostile,))]))
    assert rows[1][:3] == [url, title, "https://example.com/a,b"]
    assert rows[2][0] == "https://pirate.example/p,1"
    assert len(rows) == 3


def test_csv_cells_never_start_a_spreadsheet_formula() -> None:
    formula = '=HYPERLINK("https://evil.example","click")'
    hostile = NoticeItem(
        image_url="https://cdn.pirate.example/1.jpg",
        page_url="https://pirate.example/1",
        work=WorkRef(title=formula),
    )
    rows = read_csv(search_engine_csv([make_notice("dmca", items=(hostile,))]))
    assert {row[1] for row in rows[1:]} == {"'" + formula}
