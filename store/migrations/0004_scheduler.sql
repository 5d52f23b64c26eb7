-- When each scheduler job last enqueued its work, so that a run missed while no scheduler was
-- running is caught up once at start-up (takedown/scheduler.py).
create table scheduler_runs (
    job         text primary key,
    last_run_at timestamptz not null
);
