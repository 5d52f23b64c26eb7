"""What a notice says, independent of the database and of any legal format.

The notice builder fills these from rows (publisher, recipient, approved matches, evidence);
``takedown.formats`` checks them against the law of the chosen format and renders them. Keeping
them plain frozen values means a notice can be validated, rendered, exported and compared in
tests without a database, and nothing downstream can alter what was approved.

The catalogue at the end lists, per format, every element the law requires and the phrases that
prove the templates still state it: the legal text lives in the templates, and this catalogue is
how a template that lost a statement is caught before anything is sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "ELEMENTS",
    "FORMATS",
    "STATEMENTS",
    "EvidenceRef",
    "NoticeContent",
    "NoticeFormat",
    "NoticeItem",
    "Recipient",
    "RecipientScope",
    "Sender",
    "Statement",
    "WorkKind",
    "WorkRef",
]

# Exactly the values of notices.format / recipients.notice_format.
NoticeFormat = Literal["dmca", "jp_provider", "eu_dsa"]
FORMATS: Final[tuple[NoticeFormat, ...]] = get_args(NoticeFormat)

# Exactly the values of recipients.scope.
RecipientScope = Literal["site_operator", "host", "cdn", "registrar", "platform", "other"]

# Exactly the values of works.kind.
WorkKind = Literal["volume", "chapter", "illustration", "photo", "other"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sender:
    """Who complains: the publisher (rights holder) and the agent organisation that signs.

    The signature is always the organisation's, never a creator's personal name: creators are
    exposed to harassment when their names travel to pirate operators.
    """

    publisher: str
    agent_organisation: str
    address: str
    email: str
    phone: str
    # ISO 3166-1 alpha-2; only the Lumen export uses it.
    country_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    name: str
    scope: RecipientScope
    # None when the recipient only takes notices through a web form.
    email: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkRef:
    """A protected work as the notice identifies it."""

    title: str
    kind: WorkKind = "volume"
    # (scheme, value) pairs such as ("ISBN", "978-4-00-000000-0"); a tuple keeps WorkRef
    # hashable, so items copying the same work group without an id.
    identifiers: tuple[tuple[str, str], ...] = ()
    # Where the work is lawfully offered: how a recipient verifies the claim.
    official_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceRef:
    # The evidence manifest's content address (its SHA-256), stable and tamper-evident.
    ref: str
    screenshot_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeItem:
    """One infringing image: where it is served, where it is shown, and what it copies."""

    image_url: str
    page_url: str
    work: WorkRef
    page_number: int | None = None
    evidence: tuple[EvidenceRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeContent:
    format: NoticeFormat
    # Language of the templates ("en", "ja"); each format exists in the languages of STATEMENTS.
    language: str
    date: dt.date
    # Stable per notice (e.g. "MAMORU-2026-000123") so replies and resends can be matched.
    reference: str
    sender: Sender
    recipient: Recipient
    items: tuple[NoticeItem, ...]

    @property
    def works(self) -> tuple[WorkRef, ...]:
        """Distinct works in the order their first item lists them."""
        return tuple(dict.fromkeys(item.work for item in self.items))

    @property
    def infringing_urls(self) -> tuple[str, ...]:
        """Every distinct URL the notice asks to remove (images and the pages showing them)."""
        urls: dict[str, None] = {}
        for item in self.items:
            urls.setdefault(item.image_url)
            urls.setdefault(item.page_url)
        return tuple(urls)


@dataclass(frozen=True, slots=True)
class Statement:
    """A phrase that must appear verbatim (modulo whitespace) in the rendered text and HTML."""

    element: str
    text: str


# Per format: element code -> the name of the legal requirement, as problems cite it.
ELEMENTS: Final[dict[NoticeFormat, dict[str, str]]] = {
    "dmca": {
        "signature": "DMCA 512(c)(3)(A)(i): signature of the authorised agent",
        "work": "DMCA 512(c)(3)(A)(ii): identification of the copyrighted work",
        "infringing_material": (
            "DMCA 512(c)(3)(A)(iii): identification and location of the infringing material"
        ),
        "contact": "DMCA 512(c)(3)(A)(iv): contact information of the complaining party",
        "good_faith": "DMCA 512(c)(3)(A)(v): good-faith belief statement",
        "accuracy_authority": (
            "DMCA 512(c)(3)(A)(vi): accuracy and authority statement under penalty of perjury"
        ),
    },
    "jp_provider": {
        "address": "送信防止措置依頼 申出者の住所 (requester's address)",
        "name": "送信防止措置依頼 申出者の氏名 (requester's name)",
        "contact": "送信防止措置依頼 申出者の連絡先 (requester's contact details)",
        "infringing_info": "送信防止措置依頼 侵害情報の特定 (location of the infringing material)",
        "work_description": "送信防止措置依頼 著作物等の説明 (description of the work)",
        "right": "送信防止措置依頼 侵害されたとする権利 (right infringed)",
        "reason": "送信防止措置依頼 侵害されたとする理由 (why it infringes: no licence)",
        "manner": "送信防止措置依頼 侵害の態様 (manner of infringement)",
        "verification": "送信防止措置依頼 権利侵害を確認可能な方法 (how to verify)",
        "truth": "送信防止措置依頼 事実に相違ない旨 (statement that the facts are true)",
        "signature": "送信防止措置依頼 記名 (name of the signing agent organisation)",
    },
    "eu_dsa": {
        "explanation": "DSA Art. 16(2)(a): substantiated explanation of why the content is illegal",
        "location": "DSA Art. 16(2)(b): exact electronic location of the content",
        "notifier": "DSA Art. 16(2)(c): name and email address of the notifier",
        "bona_fide": "DSA Art. 16(2)(d): bona fide statement",
    },
}

# Per (format, language): what the rendered notice must say. Each text is kept on one line in
# the templates so that a test can delete it there and watch validation fail.
STATEMENTS: Final[dict[tuple[NoticeFormat, str], tuple[Statement, ...]]] = {
    ("dmca", "en"): (
        Statement("signature", "Electronic signature of the authorized agent"),
        Statement("work", "Identification of the copyrighted works"),
        Statement("infringing_material", "Identification and location of the infringing material"),
        Statement("contact", "Contact information of the complaining party"),
        Statement(
            "good_faith",
            "has a good faith belief that use of the material in the manner complained of is not"
            " authorized by the copyright owner, its agent, or the law",
        ),
        Statement("accuracy_authority", "the information in this notification is accurate"),
        Statement("accuracy_authority", "under penalty of perjury"),
        Statement(
            "accuracy_authority",
            "is authorized to act on behalf of the owner of an exclusive right that is allegedly"
            " infringed",
        ),
    ),
    ("jp_provider", "ja"): (
        Statement("address", "申出者の住所"),
        Statement("name", "申出者の氏名"),
        Statement("contact", "申出者の連絡先"),
        Statement("infringing_info", "侵害情報の特定のための情報"),
        Statement("work_description", "著作物等の説明"),
        Statement("right", "侵害されたとする権利"),
        Statement("right", "公衆送信権（送信可能化権を含む。）"),  # noqa: RUF001 (the form's own brackets)
        Statement("reason", "侵害されたとする理由"),
        Statement("reason", "許諾していません"),
        Statement("manner", "侵害の態様"),
        Statement("manner", "著作物等の全部又は一部を丸写ししたファイル"),
        Statement("verification", "権利侵害を確認可能な方法"),
        Statement("verification", "比較することにより、権利侵害を確認することが可能です"),
        Statement("truth", "上記内容が、事実に相違ないことを証します"),
        Statement("signature", "（記名）"),  # noqa: RUF001 (the form's own brackets)
    ),
    ("eu_dsa", "en"): (
        Statement("explanation", "Explanation of why the content is illegal"),
        Statement("explanation", "without the authorisation of the rightsholder"),
        Statement("explanation", "Articles 2 and 3 of Directive 2001/29/EC"),
        Statement("location", "Exact electronic location of the illegal content"),
        Statement("notifier", "Name and email address of the notifier"),
        Statement(
            "bona_fide",
            "bona fide belief that the information and allegations contained in this notice are"
            " accurate and complete",
        ),
    ),
}
