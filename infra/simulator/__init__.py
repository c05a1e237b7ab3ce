"""Simulated F2 controllers: ``Fleet(FleetConfig(...)).provision_all()`` then ``.run(...)``."""

from infra.simulator.catalogue import BUILTIN_CATALOGUE, MODELS, ComponentSpec
from infra.simulator.fleet import DeviceReport, Fleet, FleetConfig, FleetReport, FleetSnapshot
from infra.simulator.identity import DeviceIdentity, fleet_identities, parse_mix
from infra.simulator.network import AckedMessage
from infra.simulator.payloads import Message, MessageStream

__all__ = [
    "BUILTIN_CATALOGUE",
    "MODELS",
    "AckedMessage",
    "ComponentSpec",
    "DeviceIdentity",
    "DeviceReport",
    "Fleet",
    "FleetConfig",
    "FleetReport",
    "FleetSnapshot",
    "Message",
    "MessageStream",
    "fleet_identities",
    "parse_mix",
]
