"""Payloads for every component kind of a device template, and the rows each must give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def stamp(offset_ms: int = 0) -> str:
    moment = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC) + timedelta(milliseconds=offset_ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def component_name(param: dict[str, Any]) -> str:
    cid = param["component_id"]
    return f"{param['component_type']}-{cid}" if cid else param["component_type"]


def payload_for(
    param: dict[str, Any], offset_ms: int
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """A payload for one component and the (component_id, expected value) rows it must give."""
    ts = stamp(offset_ms)
    encoding = param["encoding_type"]
    cid = param["component_id"] or ""
    if encoding == "boolean":
        return {"timestamp": ts, "status": True}, [(cid, 1.0)]
    if encoding == "boolean_map":
        member = param["component_type"].rstrip("s")
        return (
            {"timestamp": ts, f"{member}-1": True, f"{member}-2": False},
            [(f"{member}-1", 1.0), (f"{member}-2", 0.0)],
        )
    if encoding == "hex_to_float":
        return {"timestamp": ts, "data": "00fa"}, [(cid, 250 * param["scaling_factor"])]
    if encoding == "raw_string":
        return {"timestamp": ts, "data": "b'\"Hello World\"'"}, [(cid, '"Hello World"')]
    raise AssertionError(f"unknown encoding {encoding}")
