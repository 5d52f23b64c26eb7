"""Registering works through the admin: uploads of images, CBZ and PDF, and every way an
upload can be wrong (which must register nothing and say why); thumbnails; allowlists."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from admin.samples import render_page
from admin.web import resources
from store.config import get_settings
from tests.conftest import table_counts
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    World,
    app_fixture,
    client_for,
    make_app,
    world_fixture,
)

TITLE = "Delta Voyage, Vol. 1"


def png(number: int, title: str = TITLE) -> bytes:
    out = io.BytesIO()
    render_page(title, number).save(out, "PNG")
    return out.getvalue()


def cbz(pages: int, title: str = TITLE) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("ComicInfo.xml", "<ComicInfo/>")
        for number in range(pages, 0, -1):  # stored out of order on purpose
            archive.writestr(f"vol/{number:02d}.png", png(number, title))
    return out.getvalue()


def pdf(pages: int, title: str = TITLE) -> bytes:
    out = io.BytesIO()
    images = [render_page(title, n) for n in range(1, pages + 1)]
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=100)
    return out.getvalue()


def upload(
    client: FlaskClient, world: World, files: list[tuple[bytes, str]], **fields: str
) -> TestResponse:
    data: dict[str, object] = {
        "publisher_id": str(world.publishers["a"]),
        "title": TITLE,
        "kind": "volume",
        **fields,
        "files": [(io.BytesIO(content), name) for content, name in files],
    }
    return client.post("/works/new", data=data, content_type="multipart/form-data")


def pages_of(world: World, title: str = TITLE) -> list[tuple[int, str]]:
    with world.db.connection() as conn:
        rows = conn.execute(
            "select p.page_number, p.source_name from pages p join works w on w.id = p.work_id"
            " where w.title = %s order by p.page_number",
            (title,),
        ).fetchall()
    return [(int(n), str(s)) for n, s in rows]


def test_upload_images_registers_a_work(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    response = upload(
        client,
        world,
        [(png(2), "p10.png"), (png(1), "p2.png"), (png(3), "ページ3.png")],
        isbn="978-4-00-000009-9",
        identifiers="asin=B000TEST\njan=4900000000000",
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].startswith("/works/")
    # Natural order of the uploaded names, and the names as uploaded (no temporary paths).
    assert pages_of(world) == [(1, "p2.png"), (2, "p10.png"), (3, "ページ3.png")]
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Registered Delta Voyage, Vol. 1: 3 page(s) added" in detail
    assert "B000TEST" in detail and "978-4-00-000009-9" in detail
    with world.db.connection() as conn:
        work = conn.execute(
            "select id, publisher_id, identifiers from works where title = %s", (TITLE,)
        ).fetchone()
        audit = conn.execute(
            "select actor, target_id, details->>'pages_added' from audit_log"
            " where action = 'work.register'"
        ).fetchone()
        stored = conn.execute(
            "select count(*) from pages p join works w on w.id = p.work_id"
            " where w.title = %s and p.image_sha256 is not null",
            (TITLE,),
        ).fetchone()
    assert work is not None
    assert work[1] == world.publishers["a"]
    assert work[2] == {"asin": "B000TEST", "jan": "4900000000000"}
    assert audit == ("pub-a@example.com", work[0], "3")
    assert stored == (3,)
    # Adding the same pages again registers nothing new.
    again = upload(client, world, [(png(1), "p1.png"), (png(4), "p4.png")])
    assert again.status_code == 303
    assert [n for n, _ in pages_of(world)] == [1, 2, 3, 4]


def test_upload_cbz_and_pdf(app: Flask, world: World) -> None:
    client = client_for(app, "op_a")
    assert upload(client, world, [(cbz(3), "delta.cbz")]).status_code == 303
    assert pages_of(world) == [
        (1, "delta.cbz:vol/01.png"),
        (2, "delta.cbz:vol/02.png"),
        (3, "delta.cbz:vol/03.png"),
    ]
    response = upload(client, world, [(pdf(2, "Epsilon"), "epsilon.pdf")], title="Epsilon")
    assert response.status_code == 303
    assert [s for _, s in pages_of(world, "Epsilon")] == [
        "epsilon.pdf#page=1",
        "epsilon.pdf#page=2",
    ]


def test_bad_uploads_register_nothing_and_say_why(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    truncated = png(1)[:2000]
    broken_zip = b"PK\x03\x04" + b"\x00" * 200
    with_bad_member = io.BytesIO()
    with zipfile.ZipFile(with_bad_member, "w") as archive:
        archive.writestr("01.png", png(1))
        archive.writestr("02.png", b"\x89PNG\r\n\x1a\nnot really")
    cases = [
        ([(b"just some notes\n", "notes.txt")], "notes.txt: not an image, CBZ/ZIP archive or PDF"),
        ([(png(1), "ok.png"), (truncated, "cut.png")], "cut.png:"),
        ([(broken_zip, "broken.cbz")], "broken.cbz: broken archive"),
        ([(with_bad_member.getvalue(), "vol.cbz")], "vol.cbz:02.png:"),
        ([(b"%PDF-1.7\n garbage", "bad.pdf")], "bad.pdf:"),
        ([(b"", "empty.png")], "empty.png: empty file"),
        ([], "choose at least one file"),
    ]
    before = table_counts(world.db_url)
    for files, message in cases:
        response = upload(client, world, files)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, (files, html[:500])
        assert message in html, message
        assert "mamoru-upload-" not in html  # no temporary paths leak into messages
    # The upload script asks for JSON and gets the same message.
    response = client.post(
        "/works/new",
        data={
            "publisher_id": str(world.publishers["a"]),
            "title": TITLE,
            "files": [(io.BytesIO(b"text"), "x.txt")],
        },
        headers={"Accept": "application/json"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": "x.txt: not an image, CBZ/ZIP archive or PDF"}
    # Another publisher's id is refused like an unknown one.
    other = upload(client, world, [(png(1), "p.png")], publisher_id=str(world.publishers["b"]))
    assert other.status_code == 400
    assert "Choose the publisher" in other.get_data(as_text=True)
    assert table_counts(world.db_url) == before


def test_oversize_upload_is_refused_with_a_clear_message(db_url: str, world: World) -> None:
    app = make_app(db_url, MAX_CONTENT_LENGTH=50_000)
    try:
        client = client_for(app, "pub_a")
        before = table_counts(world.db_url)
        big = png(1) + b"\x00" * 60_000
        response = upload(client, world, [(big, "huge.png")])
        assert response.status_code == 413
        html = response.get_data(as_text=True)
        assert "Upload too large" in html and "50,000 bytes" in html
        as_json = client.post(
            "/works/new",
            data={"files": [(io.BytesIO(big), "huge.png")]},
            headers={"Accept": "application/json"},
            content_type="multipart/form-data",
        )
        assert as_json.status_code == 413
        assert "larger than the limit of 50,000 bytes" in as_json.get_json()["error"]
        assert table_counts(world.db_url) == before
    finally:
        resources.close(app)


def test_upload_limit_follows_the_archive_setting(app: Flask, world: World) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] == get_settings().max_archive_bytes
    form = client_for(app, "admin").get("/works/new").get_data(as_text=True)
    assert f'data-max-bytes="{get_settings().max_archive_bytes}"' in form


def test_thumbnails_are_cached_jpegs(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    response = client.get(f"/media/pages/{world.pages['a']}?size=thumb")
    assert response.status_code == 200 and response.content_type == "image/jpeg"
    image = Image.open(io.BytesIO(response.data))
    assert image.height <= 360 and image.width <= 240
    cached = list(Path(get_settings().data_dir, "cache", "thumbs").rglob("*.jpg"))
    assert len(cached) == 1
    full = client.get(f"/media/pages/{world.pages['a']}")
    assert full.content_type == "image/png"
    assert Image.open(io.BytesIO(full.data)).size == (800, 1200)
    assert "private" in full.headers["Cache-Control"]


def test_works_list_and_detail(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    html = client.get("/works").get_data(as_text=True)
    assert f'src="/media/pages/{world.pages["a"]}?size=thumb"' in html
    detail = client.get(f"/works/{world.works['a']}").get_data(as_text=True)
    assert "partner-a.example" in detail
    assert detail.count('class="page-card"') == 2
    searched = client.get("/works?q=nothing-like-this").get_data(as_text=True)
    assert "No works yet" in searched


def test_allowlist_add_and_remove(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    work = world.works["a"]
    back = f"/works/{work}"
    added = client.post(
        "/allowlist",
        data={"work_id": str(work), "domain": "https://Licensed.Example/store", "next": back},
    )
    assert added.status_code == 303 and added.headers["Location"] == back
    wide = client.post(
        "/allowlist", data={"publisher_id": str(world.publishers["a"]), "domain": "store.example"}
    )
    assert wide.status_code == 303
    duplicate = client.post("/allowlist", data={"work_id": str(work), "domain": "licensed.example"})
    assert duplicate.status_code == 303
    assert "already on this allowlist" in client.get("/allowlist").get_data(as_text=True)
    client.post("/allowlist", data={"work_id": str(work), "domain": "not a domain"})
    assert "is not a domain name" in client.get("/allowlist").get_data(as_text=True)
    with world.db.connection() as conn:
        rows = conn.execute(
            "select domain, work_id from allowlist_entries where publisher_id = %s order by domain",
            (world.publishers["a"],),
        ).fetchall()
        entry = conn.execute(
            "select id from allowlist_entries where domain = 'store.example'"
        ).fetchone()
    assert rows == [
        ("licensed.example", work),
        ("partner-a.example", work),
        ("store.example", None),
    ]
    assert entry is not None
    # The work page lists its own and the publisher-wide entries.
    detail = client.get(back).get_data(as_text=True)
    assert "licensed.example" in detail and "store.example" in detail
    assert client.post(f"/allowlist/{entry[0]}/delete").status_code == 303
    with world.db.connection() as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "select action from audit_log where action like 'allowlist.%' order by id"
            )
        ]
    assert actions == ["allowlist.add", "allowlist.add", "allowlist.remove"]
