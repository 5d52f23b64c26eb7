"""Rechecking one sent notice: is each reported copy still served, and what follows from it.

For each item not yet removed, the image URL is fetched and judged (:mod:`takedown.probe`), as
the crawler fetched it: with its page as Referer and the site's headers and cookies. An item is
recorded (one ``rechecks`` row each) as:

- ``still_up``: the image URL serves the very bytes the crawl saw;
- ``changed``: the copy is still served, but not as seen: other bytes that still match the page
  at the image URL, or the copy found at another URL of the site (``moved_to``);
- ``gone``: the image URL no longer serves the copy (404/410/451, a placeholder, a "removed"
  page) *and* neither the page's own images (on the site's domains, data: images included)
  nor the site's other sightings of the copy serve it. A 404 on one URL while the same copy
  lives at another is not a removal;
- ``error``: anything on the way that cannot tell (see :mod:`takedown.probe`). Never counted
  as removed; the round is repeated after ``FollowupPolicy.retry_after``.

Then: an item ``gone`` becomes ``removed`` (with ``removed_at``), ``still_up``/``changed`` makes
it ``still_up``. When every item of the notice is removed the notice moves to ``removed`` (the
event time-to-removal is measured to) and the removal is carried back to the notices it
escalated. When the recipient's SLA has passed and this round saw content still up, the notice
moves to ``still_up`` and :attr:`RecheckReport.escalation_due` is set.

Fetching happens outside any transaction; a session advisory lock per notice keeps two workers
from rechecking the same notice at once (a dead worker's connection, and lock, goes with it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import Connection, errors
from psycopg.types.json import Jsonb

from crawler.netguard import AddressPolicy
from store.db import Database
from takedown.compose import host_of
from takedown.followup import (
    DEFAULT_POLICY,
    OPEN_STATES,
    RECHECKED_EVENT,
    FollowupPolicy,
    due_rechecks,
)
from takedown.probe import Judgement, PageScorer, Prober, Seen, SiteRequests, judge, judge_body
from takedown.recipients import registrable_domain
from takedown.states import transition

__all__ = ["ItemCheck", "RecheckReport", "recheck_notice"]

log = logging.getLogger(__name__)

#: How long an operator's forced recheck waits for a round already in progress.
FORCED_LOCK_WAIT_SECONDS = 60.0
# Class id for pg_try_advisory_lock(int, int): "mrec" in ASCII.
_LOCK_CLASS: Final = 0x6D726563
_ITEM_STATE: Final[Mapping[str, str]] = {
    "gone": "removed",
    "still_up": "still_up",
    "changed": "still_up",
}


@dataclass(frozen=True)
class ItemCheck:
    item_id: int
    outcome: str  # gone | still_up | changed | error
    http_status: int | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecheckReport:
    notice_id: int
    checked_at: dt.datetime
    items: tuple[ItemCheck, ...] = ()
    state: str | None = None  # the notice's state afterwards
    escalation_due: bool = False
    skipped: str | None = None  # set: nothing was checked, and why

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(check.outcome for check in self.items)
        return {o: found[o] for o in ("gone", "still_up", "changed", "error")}


@dataclass(frozen=True)
class _Item:
    id: int
    page_id: int
    page_url: str
    image_url: str
    sha256: bytes
    allow_private: bool
    others: tuple[str, ...]  # the site's other image URLs of this copy
    site: SiteRequests


@dataclass(frozen=True)
class _Head:
    state: str
    sent_at: dt.datetime | None
    scope: str
    designated: bool


def recheck_notice(
    db: Database,
    notice_id: int,
    *,
    now: dt.datetime | None = None,
    policy: FollowupPolicy = DEFAULT_POLICY,
    prober: Prober | None = None,
    scorer: PageScorer | None = None,
    only_if_due: bool = False,
    actor: str = "worker",
    user_id: int | None = None,
    requested_by: str | None = None,
    lock_wait: float | None = None,
) -> RecheckReport:
    """Recheck every item of ``notice_id`` not yet removed and record what was found.

    ``only_if_due``: do nothing unless a round is due (what a scheduled message asks; a
    duplicate message then finds the round done). An operator's "recheck now" passes False.
    ``user_id`` and ``requested_by`` name who asked for it, in the round's events.
    ``lock_wait``: seconds to wait for a round of this notice already in progress (default:
    none for a scheduled round, ``FORCED_LOCK_WAIT_SECONDS`` for a forced one) before giving
    up with ``skipped``. Raises LookupError for an unknown notice.
    """
    now = now or dt.datetime.now(dt.UTC)
    prober = prober or Prober()
    scorer = scorer or PageScorer(db)
    # One connection throughout: it holds the notice's session lock, and is idle (no
    # transaction open) while the site is fetched.
    # A forced round waits for one in progress (often a scheduled message finding nothing due,
    # in milliseconds) instead of being dropped; a scheduled one just leaves it be.
    wait = lock_wait if lock_wait is not None else 0.0 if only_if_due else FORCED_LOCK_WAIT_SECONDS
    with db.connection() as conn, _exclusive(conn, notice_id, wait) as mine:
        if not mine:
            return RecheckReport(notice_id, now, skipped="being rechecked elsewhere")
        head = _head(conn, notice_id)
        if head.state not in OPEN_STATES:
            return RecheckReport(notice_id, now, state=head.state, skipped="not open")
        if only_if_due and not due_rechecks(conn, now=now, policy=policy, notice_ids=[notice_id]):
            return RecheckReport(notice_id, now, state=head.state, skipped="not due")
        items = _items(conn, notice_id, prober.limits.max_other_sightings)
        scorer.preload(conn, {item.page_id for item in items})
        conn.commit()
        checks = [_check(item, prober, scorer) for item in items]
        who = _Who(actor, user_id, requested_by)
        report = _record(conn, notice_id, head, checks, now, policy, who)
        conn.commit()
        return report


@contextmanager
def _exclusive(conn: Connection[Any], notice_id: int, wait: float = 0.0) -> Iterator[bool]:
    key = (_LOCK_CLASS, notice_id % 2_147_483_647)
    if wait > 0:
        try:
            # lock_timeout for this transaction only: the connection goes back to a pool.
            conn.execute("select set_config('lock_timeout', %s, true)", (f"{int(wait * 1000)}ms",))
            conn.execute("select pg_advisory_lock(%s, %s)", key)
            got = True
        except errors.LockNotAvailable:
            got = False
            conn.rollback()
    else:
        row = conn.execute("select pg_try_advisory_lock(%s, %s)", key).fetchone()
        got = bool(row and row[0])
    conn.commit()  # the lock belongs to the session, not to a transaction
    try:
        yield got
    except BaseException:
        conn.rollback()  # so that the unlock below can run
        raise
    finally:
        if got:
            conn.execute("select pg_advisory_unlock(%s, %s)", key)
            conn.commit()


def _head(conn: Connection[Any], notice_id: int) -> _Head:
    row = conn.execute(
        """
        select n.state, n.sent_at, r.scope, r.is_designated_platform
        from notices n join recipients r on r.id = n.recipient_id where n.id = %s
        """,
        (notice_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no notice {notice_id}")
    return _Head(str(row[0]), row[1], str(row[2]), bool(row[3]))


def _items(conn: Connection[Any], notice_id: int, max_others: int) -> list[_Item]:
    rows = conn.execute(
        """
        select i.id, m.page_id, s.page_url, s.image_url, s.image_sha256,
               st.allow_private_addresses, st.request_headers, st.cookies,
               array(
                   select o.image_url from sightings o
                   where o.site_id = s.site_id and o.image_url <> s.image_url
                     and (o.image_sha256 = s.image_sha256
                          or exists (select 1 from matches om
                                     where om.sighting_id = o.id and om.page_id = m.page_id))
                   group by o.image_url order by max(o.last_seen_at) desc, o.image_url
                   limit %s)
        from notice_items i
        join matches m on m.id = i.match_id
        join sightings s on s.id = m.sighting_id
        join sites st on st.id = s.site_id
        where i.notice_id = %s and i.state <> 'removed'
        order by i.id
        """,
        (max_others, notice_id),
    ).fetchall()
    return [
        _Item(
            int(r[0]),
            int(r[1]),
            r[2],
            r[3],
            bytes(r[4]),
            bool(r[5]),
            tuple(r[8]),
            SiteRequests(dict(r[6] or {}), dict(r[7] or {})),
        )
        for r in rows
    ]


def _check(item: _Item, prober: Prober, scorer: PageScorer) -> ItemCheck:
    policy = AddressPolicy(allow_private=item.allow_private)
    image = prober.image(item.image_url, policy, page=item.page_url, site=item.site)
    first = judge(image, item.sha256, item.page_id, scorer)
    details: dict[str, Any] = {"image": first.details | {"verdict": first.verdict}}
    if first.verdict == "same":
        return ItemCheck(item.id, "still_up", image.status, details)
    if first.verdict == "match":
        return ItemCheck(item.id, "changed", image.status, details)
    if first.verdict == "error":
        return ItemCheck(item.id, "error", image.status, details)
    # Gone from the reported URL: before calling it removed, look where the copy could have
    # moved on the same site.
    page = prober.page(item.page_url, policy, site=item.site)
    details["page"] = page.summary()
    if page.error is not None or not (_ok(page) or page.status in (404, 410, 451)):
        details["undecided"] = "the page could not be read"
        return ItemCheck(item.id, "error", image.status, details)
    tried: list[dict[str, Any]] = []
    for where, judgement in _elsewhere(item, page, prober, scorer, policy):
        if judgement.verdict in ("same", "match"):
            details["moved_to"] = where
            return ItemCheck(item.id, "changed", image.status, details)
        if judgement.verdict == "error":
            tried.append({"url": where} | judgement.details)
    if tried:
        details["undecided"] = tried
        return ItemCheck(item.id, "error", image.status, details)
    return ItemCheck(item.id, "gone", image.status, details)


def _elsewhere(
    item: _Item, page: Seen, prober: Prober, scorer: PageScorer, policy: AddressPolicy
) -> Iterator[tuple[str, Judgement]]:
    """Every other place of the site the copy could be, judged lazily, nearest first."""
    if page.body is not None:  # the "page" is itself an image (a direct link)
        yield item.page_url, judge_body(page.body, item.sha256, item.page_id, scorer)
    for n, body in enumerate(page.inline):
        yield f"{item.page_url}#inline-{n}", judge_body(body, item.sha256, item.page_id, scorer)
    # Only the site's own domains: a page's ads and trackers say nothing about the copy.
    domains = {_domain(u) for u in (item.page_url, item.image_url, *item.others)}
    seen = {item.image_url}
    candidates = [u for u in page.images if u not in seen and _domain(u) in domains]
    for url in candidates[: prober.limits.max_candidates]:
        seen.add(url)
        image = prober.image(url, policy, page=item.page_url, site=item.site)
        yield url, judge(image, item.sha256, item.page_id, scorer)
    for url in item.others:
        if url not in seen:
            seen.add(url)
            # Shown on another page of the site, whose URL is not at hand: the reported page
            # is a Referer from the same site, which is what hotlink protection checks.
            image = prober.image(url, policy, page=item.page_url, site=item.site)
            yield url, judge(image, item.sha256, item.page_id, scorer)


def _ok(seen: Seen) -> bool:
    return seen.status is not None and 200 <= seen.status < 300


def _domain(url: str) -> str:
    host = host_of(url)
    return registrable_domain(host) or host


# -- recording


@dataclass(frozen=True)
class _Who:
    """Who the round's events name: ``actor`` (worker, cli, web, api), the user when one asked."""

    actor: str
    user_id: int | None = None
    requested_by: str | None = None


