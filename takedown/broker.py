"""The Dramatiq broker, chosen by configuration.

``MAMORU_BROKER_URL`` unset: the queues live in Mamoru's own PostgreSQL (``dramatiq-postgres``,
schema ``dramatiq``, created on first use), so the embedded defaults need nothing else running.
``redis://`` and ``amqp://`` select Redis or RabbitMQ for deployments whose workers run on many
machines. Actors are declared against whatever broker ``setup_broker`` installed, so it runs
before ``takedown.actors`` is imported (``takedown.actors`` calls it itself).
"""

from __future__ import annotations

import os

import dramatiq
import psycopg
from dramatiq.broker import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq_postgres import PostgresBroker
from dramatiq_postgres import init as init_postgres_queue

from store.config import Settings, get_settings
from store.db import resolve_database_url

__all__ = ["describe_broker", "make_broker", "setup_broker"]

_installed: Broker | None = None


def make_broker(settings: Settings) -> Broker:
    url = settings.broker_url
    if url is None or url.startswith("postgresql://"):
        database_url = url or resolve_database_url(settings)
        with psycopg.connect(database_url) as conn, conn.cursor() as cur:
            init_postgres_queue(cur)
        # Results are not used: actors record what they did in Mamoru's own tables.
        broker: Broker = PostgresBroker(url=database_url, results=False)
        return broker
    if url.startswith(("redis://", "rediss://")):
        return RedisBroker(url=url)  # type: ignore[no-untyped-call]
    return RabbitmqBroker(url=url)


def describe_broker(settings: Settings) -> str:
    url = settings.broker_url
    if url is None:
        return "PostgreSQL (Mamoru's database)"
    scheme = url.split(":", 1)[0]
    return {"redis": "Redis", "rediss": "Redis (TLS)", "amqp": "RabbitMQ"}.get(
        scheme, "RabbitMQ (TLS)" if scheme == "amqps" else "PostgreSQL"
    )


def setup_broker(settings: Settings | None = None) -> Broker:
    """Install the configured broker as Dramatiq's global broker, once per process."""
    global _installed
    if _installed is None:
        settings = settings or get_settings()
        _installed = make_broker(settings)
        if settings.worker_metrics_port is not None:
            _add_metrics(_installed, settings.worker_metrics_port)
        dramatiq.set_broker(_installed)
    return _installed


def _add_metrics(broker: Broker, port: int) -> None:
    # Dramatiq's middleware reads its port when its module is imported; the worker's
    # supervisor serves the merged metrics of all worker processes there.
    os.environ["dramatiq_prom_port"] = str(port)  # noqa: SIM112 (Dramatiq's own name)
    os.environ.setdefault("dramatiq_prom_host", "127.0.0.1")
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
