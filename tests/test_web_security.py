"""The admin's defences: CSRF, hostile scraped text, CSP and headers, login throttling, safe
redirects, cookies, the session key, sessions ending, and stored files never served as pages."""

from __future__ import annotations

import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from psycopg.types.json import Jsonb

from admin.users import set_active, set_password
from admin.web import create_app, resources
from admin.web.security import CSP, http_url, safe_next
from matcher.registry import register_work
from matcher.sources import expand_paths
from store.config import get_settings
from tests.web_fixtures import (  # noqa: F401 (fixtures)
    EMAILS,
    PASSWORD,
    PUB_A,
    World,
    add_match,
    app_fixture,
    client_for,
    csrf_token,
    login,
    make_app,
    page_png,
    world_fixture,
)

SCRIPT = '"><script>alert(1)</script>'
IMG = "'><img src=x onerror=alert(2)>"
JS_URL = "javascript:alert(3)"


class _Markup(HTMLParser):
    """Collects what the CSP would have to stop: inline scripts, handlers, styles, js: links."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.handlers: list[str] = []
        self.styles = 0
        self.js_links: list[str] = []
        self.script_tags = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            self.script_tags += 1
            if not names.get("src"):
                self.inline_scripts += 1
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        self.styles += tag == "style" or "style" in names
        for name in ("href", "src", "action", "formaction"):
            value = (names.get(name) or "").strip().lower()
            if value.startswith(("javascript:", "data:text", "vbscript:")):
                self.js_links.append(value)


def inert(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    assert parser.inline_scripts == 0
    assert parser.handlers == []
    assert parser.styles == 0
    assert parser.js_links == []
    return parser


def test_csrf_is_required_on_every_form(db_url: str, world: World) -> None:
    app = make_app(db_url, WTF_CSRF_ENABLED=True)
    try:
        client = app.test_client()
        refused = client.post("/login", data={"email": EMAILS["op_a"], "password": PASSWORD})
        assert refused.status_code == 400
        assert "CSRF" in refused.get_data(as_text=True)
        token = csrf_token(client)
        ok = client.post(
            "/login", data={"email": EMAILS["op_a"], "password": PASSWORD, "csrf_token": token}
        )
        assert ok.status_code == 302
        match = world.matches["a"]
        for path, data in (
            (f"/review/{match}/decide", {"action": "approve"}),
            ("/review/bulk", {"action": "approve", "confirmed": "1", "ids": str(match)}),
            ("/allowlist", {"publisher_id": str(world.publishers["a"]), "domain": "x.example"}),
            (f"/allowlist/{world.entries['a']}/delete", {}),
            (f"/sites/{world.site_id}/crawl", {}),
            (f"/notices/{world.notices['a']}/actions", {"action": "close"}),
            ("/logout", {}),
        ):
            response = client.post(path, data=data)
            assert response.status_code == 400, path
        with world.db.connection() as conn:
            row = conn.execute("select review_state from matches where id = %s", (match,))
            assert row.fetchone() == ("pending",)
            assert conn.execute("select count(*) from allowlist_entries").fetchone() == (2,)
            notice = conn.execute("select state from notices where id = %s", (world.notices["a"],))
            assert notice.fetchone() == ("removed",)
            crawls = conn.execute("select count(*) from audit_log where action = 'site.crawl'")
            assert crawls.fetchone() == (0,)
        token = csrf_token(client, f"/review/{match}")
        decided = client.post(
            f"/review/{match}/decide", data={"action": "approve", "csrf_token": token}
        )
        assert decided.status_code == 303
        # The API authenticates with tokens and needs none.
        api = client.get(
            "/api/v1/works", headers={"Authorization": f"Bearer {world.tokens['op_a']}"}
        )
        assert api.status_code == 200
    finally:
        resources.close(app)


def test_scraped_and_entered_text_renders_inert(app: Flask, world: World, tmp_path: Path) -> None:
    with world.db.connection() as conn:
        conn.execute("update sites set name = %s where id = %s", (SCRIPT, world.site_id))
        conn.execute(
            "update sightings set page_url = %s, image_url = %s"
            " where id = (select sighting_id from matches where id = %s)",
            (JS_URL, "https://x.example/" + IMG, world.matches["a"]),
        )
        conn.execute(
            "update notice_items set infringing_url = %s where notice_id = %s",
            (JS_URL, world.notices["a"]),
        )
        conn.execute(
            "update matches set explanation = %s, scores = %s where id = %s",
            (SCRIPT, Jsonb({SCRIPT: 1}), world.matches["a"]),
        )
        conn.execute(
            "update notices set body_text = %s, subject = %s where id = %s",
            (SCRIPT, IMG, world.notices["a"]),
        )
        conn.execute(
            "update works set official_url = %s, identifiers = %s where id = %s",
            (JS_URL, Jsonb({"asin": SCRIPT}), world.works["a"]),
        )
    folder = tmp_path / "hostile"
    folder.mkdir()
    register_work(
        world.db,
        publisher=PUB_A,
        title=SCRIPT,
        sources=expand_paths([page_png(folder / f"{IMG[:3]}.png", "hostile", 1)]),
    )
    # A failed login with a hostile "email" lands in the audit log, which admins read.
    app.test_client().post("/login", data={"email": SCRIPT, "password": "x"})
    client = client_for(app, "admin")
    pages = [
        "/",
        "/works",
        f"/works/{world.works['a']}",
        "/review?state=all",
        f"/review/{world.matches['a']}",
        "/notices",
        f"/notices/{world.notices['a']}",
        "/sites",
        f"/sites/{world.site_id}",
        f"/sites/{world.site_id}/edit",
        "/allowlist",
        "/audit",
        "/users",
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        inert(html)
        assert "<script>alert" not in html, path
        assert "onerror=alert" not in html.replace("onerror=alert(2)&gt;", ""), path
    review = client.get(f"/review/{world.matches['a']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in review
    assert JS_URL in review  # shown as text...
    assert f'href="{JS_URL}"' not in review  # ...never as a link


def test_pages_carry_no_inline_script_or_style(app: Flask, world: World) -> None:
    client = client_for(app, "admin")
    for path in (
        "/",
        "/works",
        "/works/new",
        f"/works/{world.works['a']}",
        "/allowlist",
        "/review",
        f"/review/{world.matches['a']}",
        "/notices",
        f"/notices/{world.notices['a']}",
        "/lookup",
        "/sites",
        "/sites/new",
        "/users",
        "/audit",
    ):
        markup = inert(client.get(path).get_data(as_text=True))
        assert markup.script_tags == 1, path  # the one static app.js
    inert(app.test_client().get("/login").get_data(as_text=True))


def test_security_headers_on_every_response(app: Flask, world: World) -> None:
    client = client_for(app, "admin")
    token = {"Authorization": f"Bearer {world.tokens['admin']}"}
    responses = {
        "page": client.get("/"),
        "login": app.test_client().get("/login"),
        "redirect": app.test_client().get("/works"),
        "static": client.get("/static/app.css"),
        "404": client.get("/no/such/page"),
        "403": client_for(app, "pub_a").get("/users"),
        "api": app.test_client().get("/api/v1/works", headers=token),
        "api 401": app.test_client().get("/api/v1/works"),
    }
    for name, response in responses.items():
        response.close()
        assert response.headers["Content-Security-Policy"] == CSP, name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["Referrer-Policy"] == "same-origin", name
        assert response.headers["X-Frame-Options"] == "DENY", name
    for path in (
        f"/media/pages/{world.pages['a']}",
        f"/media/matches/{world.matches['a']}/image",
        f"/notices/{world.notices['a']}/body.html",
    ):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "sandbox" in policy and "default-src 'none'" in policy, path
        assert "script-src" not in policy, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_notice_html_is_only_shown_sandboxed(app: Flask, world: World) -> None:
    with world.db.connection() as conn:
        conn.execute(
            "update notices set body_html = %s where id = %s",
            ("<p>hi</p><script>alert(1)</script>", world.notices["a"]),
        )
    client = client_for(app, "pub_a")
    page = client.get(f"/notices/{world.notices['a']}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert re.search(r'<iframe class="notice-html" sandbox=""', page)
    body = client.get(f"/notices/{world.notices['a']}/body.html")
    assert body.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in body.headers["Content-Security-Policy"]


def test_hostile_evidence_is_never_served_as_a_document(app: Flask, world: World) -> None:
    payload = b"<html><body><script>alert(1)</script></body></html>"
    match = add_match(
        world,
        page_id=world.pages["a"],
        page_url="https://pirate.example/x",
        image_url="https://pirate.example/x.jpg",
        image=payload,
    )
    client = client_for(app, "pub_a")
    response = client.get(f"/media/matches/{match}/image")
    # Not decodable as an image: refused (with the admin's own error page), never echoed.
    assert response.status_code == 404
    assert b"alert(1)" not in response.data
    good = client.get(f"/media/matches/{world.matches['a']}/image")
    assert good.status_code == 200 and good.content_type == "image/jpeg"
    html = client.get(f"/media/matches/{world.matches['a']}/page.html.txt")
    assert html.content_type.startswith("text/plain")
    assert html.headers["Content-Disposition"].startswith("attachment")


def test_login_is_throttled_per_email_and_address(app: Flask, world: World) -> None:
    client = app.test_client()
    email = EMAILS["pub_a"]
    for _ in range(5):
        assert client.post("/login", data={"email": email, "password": "wrong"}).status_code == 401
    blocked = client.post("/login", data={"email": email, "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.get_data(as_text=True)
    # Another address, or another account from this address, is not locked out.
    other = app.test_client()
    elsewhere = other.post(
        "/login",
        data={"email": email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "192.0.2.9"},
    )
    assert elsewhere.status_code == 302
    assert (
        client.post("/login", data={"email": EMAILS["pub_b"], "password": PASSWORD}).status_code
        == 302
    )
    with world.db.connection() as conn:
        rows = conn.execute(
            "select remote_addr, details->>'email' from audit_log where action = 'login_failed'"
        ).fetchall()
        logins = conn.execute("select count(*) from audit_log where action = 'login'").fetchone()
    assert rows == [("127.0.0.1", email)] * 5
    assert logins == (2,)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/works?publisher=1", "/works?publisher=1"),
        ("/review/3?state=all", "/review/3?state=all"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("", "/"),
    ],
)
def test_next_redirects_stay_on_this_site(
    app: Flask, world: World, target: str, expected: str
) -> None:
    assert safe_next(target, "/") == expected
    response = app.test_client().post(
        "/login", data={"email": EMAILS["admin"], "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_sign_in_redirect_carries_the_page_asked_for(app: Flask, world: World) -> None:
    client = app.test_client()
    first = client.get(f"/works/{world.works['a']}?tab=pages")
    assert first.status_code == 302
    assert first.headers["Location"] == f"/login?next=/works/{world.works['a']}?tab%3Dpages"
    form = client.get(first.headers["Location"]).get_data(as_text=True)
    assert f'name="next" value="/works/{world.works["a"]}?tab=pages"' in form


def test_session_cookie_flags(db_url: str, world: World) -> None:
    development = create_app_default(db_url, DEBUG=True)
    production = create_app_default(db_url)
    try:
        for application, secure in ((development, False), (production, True)):
            response = application.test_client().post(
                "/login", data={"email": EMAILS["admin"], "password": PASSWORD}
            )
            cookie = response.headers["Set-Cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Lax" in cookie
            assert ("Secure" in cookie) is secure
    finally:
        resources.close(development)
        resources.close(production)


def create_app_default(db_url: str, **config: object) -> Flask:
    """The app as production builds it: no cookie or key overrides (CSRF off for brevity)."""
    return create_app({"MAMORU_DATABASE_URL": db_url, "WTF_CSRF_ENABLED": False, **config})


def test_secret_key_is_generated_once_and_private(db_url: str) -> None:
    first = create_app_default(db_url)
    second = create_app_default(db_url)
    path = get_settings().data_dir / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == path.read_text().strip()
    assert len(first.config["SECRET_KEY"]) >= 32


def test_deactivation_and_password_change_end_sessions(app: Flask, world: World) -> None:
    client = client_for(app, "pub_a")
    assert client.get("/works").status_code == 200
    set_password(world.db, EMAILS["pub_a"], "a brand new password")
    assert client.get("/works").status_code == 302
    login_client = app.test_client()
    assert (
        login_client.post(
            "/login", data={"email": EMAILS["op_a"], "password": PASSWORD}
        ).status_code
        == 302
    )
    set_active(world.db, world.users["op_a"], False, actor="test")
    assert login_client.get("/works").status_code == 302
    again = login_client.post("/login", data={"email": EMAILS["op_a"], "password": PASSWORD})
    assert again.status_code == 401


def test_logout_needs_post_and_ends_the_session(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, "admin")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_http_url_links_only_plain_web_urls() -> None:
    assert http_url("https://example.com/a?b=c") == "https://example.com/a?b=c"
    assert http_url("HTTP://example.com/") == "HTTP://example.com/"
    for bad in (
        JS_URL,
        " javascript:alert(1)",
        "data:text/html,x",
        "//evil",
        "/relative",
        "https://exa\nmple.com",
        None,
        3,
    ):
        assert http_url(bad) is None, bad
