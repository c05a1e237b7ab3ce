"""Device decoding parameters: the rows of ``device_parameters`` and a TTL-cached store over them.

The store looks up every device of a batch that is not cached in one query, and remembers
devices without parameters for a shorter time, so a device provisioned a moment ago is
decoded within ``negative_ttl_seconds``. Devices asked for ``fresh`` are read again whatever the
cache holds: redriven and reprocessed records come after a fix (a device provisioned, a
template corrected) and must see it at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg2

from f2lib.errors import StoreError, UnknownComponentError, UnknownDeviceError

logger = logging.getLogger(__name__)

Encoding = Literal["boolean", "boolean_map", "hex_to_float", "raw_string"]
ENCODINGS: tuple[str, ...] = ("boolean", "boolean_map", "hex_to_float", "raw_string")

# (connector_mode, connector, component_type, component_id or None)
ComponentKey = tuple[str, str, str, str | None]

PARAMETERS_QUERY = """
SELECT device_id, connector_mode, connector, component_type, component_id,
       encoding_type, units, scaling_factor, value_signed, value_width_bits
FROM device_parameters
WHERE device_id = ANY(%s)
"""


@dataclass(frozen=True, slots=True)
class DataPointParams:
    """How to decode one component of one device (one row of ``device_parameters``)."""

    device_id: str
    connector_mode: str
    connector: str
    component_type: str
    component_id: str | None
    encoding_type: str
    units: str | None = None
    scaling_factor: float = 1.0
    value_signed: bool = False
    value_width_bits: int | None = None

    @property
    def component_key(self) -> ComponentKey:
        return (self.connector_mode, self.connector, self.component_type, self.component_id)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> DataPointParams:
        (device_id, mode, connector, ctype, cid, encoding, units, scaling, signed, width) = row
        return cls(
            device_id=device_id,
            connector_mode=mode,
            connector=connector,
            component_type=ctype,
            component_id=cid,
            encoding_type=encoding,
            units=units,
            scaling_factor=1.0 if scaling is None else float(scaling),
            value_signed=bool(signed),
            value_width_bits=None if width is None else int(width),
        )


class DeviceParameters:
    """Parameters for a set of devices; a device absent here has none (never guessed)."""

    def __init__(self, by_device: Mapping[str, Mapping[ComponentKey, DataPointParams]]) -> None:
        self._by_device = dict(by_device)

    @classmethod
    def from_rows(cls, rows: Iterable[DataPointParams]) -> DeviceParameters:
        by_device: dict[str, dict[ComponentKey, DataPointParams]] = {}
        for row in rows:
            by_device.setdefault(row.device_id, {})[row.component_key] = row
        return cls(by_device)

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(self._by_device)

    def components(self, device_id: str) -> Mapping[ComponentKey, DataPointParams] | None:
        return self._by_device.get(device_id)

    def find(
        self,
        device_id: str,
        connector_mode: str,
        connector: str,
        component_type: str,
        component_id: str | None,
    ) -> DataPointParams:
        """The parameters of one component; UnknownDeviceError / UnknownComponentError."""
        components = self._by_device.get(device_id)
        if not components:
            raise UnknownDeviceError(
                f"no decoding parameters for device {device_id}", device_id=device_id
            )
        key = (connector_mode, connector, component_type, component_id)
        found = components.get(key)
        if found is None:
            raise UnknownComponentError(
                f"device {device_id} has no parameters for {component_type}"
                f"{'-' + component_id if component_id else ''} on {connector} in {connector_mode}",
                device_id=device_id,
            )
        return found


Connect = Callable[[], Any]


@dataclass
class _Entry:
    components: dict[ComponentKey, DataPointParams]
    expires_at: float


class DeviceParameterStore:
    """Reads ``device_parameters`` for many devices in one query and caches them with a TTL."""

    def __init__(
        self,
        connect: Connect,
        *,
        ttl_seconds: float = 60.0,
        negative_ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_devices: int = 100_000,
    ) -> None:
        self._connect = connect
        self._conn: Any = None
        self.ttl_seconds = ttl_seconds
        self.negative_ttl_seconds = negative_ttl_seconds
        self._clock = clock
        self._max_devices = max_devices
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.queries = 0

    def get(self, device_ids: Iterable[str], fresh: Iterable[str] = ()) -> DeviceParameters:
        """Parameters for ``device_ids``: cached ones reused, the rest (and ``fresh``) fetched
        in one query."""
        wanted = set(device_ids)
        with self._lock:
            return self._get_locked(wanted, set(fresh) & wanted)

    def _get_locked(self, wanted: set[str], fresh: set[str]) -> DeviceParameters:
        now = self._clock()
        found: dict[str, dict[ComponentKey, DataPointParams]] = {}
        missing = []
        for device_id in wanted:
            entry = self._cache.get(device_id)
            if entry is None or entry.expires_at <= now or device_id in fresh:
                missing.append(device_id)
            else:
                found[device_id] = entry.components
        if missing:
            missing.sort()
            fetched = self._fetch(missing)
            if len(self._cache) + len(missing) > self._max_devices:
                self._cache.clear()
            for device_id in missing:
                components = fetched.get(device_id, {})
                ttl = self.ttl_seconds if components else self.negative_ttl_seconds
                self._cache[device_id] = _Entry(components, now + ttl)
                found[device_id] = components
        return DeviceParameters({d: c for d, c in found.items() if c})

    def invalidate(self, device_id: str | None = None) -> None:
        if device_id is None:
            self._cache.clear()
        else:
            self._cache.pop(device_id, None)

    def _fetch(self, device_ids: list[str]) -> dict[str, dict[ComponentKey, DataPointParams]]:
        rows = self._query(device_ids)
        fetched: dict[str, dict[ComponentKey, DataPointParams]] = {}
        for row in rows:
            params = DataPointParams.from_row(row)
            fetched.setdefault(params.device_id, {})[params.component_key] = params
        logger.debug("fetched parameters for %d of %d devices", len(fetched), len(device_ids))
        return fetched

    def _query(self, device_ids: list[str]) -> list[tuple[Any, ...]]:
        # One retry on a fresh connection: the database may have restarted since the last batch.
        for attempt in (1, 2):
            try:
                conn = self._connection()
                with conn.cursor() as cur:
                    self.queries += 1
                    cur.execute(PARAMETERS_QUERY, (device_ids,))
                    return list(cur.fetchall())
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                if attempt == 2:
                    raise StoreError(f"device parameter store unavailable: {exc}") from exc
                logger.warning("device parameter query failed, reconnecting: %s", exc)
            except psycopg2.Error as exc:
                self.close()
                raise StoreError(f"device parameter query failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            self._conn.set_session(readonly=True, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                logger.debug("closing the parameter store connection failed", exc_info=True)
            self._conn = None
