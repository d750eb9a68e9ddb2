"""A dedicated PostgreSQL connection, outside the pool, for session state that must stay
with one connection: advisory locks (leader election) and ``LISTEN`` (change notification).

The connection is autocommit and asks the server to probe it with TCP keepalives every few
seconds, so that the server ends the session (releasing its locks) soon after the client's
host disappears, not after the operating system's two-hour default.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

from mlops.errors import StoreError
from mlops.store.db import MetadataStore

__all__ = ["KEEPALIVE_SECONDS", "dedicated_connection", "supports_dedicated"]

#: seconds of silence before the server probes a dedicated connection (then 3 probes, 2 s
#: apart): a vanished client loses its locks within about 11 s.
KEEPALIVE_SECONDS = 5


def supports_dedicated(store: MetadataStore) -> bool:
    """PostgreSQL through psycopg 3 (the driver these features are written for)."""
    url = make_url(store.url)
    return store.dialect == "postgresql" and url.get_driver_name() in {"psycopg", "psycopg_async"}


def dedicated_connection(store: MetadataStore, purpose: str) -> Any:
    """A new autocommit psycopg connection to the store's database (close it when done)."""
    import psycopg

    url = make_url(store.url).set(drivername="postgresql")
    try:
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True,
                               application_name=f"mlops {purpose}"[:63],
                               keepalives=1, keepalives_idle=KEEPALIVE_SECONDS,
                               keepalives_interval=2, keepalives_count=3, connect_timeout=10)
        conn.execute(f"SET tcp_keepalives_idle = {KEEPALIVE_SECONDS}")
        conn.execute("SET tcp_keepalives_interval = 2")
        conn.execute("SET tcp_keepalives_count = 3")
    except psycopg.Error as exc:
        raise StoreError(f"Cannot open a {purpose} connection to "
                         f"{url.render_as_string(hide_password=True)}: {exc}.",
                         fix="Check MLOPS_DATABASE_URL and that PostgreSQL accepts one more "
                             "connection (max_connections).") from exc
    return conn
