"""Follow-up of sent notices: when rechecks are due, what escalation waits on, and how fast
each recipient removes what it is sent.

The schedule is a :class:`FollowupPolicy`: recheck rounds at fixed offsets after a notice was
sent (default 24 h, 72 h and 7 days) and an SLA after which content still up is escalated, both
per recipient scope. Platforms designated under Japan's 情報流通プラットフォーム対処法 have a
legal duty to respond within 7 days, so they get their own schedule whatever their scope: any
earlier escalation would be premature. Nothing of this is stored: a round is due when its time
has passed and no round was recorded since (the ``rechecked`` events the recheck writes), so a
changed policy applies to every open notice at once.

Time-to-removal is a query over ``events`` (:func:`removal_times`): a notice's ``sent``
transition to its ``removed`` one, per recipient and per site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from psycopg import Connection

from takedown.compose import notice_content
from takedown.notice_content import NoticeContent

__all__ = [
    "DEFAULT_POLICY",
    "DESIGNATED_PLATFORM_SCHEDULE",
    "OPEN_STATES",
    "SCOPES",
    "DueRecheck",
    "FollowupPolicy",
    "RecheckSchedule",
    "RemovalStat",
    "RemovalTimes",
    "delisting_contents",
    "due_rechecks",
    "escalations_due",
    "removal_times",
]

HOUR: Final = dt.timedelta(hours=1)
DAY: Final = dt.timedelta(days=1)
#: Every value of ``recipients.scope``.
SCOPES: Final = ("site_operator", "host", "cdn", "registrar", "platform", "other")
#: States in which a notice waits for its content to go, and is rechecked. An escalated notice
#: is followed through its successor (whose removals are carried back to it).
OPEN_STATES: Final = ("sent", "acknowledged", "still_up")
RECHECKED_EVENT: Final = "rechecked"
DELISTING_EVENT: Final = "delisting_export"


@dataclass(frozen=True)
class RecheckSchedule:
    """Recheck rounds at ``offsets`` after sending; escalation once ``sla`` has passed."""

    offsets: tuple[dt.timedelta, ...] = (24 * HOUR, 72 * HOUR, 7 * DAY)
    sla: dt.timedelta = 7 * DAY

    def __post_init__(self) -> None:
        if not self.offsets or any(o <= dt.timedelta(0) for o in self.offsets):
            raise ValueError("a recheck schedule needs positive offsets")
        if list(self.offsets) != sorted(set(self.offsets)):
            raise ValueError("recheck offsets must be increasing")
        # The SLA is judged at a recheck round: one must come at or after it.
        if not dt.timedelta(0) < self.sla <= self.offsets[-1]:
            raise ValueError("the SLA must be positive and no later than the last recheck")


#: 情報流通プラットフォーム対処法: designated platforms must respond within 7 days.
DESIGNATED_PLATFORM_SCHEDULE: Final = RecheckSchedule(sla=7 * DAY)


@dataclass(frozen=True)
class FollowupPolicy:
    """Schedules per recipient scope, the escalation ladder and the retry of failed rounds."""

    default: RecheckSchedule = RecheckSchedule()
    by_scope: Mapping[str, RecheckSchedule] = field(default_factory=lambda: MappingProxyType({}))
    designated_platform: RecheckSchedule = DESIGNATED_PLATFORM_SCHEDULE
    # Recipient scopes to escalate to, in order; after the last, the search engines'
    # delisting export.
    ladder: tuple[str, ...] = ("host", "cdn", "registrar")
    # A round with network errors is repeated after ``retry_after``, for at most
    # ``retry_window`` past the last scheduled round (a site down for good is not removed, and
    # is not polled forever either).
    retry_after: dt.timedelta = 6 * HOUR
    retry_window: dt.timedelta = 7 * DAY

    def __post_init__(self) -> None:
        unknown = (set(self.by_scope) | set(self.ladder)) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown recipient scope(s): {', '.join(sorted(unknown))}")

    def schedule_for(self, scope: str, designated: bool) -> RecheckSchedule:
        if designated:
            return self.designated_platform
        return self.by_scope.get(scope, self.default)


DEFAULT_POLICY: Final = FollowupPolicy()


@dataclass(frozen=True)
class DueRecheck:
    notice_id: int
    due_at: dt.datetime
    retry: bool  # a repeat of a round that had errors, not a scheduled one


def due_rechecks(
    conn: Connection[Any],
    *,
    now: dt.datetime,
    policy: FollowupPolicy = DEFAULT_POLICY,
    notice_ids: Sequence[int] | None = None,
    limit: int = 1000,
) -> list[DueRecheck]:
    """Open notices with a recheck round due at ``now``, the longest waiting first."""
    scopes: list[str] = []
    designated: list[bool] = []
    offsets: list[dt.timedelta] = []
    for scope in SCOPES:
        for flag in (False, True):
            for offset in policy.schedule_for(scope, flag).offsets:
                scopes.append(scope)
                designated.append(flag)
                offsets.append(offset)
    rows = conn.execute(
        """
        with schedule as (
            select * from unnest(%(scopes)s::text[], %(designated)s::bool[],
                                 %(offsets)s::interval[]) as s(scope, designated, off)
        ), open as (
            select n.id, n.sent_at, r.scope, r.is_designated_platform as designated,
                   last.occurred_at as last_at,
                   coalesce((last.details ->> 'errors')::int, 0) > 0 as last_failed
            from notices n
            join recipients r on r.id = n.recipient_id
            left join lateral (
                select e.occurred_at, e.details from events e
                where e.subject_type = 'notice' and e.subject_id = n.id
                  and e.event_type = %(event)s
                order by e.occurred_at desc, e.id desc limit 1
            ) last on true
            where n.state = any(%(states)s) and n.sent_at is not null
              and (%(ids)s::bigint[] is null or n.id = any(%(ids)s::bigint[]))
        ), due as (
            select o.id,
                   (select min(o.sent_at + s.off) from schedule s
                    where s.scope = o.scope and s.designated = o.designated
                      and o.sent_at + s.off <= %(now)s
                      and o.sent_at + s.off > coalesce(o.last_at, '-infinity')) as scheduled,
                   case when o.last_failed and o.last_at + %(retry)s <= %(now)s
                         and o.last_at < o.sent_at + %(window)s + (
                             select max(s.off) from schedule s
                             where s.scope = o.scope and s.designated = o.designated)
                        then o.last_at + %(retry)s end as retry_at
            from open o
        )
        select id, least(scheduled, retry_at), scheduled is null
        from due where scheduled is not null or retry_at is not null
        order by 2, 1
        limit %(limit)s
        """,
        {
            "scopes": scopes,
            "designated": designated,
            "offsets": offsets,
            "event": RECHECKED_EVENT,
            "states": list(OPEN_STATES),
            "ids": list(notice_ids) if notice_ids is not None else None,
            "now": now,
            "retry": policy.retry_after,
            "window": policy.retry_window,
            "limit": limit,
        },
    ).fetchall()
    return [DueRecheck(int(r[0]), r[1], bool(r[2])) for r in rows]


def escalations_due(conn: Connection[Any], *, limit: int = 1000) -> list[int]:
    """Notices whose SLA passed with content still up (a recheck set them ``still_up``)."""
    rows = conn.execute(
        "select id from notices where state = 'still_up' order by state_changed_at, id limit %s",
        (limit,),
    ).fetchall()
    return [int(r[0]) for r in rows]


# -- time to removal


@dataclass(frozen=True)
class RemovalStat:
    """One recipient's (or site's) record: notices sent, removed by it, escalated past it."""

    id: int
    name: str
    scope: str | None  # the recipient's scope; None for a site
    sent: int
    removed: int
    escalated: int
    median_hours: float | None  # sent -> removed, over the removed ones

    @property
    def removal_rate(self) -> float:
        return self.removed / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "sent": self.sent,
            "removed": self.removed,
            "escalated": self.escalated,
            "removal_rate": round(self.removal_rate, 4),
            "median_hours": None if self.median_hours is None else round(self.median_hours, 2),
        }


@dataclass(frozen=True)
class RemovalTimes:
    by_recipient: list[RemovalStat]
    by_site: list[RemovalStat]


# A removal counts for the recipient only when it came before any escalation: content that went
# after the notice was escalated past the recipient was removed by somebody else's doing.
_FACTS = """
with sent as (
    select e.subject_id as notice_id, min(e.occurred_at) as sent_at
    from events e join notices n on n.id = e.subject_id
    where e.subject_type = 'notice' and e.event_type = 'state_changed' and e.to_state = 'sent'
      and (%(publisher)s::bigint is null or n.publisher_id = %(publisher)s)
    group by e.subject_id
    having %(since)s::timestamptz is null or min(e.occurred_at) >= %(since)s
), facts as (
    select s.notice_id, s.sent_at,
           (select min(e.occurred_at) from events e
            where e.subject_type = 'notice' and e.subject_id = s.notice_id
              and e.to_state = 'removed' and e.from_state <> 'escalated') as removed_at,
           exists (select 1 from events e
                   where e.subject_type = 'notice' and e.subject_id = s.notice_id
                     and e.to_state = 'escalated') as escalated
    from sent s
)
"""
_AGGREGATES = """
    count(*), count(f.removed_at), count(*) filter (where f.escalated),
    percentile_cont(0.5) within group (
        order by extract(epoch from f.removed_at - f.sent_at) / 3600.0)
