-- Mamoru schema for the whole product. Later migrations add columns and tables; they never
-- rewrite this file (the runner refuses an applied migration whose checksum changed).
-- Names follow the glossary in DESIGN.md. States are text with CHECK constraints: easier to
-- extend in an additive migration than enum types, and readable in psql.

create table publishers (
    id                  bigint generated always as identity primary key,
    name                text not null unique check (length(trim(name)) > 0),
    -- Notices are signed by the publisher's agent organisation, never a creator's personal name.
    agent_organisation  text,
    contact_email       text,
    contact_address     text,
    contact_phone       text,
    -- NULL: every match goes through review. Otherwise matches at or above this confidence are
    -- approved automatically (the publisher opted in).
    auto_approve_min_confidence real check (auto_approve_min_confidence between 0 and 1),
    created_at          timestamptz not null default now()
);

create table users (
    id              bigint generated always as identity primary key,
    email           text not null,
    display_name    text,
    password_hash   text,
    role            text not null check (role in ('admin', 'operator', 'publisher')),
    publisher_id    bigint references publishers (id) on delete restrict,
    is_active       boolean not null default true,
    created_at      timestamptz not null default now(),
    last_login_at   timestamptz,
    -- A publisher user belongs to exactly one publisher; staff belong to none.
    check ((role = 'publisher') = (publisher_id is not null))
);
create unique index users_email_key on users (lower(email));

-- Operators see the publishers they are assigned to.
create table operator_assignments (
    user_id         bigint not null references users (id) on delete cascade,
    publisher_id    bigint not null references publishers (id) on delete cascade,
    primary key (user_id, publisher_id)
);

create table api_tokens (
    id              bigint generated always as identity primary key,
    user_id         bigint not null references users (id) on delete cascade,
    name            text not null,
    token_sha256    bytea not null unique check (length(token_sha256) = 32),
    created_at      timestamptz not null default now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);

