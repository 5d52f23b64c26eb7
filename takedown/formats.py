"""Legal notice formats: refuse an incomplete notice, render a complete one.

A takedown notice that lacks an element the law asks for can be ignored by its recipient (and a
DMCA notice that does not comply substantially does not even count as notice), so nothing is
rendered for sending until every element is there. ``validate`` checks two things: the data each
element needs (who signs, how to contact them, which URLs, which works) and that the rendered
text and HTML still carry every statement of ``STATEMENTS`` and every URL, so a template edit
that drops a sentence is caught here rather than by a recipient's lawyer.

Templates are Jinja2 files shipped in ``takedown/templates``: ``<format>.<language>.subject.j2``,
``.txt.j2`` (no escaping: plain text shows pirate-supplied strings verbatim) and ``.html.j2``
(autoescaped: every URL and title comes from pirate pages or publishers and is untrusted).
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import jinja2

from takedown.notice_content import (
    ELEMENTS,
    FORMATS,
    STATEMENTS,
    NoticeContent,
    NoticeFormat,
    NoticeItem,
)

__all__ = [
    "NoticeIncomplete",
    "Problem",
    "RenderedNotice",
    "default_environment",
    "make_environment",
    "render",
    "template_names",
    "validate",
]

# Problems that do not belong to one legal element of one format.
_NOTICE_LABELS: Final = {
    "format": "Notice format",
    "language": "Notice language",
    "reference": "Notice reference",
    "publisher": "Rights holder",
    "recipient": "Recipient",
    "evidence": "Evidence",
    "templates": "Notice templates",
}

# Per format: (element, Sender attribute, what the problem says when it is empty).
_SENDER_REQUIREMENTS: Final[dict[NoticeFormat, tuple[tuple[str, str, str], ...]]] = {
    "dmca": (
        ("signature", "agent_organisation", "is missing (the sender has no agent organisation)"),
        ("contact", "address", "lacks the postal address"),
        ("contact", "phone", "lacks the telephone number"),
        ("contact", "email", "lacks the email address"),
    ),
    "jp_provider": (
        ("address", "address", "is missing (the sender has no postal address)"),
        ("name", "agent_organisation", "is missing (the sender has no agent organisation)"),
        ("contact", "phone", "lacks the telephone number"),
        ("contact", "email", "lacks the email address"),
        ("signature", "agent_organisation", "is missing (the sender has no agent organisation)"),
    ),
    "eu_dsa": (
        ("notifier", "agent_organisation", "lacks the name (the sender has no agent organisation)"),
        ("notifier", "email", "lacks the email address"),
    ),
}

# Per format: the elements that item problems belong to (URLs, work title, verification).
_ITEM_ELEMENTS: Final[dict[NoticeFormat, tuple[str, str, str | None]]] = {
    "dmca": ("infringing_material", "work", None),
    "jp_provider": ("infringing_info", "work_description", "verification"),
    "eu_dsa": ("location", "explanation", None),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One missing or defective element; ``element`` is stable ("dmca.signature"), for code."""

    element: str
    message: str

    def __str__(self) -> str:
        return self.message