"""


def removal_times(
    conn: Connection[Any],
    *,
    since: dt.datetime | None = None,
    publisher_id: int | None = None,
) -> RemovalTimes:
    """Notices sent (since ``since``), removed, escalated and the median hours to removal, per
    recipient and per site (a notice counts for every site its URLs are on)."""
    params = {"since": since, "publisher": publisher_id}
    by_recipient = conn.execute(
        _FACTS
        + f"""
        select r.id, r.name, r.scope, {_AGGREGATES}
        from facts f join notices n on n.id = f.notice_id
        join recipients r on r.id = n.recipient_id
        group by r.id, r.name, r.scope
        order by r.name, r.id
        """,
        params,
    ).fetchall()
    by_site = conn.execute(
        _FACTS
        + f"""
        , notice_sites as (
            select distinct i.notice_id, s.site_id
            from notice_items i
            join matches m on m.id = i.match_id
            join sightings s on s.id = m.sighting_id
            where i.notice_id in (select notice_id from facts)
        )
        select st.id, st.name, null, {_AGGREGATES}
        from facts f join notice_sites ns on ns.notice_id = f.notice_id
        join sites st on st.id = ns.site_id
        group by st.id, st.name
        order by st.name, st.id
        """,
        params,
    ).fetchall()
    return RemovalTimes([_stat(r) for r in by_recipient], [_stat(r) for r in by_site])


def _stat(row: Sequence[Any]) -> RemovalStat:
    key, name, scope, sent, removed, escalated, median = row
    return RemovalStat(
        int(key),
        str(name),
        scope,
        int(sent),
        int(removed),
        int(escalated),
        None if median is None else float(median),
    )


# -- the end of the ladder


def delisting_contents(conn: Connection[Any]) -> list[NoticeContent]:
    """Notices escalated past the last rung of the ladder, each cut down to the URLs still up
    that it handed to the search engines' delisting export (:func:`takedown.exports.
    search_engine_csv` writes them)."""
    rows = conn.execute(
        """
        select n.id, s.image_url, s.page_url
        from notices n
        join events e on e.subject_type = 'notice' and e.subject_id = n.id
             and e.event_type = %s
        join notice_items i on i.notice_id = n.id
             and i.id in (select jsonb_array_elements_text(e.details -> 'items')::bigint)
        join matches m on m.id = i.match_id
        join sightings s on s.id = m.sighting_id
        where n.state = 'escalated' and i.state <> 'removed'
        order by n.id, i.id
        """,
        (DELISTING_EVENT,),
    ).fetchall()
    wanted: dict[int, set[tuple[str, str]]] = {}
    for notice_id, image_url, page_url in rows:
        wanted.setdefault(int(notice_id), set()).add((str(image_url), str(page_url)))
    contents = []
    for notice_id, urls in wanted.items():
        content = notice_content(conn, notice_id)
        items = tuple(i for i in content.items if (i.image_url, i.page_url) in urls)
        contents.append(replace(content, items=items))
    return contents
