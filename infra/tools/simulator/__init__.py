"""Simulated F2 controllers: ``Fleet(FleetConfig(...)).provision_all()`` then ``.run(...)``."""

from f2lib.contracts.devices import MODELS
from infra.tools.simulator.catalogue import BUILTIN_CATALOGUE, ComponentSpec
from infra.tools.simulator.fleet import DeviceReport, Fleet, FleetConfig, FleetReport, FleetSnapshot
from infra.tools.simulator.identity import DeviceIdentity, fleet_identities, parse_mix
from infra.tools.simulator.network import AckedMessage
from infra.tools.simulator.payloads import Message, MessageStream

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
