-- The origin host's addresses of a site behind a CDN, as an operator learnt them (the CDN
-- disclosed them, or the site leaked them). Recipient discovery then names the origin's host
-- right after the CDN, and escalation follows a notice to the CDN with one to that host
-- (takedown/recipients.py, takedown/escalate.py). IP addresses as text, checked by
-- crawler/sites.py; empty: not known.
alter table sites add column origin_addresses text[] not null default '{}';