class NoticeIncomplete(Exception):
    """Raised instead of rendering, so a partial notice can never reach a recipient."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        listing = "\n".join(f"- {problem.message}" for problem in self.problems)
        super().__init__(f"the notice is incomplete:\n{listing}")


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """Stored as notices.subject / body_text / body_html, so what was sent can be shown later."""

    subject: str
    text: str
    html: str


def template_names(fmt: NoticeFormat, language: str) -> tuple[str, str, str]:
    """Subject, plain-text and HTML template names: a translation is three new files."""
    stem = f"{fmt}.{language}"
    return f"{stem}.subject.j2", f"{stem}.txt.j2", f"{stem}.html.j2"


def make_environment(loader: jinja2.BaseLoader | None = None) -> jinja2.Environment:
    """The one place escaping is decided: on for ``*.html.j2``, off for everything else."""
    environment = jinja2.Environment(
        loader=loader or jinja2.PackageLoader("takedown", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=True, default=False
        ),
        # A misspelt variable must fail loudly, not render an empty legal statement.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["jp_date"] = _jp_date
    return environment


@functools.cache
def default_environment() -> jinja2.Environment:
    """One per process: Jinja2 caches compiled templates in its environment."""
    return make_environment()


def validate(
    content: NoticeContent, *, environment: jinja2.Environment | None = None
) -> list[Problem]:
    """Every problem that keeps this notice from being sent; empty when it is complete."""
    return _check(content, environment or default_environment())[0]


def render(
    content: NoticeContent, *, environment: jinja2.Environment | None = None
) -> RenderedNotice:
    """The notice as sent, or ``NoticeIncomplete`` listing everything that is missing."""
    problems, rendered = _check(content, environment or default_environment())
    if problems or rendered is None:
        raise NoticeIncomplete(problems)
    return rendered


def _check(
    content: NoticeContent, environment: jinja2.Environment
) -> tuple[list[Problem], RenderedNotice | None]:
    fmt = content.format
    if fmt not in FORMATS:
        known = ", ".join(FORMATS)
        return [_notice_problem("format", f"is unknown: {fmt!r} is not one of {known}")], None
    problems = list(_data_problems(content))
    if (fmt, content.language) not in STATEMENTS:
        available = ", ".join(sorted(lang for f, lang in STATEMENTS if f == fmt))
        problems.append(
            _notice_problem(
                "language",
                f"is not available: {fmt} has no templates in {content.language!r}"
                f" (available: {available})",
            )
        )
        return problems, None
    try:
        rendered = _render_unchecked(content, environment)
    except jinja2.TemplateError as exc:
        problems.append(_notice_problem("templates", f"fail to render: {exc}"))
        return problems, None
    problems.extend(_output_problems(content, rendered))
    return problems, rendered


def _data_problems(content: NoticeContent) -> Iterator[Problem]:
    fmt = content.format
    sender = content.sender
    if not content.reference.strip():
        yield _notice_problem("reference", "is missing")
    if not sender.publisher.strip():
        yield _notice_problem("publisher", "is missing (no publisher the notice is sent for)")
    if not content.recipient.name.strip():
        yield _notice_problem("recipient", "has no name")
    for element, attribute, missing in _SENDER_REQUIREMENTS[fmt]:
        value: str = getattr(sender, attribute)
        if not value.strip():
            yield _problem(fmt, element, missing)
        elif attribute == "email" and not _is_email(value):
            yield _problem(fmt, element, f"has an invalid email address {_show(value)}")
    location, work_element, verification = _ITEM_ELEMENTS[fmt]
    if not content.items:
        yield _problem(fmt, location, "is missing: the notice lists no infringing URL")
    for number, item in enumerate(content.items, start=1):
        yield from _item_problems(fmt, number, item, location, work_element, verification)


def _item_problems(
    fmt: NoticeFormat,
    number: int,
    item: NoticeItem,
    location: str,
    work_element: str,
    verification: str | None,
) -> Iterator[Problem]:
    where = f"item {number}"
    for kind, url in (("image", item.image_url), ("page", item.page_url)):
        if not _is_web_url(url):
            yield _problem(
                fmt,
                location,
                f"is defective: {where}'s {kind} URL {_show(url)} is not an http(s) URL",
            )
    work = item.work
    if not work.title.strip():
        yield _problem(
            fmt, work_element, f"is missing for {where} ({_show(item.image_url)}): no work title"
        )
    if work.official_url is not None and not _is_web_url(work.official_url):
        yield _problem(
            fmt,
            verification or work_element,
            f"is defective: {where}'s official source {_show(work.official_url)}"
            " is not an http(s) URL",
        )
    if verification and not work.official_url and not work.identifiers:
        yield _problem(
            fmt,
            verification,
            f"is missing for {where} ({_show(item.image_url)}): the work has neither an"
            " official source URL nor an identifier such as an ISBN to compare the copy with",
        )
    for evidence in item.evidence:
        if not evidence.ref.strip():
            yield _notice_problem(
                "evidence", f"is defective: {where} has an empty evidence reference"
            )
        if evidence.screenshot_url is not None and not _is_web_url(evidence.screenshot_url):
            yield _notice_problem(
                "evidence",
                f"is defective: {where}'s screenshot URL {_show(evidence.screenshot_url)}"
                " is not an http(s) URL",
            )


def _output_problems(content: NoticeContent, rendered: RenderedNotice) -> Iterator[Problem]:
    fmt = content.format
    outputs = (("text", _normalise(rendered.text)), ("HTML", _normalise(_visible(rendered.html))))
    for statement in STATEMENTS[(fmt, content.language)]:
        wanted = _normalise(statement.text)
        for kind, output in outputs:
            if wanted not in output:
                yield _problem(
                    fmt,
                    statement.element,
                    f"is missing from the rendered {kind}"
                    f" (the template does not say “{statement.text}”)",
                )
    location = _ITEM_ELEMENTS[fmt][0]
    for url in content.infringing_urls:
        for kind, output in outputs:
            if _is_web_url(url) and url not in output:
                yield _problem(
                    fmt, location, f"is incomplete: the rendered {kind} does not list {_show(url)}"
                )


def _render_unchecked(content: NoticeContent, environment: jinja2.Environment) -> RenderedNotice:
    subject_name, text_name, html_name = template_names(content.format, content.language)
    context: dict[str, Any] = {
        "notice": content,
        "sender": content.sender,
        "recipient": content.recipient,
        "items": content.items,
        "works": content.works,
        "url_count": len(content.infringing_urls),
    }
    subject = _one_line(environment.get_template(subject_name).render(context))
    text = environment.get_template(text_name).render(context)
    html = environment.get_template(html_name).render(context, subject=subject)
    return RenderedNotice(subject=subject, text=text, html=html)


# What a reader of the HTML sees. Regular expressions suffice (and cost a fifth of a parser)
# because the HTML is the templates' own: every scraped value in it went through autoescape, so
# no "<" or ">" appears outside markup.
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HIDDEN = re.compile(r"<(script|style|title)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_TAG = re.compile(r"<[^>]*>")


def _visible(markup: str) -> str:
    """Text nodes with entities decoded; no tags, comments, scripts, styles or title."""
    return html.unescape(_TAG.sub("", _HIDDEN.sub("", _COMMENT.sub("", markup))))


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _one_line(text: str) -> str:
    # A subject becomes a mail header: no line breaks or control characters may survive.
    kept = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(kept.split())


def _is_web_url(url: str | None) -> bool:
    # Whitespace would make the plain-text listing ambiguous; other schemes are not web content
    # a provider can remove, and javascript: in an href would be live in the HTML notice.
    if not url or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain) and not any(ch.isspace() for ch in value)


def _show(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _jp_date(value: dt.date) -> str:
    return f"{value.year}年{value.month}月{value.day}日"


def _problem(fmt: NoticeFormat, element: str, detail: str) -> Problem:
    return Problem(f"{fmt}.{element}", f"{ELEMENTS[fmt][element]} {detail}")


def _notice_problem(element: str, detail: str) -> Problem:
    return Problem(f"notice.{element}", f"{_NOTICE_LABELS[element]} {detail}")
