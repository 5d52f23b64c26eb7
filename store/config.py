"""Mamoru's configuration: one typed object, read once per process.

Values come from, highest priority first: environment variables prefixed ``MAMORU_``, the TOML
file named by ``MAMORU_CONFIG`` (same names, without the prefix, lower case), then the defaults
below. Secrets (database password, SMTP credentials) belong in the environment or in a config
file outside the repository, never in the repository.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_VARIABLE = "MAMORU_CONFIG"


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("mamoru")


class Settings(BaseSettings):
    """Every setting Mamoru reads. README's configuration table is checked against this class."""

    model_config = SettingsConfigDict(
        env_prefix="MAMORU_", extra="forbid", frozen=True, validate_default=True
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for local state: the embedded PostgreSQL data, sample works, outbox.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL >= 14 URL (postgresql://user:pass@host:5432/db). "
        "Unset: an embedded PostgreSQL under data_dir/pgdata, started on demand.",
    )
    db_pool_min_size: int = Field(default=1, ge=0, description="Connections kept open per process.")
    db_pool_max_size: int = Field(default=10, ge=1, description="Most connections per process.")
    max_image_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="Largest image (width x height) decoded; larger ones are refused as possible "
        "decompression bombs.",
    )
    max_image_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1, description="Largest image file accepted, in bytes."
    )
    max_archive_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Largest CBZ/ZIP or PDF accepted, in bytes."
    )
    max_archive_members: int = Field(
        default=10_000, ge=1, description="Most entries in one CBZ/ZIP archive."
    )
    pdf_dpi: int = Field(
        default=150, ge=36, le=600, description="Resolution at which PDF pages are rendered."
    )
    chromium_path: str | None = Field(
        default=None,
        description="Chromium executable for JavaScript rendering. Unset: `chromium` on PATH "
        "(Debian's package), else the browser of `playwright install chromium`.",
    )
    evidence_dir: Path | None = Field(
        default=None,
        description="Content-addressed evidence store (screenshots, HTML, headers, images). "
        "Unset: data_dir/evidence.",
    )
    page_store_dir: Path | None = Field(
        default=None,
        description="Content-addressed store of registered page images (shown to reviewers, "
        "re-hashed by `mamoru works refingerprint`). Unset: data_dir/pages.",
    )
    match_processes: int = Field(
        default=0,
        ge=0,
        description="Processes that fingerprint crawled images during a crawl (0: one per core).",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port on which `mamoru worker` serves Prometheus metrics (Dramatiq's "
        "middleware: messages, errors, durations). Unset: no metrics endpoint.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    broker_url: str | None = Field(
        default=None,
        description="Dramatiq broker: redis://host:6379/0 or amqp://user:pass@host:5672/. "
        "Unset: queues in the PostgreSQL database (dramatiq-postgres), nothing else to run.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="SMTP relay for notices: smtp://user:pass@host:587 (STARTTLS required) or "
        "smtps://user:pass@host:465. Unset: notices are written to outbox_dir and nothing "
        "leaves the machine.",
    )
    outbox_dir: Path | None = Field(
        default=None,
        description="Folder where notices are written as .eml files when smtp_url is unset. "
        "Unset: data_dir/outbox.",
    )
    mail_from: str = Field(
        default="notices@mamoru.invalid",
        description="Envelope and From address of notice emails (Reply-To is the publisher's "
        "contact).",
    )
    rdap_bootstrap_url: str = Field(
        default="https://data.iana.org/rdap/",
        description="Where the IANA RDAP bootstrap files (dns.json, ipv4.json, ipv6.json) are "
        "read to find a domain's registrar or an address's network abuse contact.",
    )
    dns_servers: str = Field(
        default="",
        description="DNS servers that recipient discovery asks (the site's name, RDAP and "
        "security.txt hosts): comma-separated IP addresses, each optionally with a port "
        "(`192.0.2.53`, `192.0.2.53:5353`, `[2001:db8::53]:53`). Empty: the system resolver.",
    )
    web_secret_key: str | None = Field(
        default=None,
        description="Secret that signs admin session cookies. Unset: a random key generated "
        "once and kept in data_dir/secret_key.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return upper

    @property
    def log_level_no(self) -> int:
        return int(logging.getLevelName(self.log_level))

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("redis://", "rediss://", "amqp://", "amqps://", "postgresql://")):
            raise ValueError(
                "must start with redis://, rediss://, amqp://, amqps:// or postgresql://"
            )
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, value: str) -> str:
        # Parsed here so a typo fails at start-up, not at the first notice.
        return ", ".join(_format_server(s) for s in parse_dns_servers(value))

    @property
    def dns_nameservers(self) -> tuple[tuple[str, int], ...]:
        """``dns_servers`` as (address, port) pairs; empty: use the system resolver."""
        return parse_dns_servers(self.dns_servers)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("smtp://", "smtps://")):
            raise ValueError("must start with smtp:// or smtps://")
        return value

    @property
    def evidence_path(self) -> Path:
        return self.evidence_dir if self.evidence_dir is not None else self.data_dir / "evidence"

    @property
    def page_store_path(self) -> Path:
        return self.page_store_dir if self.page_store_dir is not None else self.data_dir / "pages"

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir if self.outbox_dir is not None else self.data_dir / "outbox"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_VARIABLE}={config_file}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def parse_dns_servers(text: str) -> tuple[tuple[str, int], ...]:
    """``"192.0.2.53, 192.0.2.54:5353, [2001:db8::53]:53"`` as (address, port) pairs.

    Addresses only, never names: a server's name would itself need a resolver to find.
    """
    servers: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, port = item, "53"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"DNS server {item!r} is not ADDRESS or ADDRESS:PORT")
                port = rest[1:]
        elif item.count(":") == 1:
            host, port = item.split(":")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"DNS server {item!r}: {host!r} is not an IP address") from None
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"DNS server {item!r}: port {port!r} is not 1-65535")
        servers.append((str(address), int(port)))
    return tuple(servers)


def _format_server(server: tuple[str, int]) -> str:
    address, port = server
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings now (tests and tools that need a fresh read)."""
    return Settings(**overrides)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use."""
    return load_settings()