def _record(
    conn: Connection[Any],
    notice_id: int,
    head: _Head,
    checks: Sequence[ItemCheck],
    now: dt.datetime,
    policy: FollowupPolicy,
    who: _Who,
) -> RecheckReport:
    row = conn.execute(
        "select state from notices where id = %s for update", (notice_id,)
    ).fetchone()
    assert row is not None
    state = str(row[0])
    removed_matches: list[int] = []
    for check in checks:
        conn.execute(
            "insert into rechecks (notice_item_id, checked_at, outcome, http_status, details) "
            "values (%s, %s, %s, %s, %s)",
            (check.item_id, now, check.outcome, check.http_status, Jsonb(check.details)),
        )
        target = _ITEM_STATE.get(check.outcome)
        if target is not None:
            match_id = _set_item_state(conn, check.item_id, target, now, who)
            if match_id is not None and target == "removed":
                removed_matches.append(match_id)
    counts = Counter(check.outcome for check in checks)
    summary: dict[str, Any] = {
        "items": len(checks),
        "gone": counts["gone"],
        "still_up": counts["still_up"],
        "changed": counts["changed"],
        "errors": counts["error"],
    }
    if who.requested_by is not None:
        # Not a scheduled round: someone asked for it (the timeline says who).
        summary["requested_by"] = who.requested_by
    _event(conn, notice_id, RECHECKED_EVENT, now, who, summary)
    left, up = _remaining(conn, notice_id)
    # The SLA is judged on what this round saw up: a round of errors only waits for its retry.
    seen_up = counts["still_up"] + counts["changed"] > 0
    escalation_due = False
    if state in OPEN_STATES and left == 0:
        transition(
            conn,
            notice_id,
            OPEN_STATES,
            "removed",
            actor=who.actor,
            user_id=who.user_id,
            details={"at": str(now)},
        )
        state = "removed"
    elif state in OPEN_STATES and seen_up and _sla_passed(head, now, policy):
        if state != "still_up":
            sla_hours = _sla(head, policy) / dt.timedelta(hours=1)
            transition(
                conn,
                notice_id,
                ("sent", "acknowledged"),
                "still_up",
                actor=who.actor,
                user_id=who.user_id,
                details={"still_up": up, "sla_hours": sla_hours},
            )
            state = "still_up"
        escalation_due = True
    if removed_matches:
        _carry_back(conn, notice_id, removed_matches, now, who)
    return RecheckReport(notice_id, now, tuple(checks), state, escalation_due)


