"""The functions the connector feeds: those whose ``topic`` annotation names Kafka topics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infra.services.kit.openfaas import FunctionStatus, parse_listing


@dataclass(frozen=True, slots=True)
class FunctionTarget:
    """A function that asked, by its ``topic`` annotation, to be fed Kafka topics."""

    name: str
    topics: tuple[str, ...]
    replicas: int


def targets_of(functions: Iterable[FunctionStatus]) -> list[FunctionTarget]:
    """The listed functions that carry a ``topic`` annotation, in listing order."""
    return [FunctionTarget(f.name, f.topics, f.replicas) for f in functions if f.topics]


def targets_from_listing(listing: Any) -> list[FunctionTarget]:
    """The targets of a raw ``GET /system/functions`` answer (GatewayError when not an array)."""
    return targets_of(parse_listing(listing))
