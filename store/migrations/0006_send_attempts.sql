-- One row per attempt to hand a notice to the relay, committed before the attempt begins
-- (takedown/send.py). An attempt still unfinished when the notice is next sent was cut short
-- (a worker killed mid-send): the relay may have accepted that copy, so the next copy is
-- recorded as a possible duplicate. No foreign key on purpose: the row is written from a second
-- connection while the sending transaction holds the notice row locked, and a key-share lock
-- on it would wait for that transaction.
create table send_attempts (
    id          bigint generated always as identity primary key,
    notice_id   bigint not null,
    started_at  timestamptz not null default now(),
    finished_at timestamptz,
    outcome     text check (outcome in ('sent', 'duplicate', 'deferred', 'failed', 'held')),
    worker      text not null default ''
);
create index send_attempts_unfinished on send_attempts (notice_id) where finished_at is null;
