"""The per-message baseline: the original POC's design, on the pipeline's input.

Per message, as the POC's data processor and sink did it: one parameter query for the device,
one decode, one INSERT of the message's rows and a commit. It reads its input from memory (no
MQTT or Kafka in front), so its figure is an upper bound of that design on this machine and
the pipeline's ratio to it is conservative.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import psycopg2
from psycopg2 import sql

from decode.decoding import decode_record
from decode.params import PARAMETERS_QUERY, DataPointParams, DeviceParameters
from f2lib.contracts.invocation import ConnectorRecord
from f2lib.models import MEASUREMENT_COLUMNS
from infra.tools.bench.raw import StageRate

logger = logging.getLogger(__name__)


def per_message(
    devices_dsn: str, timeseries_dsn: str, records: Sequence[ConnectorRecord]
) -> StageRate:
    """Process ``records`` one at a time; messages per second until the last commit."""
    params_conn = psycopg2.connect(devices_dsn)
    params_conn.set_session(readonly=True, autocommit=True)
    store = psycopg2.connect(timeseries_dsn)
    insert = (
        sql.SQL("INSERT INTO iot_measurements ({}) VALUES ")
        .format(sql.SQL(", ").join(map(sql.Identifier, MEASUREMENT_COLUMNS)))
        .as_string(store)
    )
    placeholders = "(" + ", ".join(["%s"] * len(MEASUREMENT_COLUMNS)) + ")"
    rows = 0
    try:
        with store.cursor() as cur:
            cur.execute("TRUNCATE iot_measurements")
        store.commit()
        started = time.perf_counter()
        with params_conn.cursor() as pcur, store.cursor() as cur:
            for record in records:
                device = record.key or ""
                pcur.execute(PARAMETERS_QUERY, ([device],))
                params = DeviceParameters.from_rows(
                    DataPointParams.from_row(row) for row in pcur.fetchall()
                )
                measurements = decode_record(record, params)
                values = [tuple(getattr(m, c) for c in MEASUREMENT_COLUMNS) for m in measurements]
                cur.execute(
                    insert + ", ".join([placeholders] * len(values)),
                    [v for row in values for v in row],
                )
                store.commit()
                rows += len(values)
        seconds = time.perf_counter() - started
        with store.cursor() as cur:
            cur.execute("TRUNCATE iot_measurements")
        store.commit()
    finally:
        params_conn.close()
        store.close()
    return StageRate(len(records), seconds, "messages", {"rows": rows})