create table works (
    id              bigint generated always as identity primary key,
    publisher_id    bigint not null references publishers (id) on delete restrict,
    title           text not null check (length(trim(title)) > 0),
    kind            text not null default 'volume'
                    check (kind in ('volume', 'chapter', 'illustration', 'photo', 'other')),
    isbn            text,
    official_url    text,
    -- Further identifiers (JAN, ASIN, publisher's own codes) without a migration per kind.
    identifiers     jsonb not null default '{}'::jsonb,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    unique (publisher_id, title)
);

create table pages (
    id              bigint generated always as identity primary key,
    work_id         bigint not null references works (id) on delete cascade,
    page_number     integer not null check (page_number >= 1),
    -- SHA-256 of the file as registered (of the rendered pixels for PDF pages).
    sha256          bytea not null check (length(sha256) = 32),
    source_name     text not null,
    media_type      text not null,
    width           integer not null check (width > 0),
    height          integer not null check (height > 0),
    created_at      timestamptz not null default now(),
    unique (work_id, sha256),
    unique (work_id, page_number)
);

-- One row per (page, hash kind, parameters, version, variant). value is the 64-bit hash stored
-- as a signed bigint (two's complement of the unsigned value); the matcher converts.
create table fingerprints (
    id              bigint generated always as identity primary key,
    page_id         bigint not null references pages (id) on delete cascade,
    kind            text not null,
    params          jsonb not null default '{}'::jsonb,
    version         text not null,
    -- Which view of the page was hashed: 'full', 'mirrored', a tile or region name.
    variant         text not null default 'full',
    bits            smallint not null default 64 check (bits between 1 and 64),
    value           bigint not null,
    created_at      timestamptz not null default now(),
    unique (page_id, kind, params, version, variant)
);
create index fingerprints_kind_version_idx on fingerprints (kind, version);

create table allowlist_entries (
    id              bigint generated always as identity primary key,
    publisher_id    bigint not null references publishers (id) on delete cascade,
    -- NULL: the domain is licensed for every work of the publisher.
    work_id         bigint references works (id) on delete cascade,
    domain          text not null check (domain = lower(domain) and length(domain) > 0),
    note            text,
    created_by      bigint references users (id) on delete set null,
    created_at      timestamptz not null default now()
);
create unique index allowlist_entries_key
    on allowlist_entries (publisher_id, coalesce(work_id, 0), domain);

create table sites (
    id                      bigint generated always as identity primary key,
    name                    text not null unique,
    start_urls              text[] not null check (cardinality(start_urls) > 0),
    allowed_domains         text[] not null default '{}',
    include_patterns        text[] not null default '{}',
    exclude_patterns        text[] not null default '{}',
    max_depth               integer not null default 5 check (max_depth >= 0),
    max_pages               integer not null default 2000 check (max_pages > 0),
    rendering               text not null default 'auto' check (rendering in ('never', 'auto', 'always')),
    obey_robots             boolean not null default true,
    concurrency             integer not null default 4 check (concurrency between 1 and 64),
    delay_seconds           real not null default 0.5 check (delay_seconds >= 0),
    request_headers         jsonb not null default '{}'::jsonb,
    cookies                 jsonb not null default '{}'::jsonb,
    time_budget_seconds     integer not null default 3600 check (time_budget_seconds > 0),
    -- Private, loopback and link-local addresses are refused unless a site allows them (tests do).
    allow_private_addresses boolean not null default false,
    schedule                text not null default '0 3 * * *',
    is_active               boolean not null default true,
    notes                   text,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now()
);

create table crawls (
    id              bigint generated always as identity primary key,
    site_id         bigint not null references sites (id) on delete cascade,
    state           text not null default 'queued'
                    check (state in ('queued', 'running', 'finished', 'failed', 'cancelled')),
    trigger         text not null default 'manual' check (trigger in ('manual', 'schedule', 'recheck')),
    queued_at       timestamptz not null default now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    stats           jsonb not null default '{}'::jsonb,
    error           text
);
-- One crawl at a time per site.
create unique index crawls_one_active_per_site on crawls (site_id) where state in ('queued', 'running');

-- Every distinct image the crawler fetched, by content. Images that match nothing keep only this
-- row (hash, size) and their sightings' URLs.
create table images (
    sha256          bytea primary key check (length(sha256) = 32),
    byte_size       bigint not null check (byte_size >= 0),
    media_type      text,
    width           integer,
    height          integer,
    first_seen_at   timestamptz not null default now(),
    -- The matcher version that last identified this image; a new version re-identifies.
    identified_with text,
    identified_at   timestamptz
);

create table sightings (
    id              bigint generated always as identity primary key,
    site_id         bigint not null references sites (id) on delete cascade,
    first_crawl_id  bigint references crawls (id) on delete set null,
    last_crawl_id   bigint references crawls (id) on delete set null,
    page_url        text not null,
    image_url       text not null,
    image_sha256    bytea not null references images (sha256),
    evidence_ref    text,
    first_seen_at   timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    unique (site_id, page_url, image_url, image_sha256)
);
create index sightings_image_sha256_idx on sightings (image_sha256);

create table matches (
    id              bigint generated always as identity primary key,
    sighting_id     bigint not null references sightings (id) on delete cascade,
    page_id         bigint not null references pages (id) on delete cascade,
    confidence      real not null check (confidence between 0 and 1),
    decision        text not null check (decision in ('confident', 'review')),
    scores          jsonb not null default '{}'::jsonb,
    explanation     text not null default '',
    review_state    text not null default 'pending'
                    check (review_state in ('pending', 'approved', 'rejected', 'licensed')),
    reviewed_by     bigint references users (id) on delete set null,
    reviewed_at     timestamptz,
    created_at      timestamptz not null default now(),
    unique (sighting_id, page_id)
);
create index matches_review_state_idx on matches (review_state, created_at);

create table recipients (
    id              bigint generated always as identity primary key,
    name            text not null,
    email           text,
    web_form_url    text,
    -- Who the recipient is in relation to the content.
    scope           text not null
                    check (scope in ('site_operator', 'host', 'cdn', 'registrar', 'platform', 'other')),
    site_id         bigint references sites (id) on delete cascade,
    domain          text,
    -- How the contact was learnt: configured by an operator, RDAP, security.txt, RFC 2142 abuse@.
    source          text not null default 'configured'
                    check (source in ('configured', 'rdap', 'security_txt', 'rfc2142')),
    notice_format   text not null default 'dmca' check (notice_format in ('dmca', 'jp_provider', 'eu_dsa')),
    language        text not null default 'en',
    -- Platforms designated under Japan's 情報流通プラットフォーム対処法 have a response duty.
    is_designated_platform boolean not null default false,
    created_at      timestamptz not null default now(),
    check (email is not null or web_form_url is not null)
);

create table notices (
    id              bigint generated always as identity primary key,
    publisher_id    bigint not null references publishers (id) on delete restrict,
    recipient_id    bigint not null references recipients (id) on delete restrict,
    format          text not null check (format in ('dmca', 'jp_provider', 'eu_dsa')),
    state           text not null default 'drafted'
                    check (state in ('drafted', 'approved', 'queued', 'sent', 'delivery_failed',
                                     'acknowledged', 'removed', 'still_up', 'escalated', 'closed')),
    -- Deterministic per notice so a retried send is recognisable as the same message.
    message_id      text unique,
    subject         text,
    body_text       text,
    body_html       text,
    -- The notice this one escalates (e.g. to the host after the site operator ignored it).
    escalates_notice_id bigint references notices (id) on delete set null,
    send_attempts   integer not null default 0,
    last_error      text,
    created_at      timestamptz not null default now(),
    state_changed_at timestamptz not null default now()
);
create index notices_state_idx on notices (state, state_changed_at);

create table notice_items (
    id              bigint generated always as identity primary key,
    notice_id       bigint not null references notices (id) on delete cascade,
    match_id        bigint not null references matches (id) on delete restrict,
    infringing_url  text not null,
    state           text not null default 'listed' check (state in ('listed', 'removed', 'still_up')),
    removed_at      timestamptz,
    unique (notice_id, match_id)
);

-- A later visit to a reported URL.
create table rechecks (
    id              bigint generated always as identity primary key,
    notice_item_id  bigint not null references notice_items (id) on delete cascade,
    checked_at      timestamptz not null default now(),
    outcome         text not null check (outcome in ('gone', 'still_up', 'changed', 'error')),
    http_status     integer,
    details         jsonb not null default '{}'::jsonb
);

-- Every state change of anything with a lifecycle (crawl, match, notice, notice item), so that
-- durations such as time-to-removal per recipient are a query.
create table events (
    id              bigint generated always as identity primary key,
    occurred_at     timestamptz not null default now(),
    subject_type    text not null check (subject_type in
                        ('work', 'site', 'crawl', 'sighting', 'match', 'notice', 'notice_item', 'recipient')),
    subject_id      bigint not null,
    event_type      text not null,
    from_state      text,
    to_state        text,
    actor_user_id   bigint references users (id) on delete set null,
    -- 'system', 'scheduler', 'worker', 'cli' when no user acted.
    actor           text not null default 'system',
    details         jsonb not null default '{}'::jsonb
);
create index events_subject_idx on events (subject_type, subject_id, occurred_at);

-- Who decided what: approvals, rejections, sends, settings, logins.
create table audit_log (
    id              bigint generated always as identity primary key,
    occurred_at     timestamptz not null default now(),
    user_id         bigint references users (id) on delete set null,
    actor           text not null,
    action          text not null,
    target_type     text,
    target_id       bigint,
    remote_addr     text,
    details         jsonb not null default '{}'::jsonb
);
create index audit_log_occurred_idx on audit_log (occurred_at);
