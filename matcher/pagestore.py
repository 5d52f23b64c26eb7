"""The page store: registered page images, content-addressed (see ``store.blobs``)."""

from __future__ import annotations

from store.blobs import BlobStore
from store.config import Settings, get_settings


def page_store(settings: Settings | None = None) -> BlobStore:
    return BlobStore((settings or get_settings()).page_store_path)
