-- Takedown: holds, delivery receipts and a per-deployment secret.

-- A notice the flood guard (or an operator) holds is not sent until an operator releases it;
-- the reason is shown in the admin and the CLI.
alter table notices
    add column held_reason text,
    add column sent_at timestamptz,
    -- The relay's reply or the outbox file, as proof of what was handed over and when.
    add column delivery_receipt jsonb;
create index notices_held_idx on notices (state) where held_reason is not null;

-- One row: a random secret shared by every process of a deployment (all of them read the same
-- database), e.g. for Message-IDs that are stable across retries but not guessable.
create table deployment (
    id      boolean primary key default true check (id),
    secret  bytea not null default decode(md5(random()::text || clock_timestamp()::text)
                                          || md5(random()::text || clock_timestamp()::text), 'hex'),
    created_at timestamptz not null default now()
);
insert into deployment default values;
