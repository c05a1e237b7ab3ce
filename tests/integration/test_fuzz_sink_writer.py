"""Fuzzed valid measurements through the sink's writer into the real PostgreSQL: each batch is
stored exactly as it came (text with tabs, newlines, backslashes, any Unicode; extreme floats;
any time), or refused as a StoreError, never another exception."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f2lib.contracts.topics import CONNECTOR_MODES, CONNECTORS
from f2lib.errors import StoreError
from f2lib.models import Measurement
from sink.timeseries import TimescaleSink

pytestmark = pytest.mark.integration

TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("\t\n\r\\ '\"é€𝄞\u2028"),
        st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
    ),
    max_size=30,
)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
# Within the TimescaleDB retention policy's 365 days (sql/timeseries/timescaledb/040_retention.sql):
# its job drops older chunks whenever it runs, so older rows may be gone before they are read.
_NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
TIMES = st.datetimes(
    min_value=_NOW - timedelta(days=300),
    max_value=_NOW + timedelta(days=30),
    timezones=st.just(UTC),
)


@st.composite
def batches(draw: st.DrawFn) -> list[Measurement]:
    device = f"f2-{uuid.uuid4().hex[:12]}"
    count = draw(st.integers(min_value=1, max_value=5))
    out = []
    for n in range(count):
        text = draw(st.one_of(st.none(), TEXT))
        out.append(
            Measurement(
                time=draw(TIMES),
                device_id=device,
                connector_mode=draw(st.sampled_from(CONNECTOR_MODES)),
                connector=draw(st.sampled_from(CONNECTORS)),
                component_type="reader",
                component_id=f"{n}{draw(TEXT)}"[:128],
                value=draw(FLOATS) if text is None else draw(st.one_of(st.none(), FLOATS)),
                value_text=text,
                unit=draw(st.one_of(st.none(), TEXT)),
                topic=f"cmnd/{device}/x{draw(TEXT)}"[:512],
            )
        )
    return out


@pytest.fixture(scope="module")
def sink(timeseries_db: str) -> Any:
    writer = TimescaleSink(lambda: psycopg2.connect(timeseries_db))
    yield writer
    writer.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches())
def test_sink_writer__stores_any_valid_batch_exactly(
    sink: TimescaleSink, timeseries_db: str, batch: list[Measurement]
) -> None:
    try:
        sink.write(batch)
    except StoreError:
        return  # refused whole, as a database error: the connector retries, nothing half-done
    with psycopg2.connect(timeseries_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, component_id, value, value_text, unit, topic FROM iot_measurements"
            " WHERE device_id = %s",
            (batch[0].device_id,),
        )
        stored = {(row[0], row[1]): row[2:] for row in cur.fetchall()}
    conn.close()
    expected = {(m.time, m.component_id): (m.value, m.value_text, m.unit, m.topic) for m in batch}
    assert stored.keys() == expected.keys()
    for key, (value, text, unit, topic) in expected.items():
        got_value, got_text, got_unit, got_topic = stored[key]
        assert (got_text, got_unit, got_topic) == (text, unit, topic)
        assert got_value == value or (value is not None and math.isclose(got_value, value))
