"""Notice formats: every legal element is checked, nothing partial renders, pirate text is inert.

Pure: no database, no network. ``make_notice`` builds a complete notice; each test takes one
thing away (or breaks a template) and expects the element it belongs to be named.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, cast

import jinja2
import markupsafe
import pytest

from takedown.formats import (
    NoticeIncomplete,
    Problem,
    make_environment,
    render,
    template_names,
    validate,
)
from takedown.notice_content import (
    ELEMENTS,
    FORMATS,
    STATEMENTS,
    EvidenceRef,
    NoticeContent,
    NoticeFormat,
    NoticeItem,
    Recipient,
    Sender,
    WorkRef,
)

LANGUAGE: dict[NoticeFormat, str] = {"dmca": "en", "jp_provider": "ja", "eu_dsa": "en"}

VOLUME = WorkRef(
    title="Example, Vol. 1",
    identifiers=(("ISBN", "978-4-00-000000-0"),),
    official_url="https://books.example.com/vol1?format=ebook&lang=ja",
)
COVER = WorkRef(title="Cover art", kind="illustration", identifiers=(("JAN", "4900000000000"),))
DASH = "\N{EN DASH}"
PAGE_TWO_JA = "「Example, Vol. 1」（2ページ目）"  # noqa: RUF001
EVIDENCE = EvidenceRef(ref="a" * 64, screenshot_url="https://evidence.example/ab/cd/shot.png")


def make_notice(fmt: NoticeFormat = "dmca", **changes: Any) -> NoticeContent:
    notice = NoticeContent(
        format=fmt,
        language=LANGUAGE[fmt],
        date=dt.date(2026, 3, 1),
        reference="MAMORU-2026-000123",
        sender=Sender(
            publisher="Example Comics",
            agent_organisation="Example Comics Rights Office",
            address="1-2-3 Kanda\nChiyoda-ku, Tokyo 101-0051\nJapan",
            email="rights@example.com",
            phone="+81-3-0000-0000",
            country_code="JP",
        ),
        recipient=Recipient(name="Pirate Host Ltd", scope="host", email="abuse@host.example"),
        items=(
            NoticeItem(
                image_url="https://cdn.pirate.example/v1/001.jpg",
                page_url="https://pirate.example/read/example-1?p=1",
                work=VOLUME,
                page_number=1,
                evidence=(EVIDENCE,),
            ),
            NoticeItem(
                image_url="https://cdn.pirate.example/v1/002.jpg",
                page_url="https://pirate.example/read/example-1?p=2",
                work=VOLUME,
                page_number=2,
            ),
            NoticeItem(
                image_url="https://cdn.pirate.example/cover.webp",
                page_url="https://pirate.example/gallery?a=1&b=2",
                work=COVER,
            ),
        ),
    )
    return dataclasses.replace(notice, **changes)


Mutation = Callable[[NoticeContent], NoticeContent]


def sender(**changes: Any) -> Mutation:
    return lambda n: dataclasses.replace(n, sender=dataclasses.replace(n.sender, **changes))


def item(index: int, **changes: Any) -> Mutation:
    def mutate(n: NoticeContent) -> NoticeContent:
        items = list(n.items)
        items[index] = dataclasses.replace(items[index], **changes)
        return dataclasses.replace(n, items=tuple(items))

    return mutate


def work(index: int, **changes: Any) -> Mutation:
    def mutate(n: NoticeContent) -> NoticeContent:
        return item(index, work=dataclasses.replace(n.items[index].work, **changes))(n)

    return mutate


def no_items(n: NoticeContent) -> NoticeContent:
    return dataclasses.replace(n, items=())


# (format, element, what to take away, a phrase the problem must contain)
DATA_REMOVALS: list[tuple[NoticeFormat, str, Mutation, str]] = [
    ("dmca", "signature", sender(agent_organisation=""), "agent organisation"),
    ("dmca", "work", work(0, title=" "), "item 1"),
    ("dmca", "work", work(0, official_url="javascript:alert(1)"), "javascript:alert(1)"),
    ("dmca", "infringing_material", no_items, "no infringing URL"),
    ("dmca", "infringing_material", item(1, image_url="/v1/002.jpg"), "/v1/002.jpg"),
    ("dmca", "contact", sender(address=""), "postal address"),
    ("dmca", "contact", sender(phone="  "), "telephone number"),
    ("dmca", "contact", sender(email=""), "email address"),
    ("dmca", "contact", sender(email="rights at example"), "invalid email"),
    ("jp_provider", "address", sender(address=""), "postal address"),
    ("jp_provider", "name", sender(agent_organisation=""), "agent organisation"),
    ("jp_provider", "contact", sender(phone=""), "telephone number"),
    ("jp_provider", "contact", sender(email=""), "email address"),
    ("jp_provider", "infringing_info", no_items, "no infringing URL"),
    ("jp_provider", "infringing_info", item(2, page_url="javascript:alert(1)"), "page URL"),
    ("jp_provider", "work_description", work(2, title=""), "item 3"),
    ("jp_provider", "verification", work(2, identifiers=()), "item 3"),
    ("jp_provider", "verification", work(0, official_url="ftp://books.example.com/"), "ftp://"),
    ("jp_provider", "signature", sender(agent_organisation=""), "agent organisation"),
    ("eu_dsa", "explanation", work(1, title=""), "item 2"),
    ("eu_dsa", "location", no_items, "no infringing URL"),
    ("eu_dsa", "location", item(0, image_url="https://cdn.pirate.example/a b.jpg"), "a b.jpg"),
    ("eu_dsa", "notifier", sender(agent_organisation=""), "name"),
    ("eu_dsa", "notifier", sender(email=""), "email address"),
]


def _case_id(case: tuple[NoticeFormat, str, Mutation, str]) -> str:
    return f"{case[0]}-{case[1]}-{case[3]}"


def problems_for(problems: list[Problem], element: str) -> list[Problem]:
    return [p for p in problems if p.element == element]


def environment_without(name: str, text: str) -> jinja2.Environment:
    """The shipped templates, except that ``name`` no longer says ``text``."""
    shipped = jinja2.PackageLoader("takedown", "templates")
    source = shipped.get_source(make_environment(), name)[0]
    assert text in source, f"{name} must state {text!r} on one line"
    broken = jinja2.DictLoader({name: source.replace(text, "")})
    return make_environment(jinja2.ChoiceLoader([broken, shipped]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_complete_notice_validates_and_renders(fmt: NoticeFormat) -> None:
    notice = make_notice(fmt)
    assert validate(notice) == []
    rendered = render(notice)
    assert rendered.text.endswith("\n")
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{LANGUAGE[fmt]}">' in rendered.html
    assert "MAMORU-2026-000123" in rendered.subject
    assert "Example Comics Rights Office" in rendered.text


def test_subject_lines() -> None:
    assert render(make_notice("dmca")).subject == (
        f"DMCA notice of copyright infringement {DASH} Example Comics {DASH} 6 URLs"
        " [MAMORU-2026-000123]"
    )
    assert render(make_notice("jp_provider")).subject.startswith(
        "送信防止措置依頼（著作権侵害）– Example Comics – URL 6件"  # noqa: RUF001
    )
    assert render(make_notice("eu_dsa")).subject.startswith(
        f"Notice of illegal content under Art. 16 DSA {DASH} copyright infringement {DASH}"
        " Example Comics"
    )
    single = make_notice("dmca", items=make_notice().items[:1])
    assert f"{DASH} 2 URLs" in render(single).subject  # the image and the page showing it


def test_subject_is_one_header_line_whatever_the_publisher_name() -> None:
    notice = sender(publisher="Evil\r\nBcc: victim@example.com\x00")(make_notice())
    subject = render(notice).subject
    assert "\r" not in subject and "\n" not in subject and "\x00" not in subject
    assert "Evil Bcc: victim@example.com" in subject


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_url_is_in_every_output(fmt: NoticeFormat) -> None:
    notice = make_notice(fmt)
    rendered = render(notice)
    urls = [*notice.infringing_urls, VOLUME.official_url or "", EVIDENCE.screenshot_url or ""]
    assert len(notice.infringing_urls) == 6
    for url in urls:
        assert url in rendered.text
        assert str(markupsafe.escape(url)) in rendered.html


@pytest.mark.parametrize("fmt", FORMATS)
def test_listing_names_work_page_source_and_evidence(fmt: NoticeFormat) -> None:
    rendered = render(make_notice(fmt))
    page_two = PAGE_TWO_JA if fmt == "jp_provider" else '"Example, Vol. 1", page 2'
    for output in (rendered.text, rendered.html):
        assert EVIDENCE.ref in output
        assert "978-4-00-000000-0" in output and "4900000000000" in output
    assert page_two in rendered.text


@pytest.mark.parametrize(
    ("fmt", "element", "mutate", "mention"), DATA_REMOVALS, ids=map(_case_id, DATA_REMOVALS)
)
def test_missing_data_is_reported_by_element(
    fmt: NoticeFormat, element: str, mutate: Mutation, mention: str
) -> None:
    notice = mutate(make_notice(fmt))
    problems = problems_for(validate(notice), f"{fmt}.{element}")
    assert problems, validate(notice)
    assert any(mention in p.message for p in problems), problems
    assert all(p.message.startswith(ELEMENTS[fmt][element]) for p in problems)
    with pytest.raises(NoticeIncomplete) as raised:
        render(notice)
    assert problems[0].message in str(raised.value)


STATEMENT_CASES = [
    (fmt, name, statement)
    for (fmt, language), statements in STATEMENTS.items()
    for statement in statements
    for name in template_names(fmt, language)[1:]
]


@pytest.mark.parametrize(
    ("fmt", "name", "statement"),
    STATEMENT_CASES,
    ids=[f"{name}-{s.element}-{s.text[:24]}" for _, name, s in STATEMENT_CASES],
)
def test_statement_deleted_from_a_template_fails_validation(
    fmt: NoticeFormat, name: str, statement: Any
) -> None:
    environment = environment_without(name, statement.text)
    notice = make_notice(fmt)
    problems = problems_for(validate(notice, environment=environment), f"{fmt}.{statement.element}")
    assert any(statement.text in p.message for p in problems), problems
    with pytest.raises(NoticeIncomplete):
        render(notice, environment=environment)


def test_every_element_of_every_format_is_exercised() -> None:
    covered = {(fmt, element) for fmt, element, _, _ in DATA_REMOVALS}
    covered |= {(fmt, s.element) for (fmt, _), statements in STATEMENTS.items() for s in statements}
    assert covered == {(fmt, element) for fmt in FORMATS for element in ELEMENTS[fmt]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_deleted_listing_fails_validation(fmt: NoticeFormat) -> None:
    # The listing is an include; without it no URL is in the notice and every one is reported.
    _, text_name, _ = template_names(fmt, LANGUAGE[fmt])
    include = '{% include "_items.en.txt.j2" %}'
    if fmt == "jp_provider":
        source = jinja2.PackageLoader("takedown", "templates").get_source(
            make_environment(), text_name
        )[0]
        include = source[
            source.index("{% for item in items %}") : source.index("5. 著作物等の説明")
        ]
    environment = environment_without(text_name, include)
    notice = make_notice(fmt)
    location = {
        "dmca": "infringing_material",
        "jp_provider": "infringing_info",
        "eu_dsa": "location",
    }
    problems = problems_for(validate(notice, environment=environment), f"{fmt}.{location[fmt]}")
    missing = {
        url for url in notice.infringing_urls if any(repr(url) in p.message for p in problems)
    }
    assert missing == set(notice.infringing_urls)


@pytest.mark.parametrize(
    ("mutate", "element"),
    [
        (lambda n: dataclasses.replace(n, reference=""), "notice.reference"),
        (sender(publisher=""), "notice.publisher"),
        (
            lambda n: dataclasses.replace(n, recipient=dataclasses.replace(n.recipient, name="")),
            "notice.recipient",
        ),
        (item(0, evidence=(EvidenceRef(ref=""),)), "notice.evidence"),
        (
            item(0, evidence=(EvidenceRef(ref="b" * 64, screenshot_url="file:///etc/passwd"),)),
            "notice.evidence",
        ),
        (lambda n: dataclasses.replace(n, language="fr"), "notice.language"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_notice_level_problems(fmt: NoticeFormat, mutate: Mutation, element: str) -> None:
    notice = mutate(make_notice(fmt))
    assert problems_for(validate(notice), element)
    with pytest.raises(NoticeIncomplete):
        render(notice)


def test_unknown_format_is_refused() -> None:
    notice = make_notice(format=cast(NoticeFormat, "cease_and_desist"))
    assert [p.element for p in validate(notice)] == ["notice.format"]
    with pytest.raises(NoticeIncomplete, match="cease_and_desist"):
        render(notice)


def test_unsupported_language_names_the_available_ones() -> None:
    [problem] = validate(make_notice("jp_provider", language="en"))
    assert problem.element == "notice.language"
    assert "available: ja" in problem.message


def test_incomplete_notice_lists_every_problem() -> None:
    notice = sender(address="", email="", agent_organisation="")(make_notice("dmca"))
    problems = validate(notice)
    assert {p.element for p in problems} == {"dmca.signature", "dmca.contact"}
    assert len(problems) == 3
    with pytest.raises(NoticeIncomplete) as raised:
        render(notice)
    assert raised.value.problems == tuple(problems)
    for problem in problems:
        assert problem.message in str(raised.value)
    assert "DMCA 512(c)(3)(A)(i): signature of the authorised agent is missing" in str(raised.value)


def test_broken_template_is_a_problem_not_a_crash() -> None:
    shipped = jinja2.PackageLoader("takedown", "templates")
    broken = jinja2.DictLoader({"dmca.en.txt.j2": "{{ notice.no_such_field }}"})
    environment = make_environment(jinja2.ChoiceLoader([broken, shipped]))
    problems = validate(make_notice("dmca"), environment=environment)
    assert [p.element for p in problems] == ["notice.templates"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


HOSTILE_TITLE = "<script>alert(1)</script> & Co"
HOSTILE_URL = "https://pirate.example/read?id=\"><svg/onload=alert(1)>'&x=1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_untrusted_text_is_inert_in_html_and_verbatim_in_text(fmt: NoticeFormat) -> None:
    notice = work(0, title=HOSTILE_TITLE)(item(0, page_url=HOSTILE_URL)(make_notice(fmt)))
    notice = sender(publisher="Ex <b>Comics</b>")(notice)
    rendered = render(notice)
    assert HOSTILE_TITLE in rendered.text and HOSTILE_URL in rendered.text
    assert "Ex <b>Comics</b>" in rendered.text
    assert "<script" not in rendered.html and "<svg" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in rendered.html
    assert str(markupsafe.escape(HOSTILE_URL)) in rendered.html
    parser = _Tags()
    parser.feed(rendered.html)
    assert not {"script", "svg", "b"} & set(parser.tags)
    assert not [name for name, _ in parser.attributes if name.startswith("on")]
    assert HOSTILE_URL in [value for name, value in parser.attributes if name == "href"]


def test_japanese_notice_follows_the_form() -> None:
    rendered = render(make_notice("jp_provider"))
    for output in (rendered.text, rendered.html):
        assert "Pirate Host Ltd 御中" in output
        assert "2026年3月1日" in output
        assert "著作物等の送信を防止する措置の申出について" in output
        assert "公衆送信権" in output and "許諾していません" in output
        assert "事実に相違ないことを証します" in output
        assert "Example Comics Rights Office（記名）" in output  # noqa: RUF001
    headings = ["申出者の住所", "申出者の氏名", "申出者の連絡先", "侵害情報の特定のための情報"]
    headings += ["著作物等の説明", "侵害されたとする権利", "侵害されたとする理由", "侵害の態様"]
    headings += ["権利侵害を確認可能な方法"]
    positions = [rendered.text.index(f"{n}. {h}") for n, h in enumerate(headings, start=1)]
    assert positions == sorted(positions)


def test_templates_ship_with_the_package() -> None:
    shipped = set(jinja2.PackageLoader("takedown", "templates").list_templates())
    for fmt, language in STATEMENTS:
        assert set(template_names(fmt, language)) <= shipped


def test_the_validator_reads_only_what_a_reader_of_the_html_sees() -> None:
    from takedown.formats import _visible

    markup = (
        "<!DOCTYPE html><html><head><title>Hidden title</title>"
        "<style>p { color: red }</style></head><body><!-- a statement in a comment -->"
        '<p class="x">I have a good faith belief &amp; sign &lt;here&gt;</p>'
        "<SCRIPT type='text/javascript'>var statement = 1;</SCRIPT><a href='https://x.test/'>"
        "https://x.test/</a></body></html>"
    )
    seen = _visible(markup)
    assert seen == "I have a good faith belief & sign <here>https://x.test/"
