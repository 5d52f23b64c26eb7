-- Reference page images are kept in the page store (content-addressed files under
-- MAMORU_PAGE_STORE_DIR) so that reviewers see the registered page beside the found copy and a
-- re-fingerprint job can hash pages again when the fingerprint pipeline changes.
-- NULL for pages registered before this migration: re-register them to make them re-hashable.
alter table pages
    add column image_sha256 bytea check (length(image_sha256) = 32),
    add column image_media_type text;