def _set_item_state(
    conn: Connection[Any], item_id: int, target: str, now: dt.datetime, who: _Who
) -> int | None:
    """Move an item to ``target``; the match id when it moved, None when it already was."""
    row = conn.execute(
        """
        update notice_items i set state = %(to)s,
               removed_at = case when %(to)s = 'removed' then %(now)s else null end
        from (select id, state from notice_items where id = %(id)s for update) old
        where i.id = old.id and old.state <> %(to)s
        returning old.state, i.match_id
        """,
        {"to": target, "now": now, "id": item_id},
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        """
        insert into events (occurred_at, subject_type, subject_id, event_type, from_state,
                            to_state, actor, actor_user_id)
        values (%s, 'notice_item', %s, 'state_changed', %s, %s, %s, %s)
        """,
        (now, item_id, row[0], target, who.actor, who.user_id),
    )
    return int(row[1])


def _remaining(conn: Connection[Any], notice_id: int) -> tuple[int, int]:
    row = conn.execute(
        "select count(*) filter (where state <> 'removed'), "
        "count(*) filter (where state = 'still_up') from notice_items where notice_id = %s",
        (notice_id,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _sla(head: _Head, policy: FollowupPolicy) -> dt.timedelta:
    return policy.schedule_for(head.scope, head.designated).sla


def _sla_passed(head: _Head, now: dt.datetime, policy: FollowupPolicy) -> bool:
    return head.sent_at is not None and now >= head.sent_at + _sla(head, policy)


def _carry_back(
    conn: Connection[Any], notice_id: int, match_ids: list[int], now: dt.datetime, who: _Who
) -> None:
    """Content removed after an escalation was removed for the notices escalated, too."""
    ancestors = [
        int(r[0])
        for r in conn.execute(
            """
            with recursive chain(id, parent) as (
                select id, escalates_notice_id from notices where id = %s
                union
                select n.id, n.escalates_notice_id from notices n join chain c on n.id = c.parent
            )
            select id from chain where id <> %s
            """,
            (notice_id, notice_id),
        )
    ]
    for ancestor in ancestors:
        items = conn.execute(
            "select id from notice_items where notice_id = %s and match_id = any(%s) "
            "and state <> 'removed'",
            (ancestor, match_ids),
        ).fetchall()
        for (item_id,) in items:
            _set_item_state(conn, int(item_id), "removed", now, who)
        if items and _remaining(conn, ancestor)[0] == 0:
            transition(
                conn,
                ancestor,
                "escalated",
                "removed",
                actor=who.actor,
                user_id=who.user_id,
                details={"via_notice": notice_id},
            )


def _event(
    conn: Connection[Any],
    notice_id: int,
    event_type: str,
    at: dt.datetime,
    who: _Who,
    details: Mapping[str, Any],
) -> None:
    # Written with the round's own time (not the database clock) so that the schedule, which
    # compares rounds with it, is testable with an explicit ``now``.
    conn.execute(
        "insert into events (occurred_at, subject_type, subject_id, event_type, actor, "
        "actor_user_id, details) values (%s, 'notice', %s, %s, %s, %s, %s)",
        (at, notice_id, event_type, who.actor, who.user_id, Jsonb(dict(details))),
    )
