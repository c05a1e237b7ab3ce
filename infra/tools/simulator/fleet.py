"""The fleet: provision every simulated device, connect them, publish, and report what was acked.

``Fleet(config).provision_all()`` issues or reuses each device's certificate;
``Fleet(config).run(duration=..., messages=...)`` returns a ``FleetReport`` with per-device
counts and the (topic, timestamp) of every acknowledged message, for verification downstream.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg2
from pydantic import SecretStr

from f2lib.errors import SimulatorError
from infra.tools.simulator.catalogue import (
    ComponentSpec,
    Connect,
    builtin_components,
    load_device_components,
)
from infra.tools.simulator.commands import DeviceCommands
from infra.tools.simulator.credentials import (
    CredentialStore,
    DeviceCredentials,
    DeviceProvisioner,
    ProvisioningClient,
)
from infra.tools.simulator.identity import DeviceIdentity, fleet_identities
from infra.tools.simulator.network import AckedMessage, DeviceLink, MqttEndpoint, Shard
from infra.tools.simulator.payloads import Clock, MessageStream, utc_now

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CERT_DIR = ROOT / "certs" / "devices"
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class FleetConfig:
    """What fleet to simulate and where it connects; endpoints come from ``make -s env``."""

    mix: Mapping[str, int]
    seed: int = 1
    rate: float = 1.0  # messages per second per device
    qos: int = 1
    cert_dir: Path = DEFAULT_CERT_DIR
    gateway_url: str | None = None
    provision_token: SecretStr | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 8883
    ca_cert: Path | None = None
    devices_dsn: SecretStr | None = None
    # "database": device_parameters after provisioning (real runs); "builtin": dry runs, tests
    catalogue: Literal["database", "builtin"] = "database"
    devices_per_thread: int = 200
    connect_timeout: float = 15.0
    drain_timeout: float = 15.0
    record_acks: bool = True
    workers: int = 8  # provisioning requests and TLS handshakes in parallel
    obey_commands: bool = True  # subscribe ctrl/<device>/# and answer downlink commands

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise SimulatorError("qos must be 0 or 1")
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise SimulatorError("rate must be a positive number of messages per second")
        if self.devices_per_thread < 1 or self.workers < 1:
            raise SimulatorError("devices_per_thread and workers must be at least 1")


@dataclass(frozen=True)
class DeviceReport:
    """One device's figures at the end of a run."""

    device_id: str
    model: str
    mac: str
    sent: int
    acked: int
    rejected: int
    written: int
    dropped: int
    unacknowledged: int
    connects: int
    disconnects: int
    last_error: str | None
    commands: int = 0  # downlink commands received
    replies: int = 0  # answers published


@dataclass
class FleetSnapshot:
    """Live figures for a progress display."""

    phase: str
    elapsed: float
    devices: int
    connected: int
    sent: int
    acked: int
    rejected: int
    written: int
    dropped: int
    outstanding: int
    qos: int
    commands: int = 0
    replies: int = 0
    listening: int = 0  # devices subscribed to their commands


@dataclass
class FleetReport:
    """The result of a run: per-device counts and every acknowledged message."""

    seed: int
    qos: int
    rate: float
    started_at: str
    finished_at: str
    duration_s: float
    interrupted: bool
    devices: list[DeviceReport] = field(default_factory=list)
    acknowledged: list[AckedMessage] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(d, name)) for d in self.devices)

    @property
    def complete(self) -> bool:
        """Every message sent was acknowledged (QoS 1) or written (QoS 0), none refused."""
        if self.total("rejected") or self.total("dropped"):
            return False
        if self.qos == 0:
            return self.total("written") == self.total("sent")
        return self.total("acked") == self.total("sent")

    def by_model(self) -> dict[str, dict[str, int]]:
        models: dict[str, dict[str, int]] = {}
        for device in self.devices:
            row = models.setdefault(
                device.model,
                dict.fromkeys(
                    ("devices", "sent", "acked", "rejected", "written", "unacknowledged"), 0
                ),
            )
            row["devices"] += 1
            for name in ("sent", "acked", "rejected", "written", "unacknowledged"):
                row[name] += int(getattr(device, name))
        return models

    def to_dict(self) -> dict[str, Any]:
        names = ("sent", "acked", "rejected", "written", "dropped", "unacknowledged")
        return {
            "seed": self.seed,
            "qos": self.qos,
            "rate_per_device": self.rate,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3),
            "interrupted": self.interrupted,
            "complete": self.complete,
            "totals": {"devices": len(self.devices), **{n: self.total(n) for n in names}},
            "by_model": self.by_model(),
            "devices": [asdict(d) for d in self.devices],
            "acknowledged": [
                {
                    "device_id": m.device_id,
                    "topic": m.topic,
                    "timestamp": m.timestamp,
                    "measurements": m.measurements,
                }
                for m in self.acknowledged
            ],
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def device_rng(seed: int, device_id: str) -> random.Random:
    """The device's own RNG: the same seed and device give the same traffic (not crypto)."""
    return random.Random(f"{seed}/{device_id}")  # noqa: S311


class Fleet:
    """Simulated F2 controllers: identities from the seed, certificates, components, traffic."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        provisioner: DeviceProvisioner | None = None,
        connect_db: Connect | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.identities: list[DeviceIdentity] = fleet_identities(dict(config.mix), config.seed)
        self.clock = clock
        if provisioner is None:
            client = None
            if config.gateway_url and config.provision_token is not None:
                client = ProvisioningClient(config.gateway_url, config.provision_token)
            provisioner = DeviceProvisioner(
                CredentialStore(config.cert_dir, config.ca_cert), client
            )
        self.provisioner = provisioner
        if connect_db is None and config.devices_dsn is not None:
            dsn = config.devices_dsn

            def connect_db() -> Any:
                return psycopg2.connect(dsn.get_secret_value(), connect_timeout=10)

        self.connect_db = connect_db
        self.credentials: dict[str, DeviceCredentials] = {}
        self.components: dict[str, tuple[ComponentSpec, ...]] = {}

    # --- preparation ---------------------------------------------------------------------------
    def provision_all(self, *, force: bool = False) -> list[DeviceCredentials]:
        """Every device's credentials: reused when stored and valid, else issued now.

        Raises SimulatorError naming every device that could not be provisioned.
        """
        return self._provision(self.identities, force=force)

    def _provision(
        self, identities: Iterable[DeviceIdentity], *, force: bool
    ) -> list[DeviceCredentials]:
        identities = list(identities)
        failures: list[str] = []

        def one(identity: DeviceIdentity) -> DeviceCredentials | None:
            try:
                return self.provisioner.ensure(identity, force=force)
            except SimulatorError as exc:
                failures.append(str(exc))
                return None

        with ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="provision"
        ) as pool:
            results = list(pool.map(one, identities))
        if failures:
            raise SimulatorError(
                f"{len(failures)} of {len(identities)} devices could not be provisioned; "
                f"first: {failures[0]}"
            )
        issued = [c for c in results if c is not None]
        for credentials in issued:
            self.credentials[credentials.device_id] = credentials
        fresh = sum(c.provisioned for c in issued)
        logger.info("credentials ready: %d issued now, %d reused", fresh, len(issued) - fresh)
        return issued

    def load_components(self) -> dict[str, tuple[ComponentSpec, ...]]:
        """Each device's components: from the database (re-provisioning a device it does not
        know, once), or from the built-in catalogue when the config says ``builtin``."""
        if self.config.catalogue == "builtin":
            self.components = {i.device_id: builtin_components(i.model) for i in self.identities}
            return self.components
        if self.connect_db is None:
            raise SimulatorError(
                "DEVICES_DSN (the secret file devices-dsn) is needed to read each device's "
                "components from device_parameters (the built-in catalogue is for dry runs only)"
            )
        found = load_device_components(self.connect_db, [i.device_id for i in self.identities])
        unknown = [i for i in self.identities if i.device_id not in found]
        if unknown and self.credentials:
            # A certificate outlived its registry row (e.g. a fresh database): register again.
            logger.warning("%d devices have no parameters; provisioning them again", len(unknown))
            self._provision(unknown, force=True)
            found.update(load_device_components(self.connect_db, [i.device_id for i in unknown]))
            unknown = [i for i in self.identities if i.device_id not in found]
        if unknown:
            names = ", ".join(i.device_id for i in unknown[:5])
            raise SimulatorError(
                f"{len(unknown)} devices have no rows in device_parameters ({names}...): "
                "their messages would be dead-lettered; provision them first"
            )
        self.components = found
        return found

    def streams(self) -> dict[str, MessageStream]:
        """A deterministic message stream per device (needs ``components``)."""
        if not self.components:
            self.load_components()
        return {
            i.device_id: MessageStream(
                i.device_id,
                self.components[i.device_id],
                device_rng(self.config.seed, i.device_id),
                self.clock,
            )
            for i in self.identities
        }

    # --- the run -------------------------------------------------------------------------------
    def run(
        self,
        *,
        duration: float | None = None,
        messages: int | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[FleetSnapshot], None] | None = None,
    ) -> FleetReport:
        """Connect every device, publish until ``duration`` seconds passed, each device sent
        ``messages``, or ``stop`` is set; wait for outstanding acknowledgements; report.

        Raises SimulatorError when a device cannot connect (nothing is published then).
        """
        if duration is None and messages is None and stop is None:
            raise SimulatorError("give a duration, a message count or a stop event")
        if not self.credentials:
            self.provision_all()
        streams = self.streams()
        links = self._links(streams, messages)
        shards = self._shards(links)
        stop = stop or threading.Event()
        tick = on_tick or (lambda _snapshot: None)
        started_at = datetime.now(UTC)
        started = time.monotonic()

        def snapshot(phase: str) -> FleetSnapshot:
            return _snapshot(phase, time.monotonic() - started, links, self.config.qos)

        try:
            self._connect(links, shards, snapshot, tick)
            for shard in shards:
                shard.publishing.set()
            publish_started = time.monotonic()
            while not stop.is_set():
                tick(snapshot("publishing"))
                if duration is not None and time.monotonic() - publish_started >= duration:
                    break
                if messages is not None and all(link.done for link in links):
                    break
                self._check_shards(shards)
                stop.wait(TICK_SECONDS)
            interrupted = stop.is_set()
            for shard in shards:
                shard.stop_publishing.set()
            drain_until = time.monotonic() + self.config.drain_timeout
            while time.monotonic() < drain_until and self._outstanding(links):
                tick(snapshot("draining"))
                self._check_shards(shards)
                time.sleep(TICK_SECONDS / 2)
            tick(snapshot("done"))
        finally:
            _close(shards)
        finished = time.monotonic()
        return self._report(links, started_at, finished - started, interrupted)

    def _links(
        self, streams: Mapping[str, MessageStream], messages: int | None
    ) -> list[DeviceLink]:
        endpoint = MqttEndpoint(
            self.config.mqtt_host, self.config.mqtt_port, self.config.ca_cert, self.config.qos
        )
        links = []
        for identity in self.identities:
            credentials = self.credentials[identity.device_id]
            ca = self.config.ca_cert or credentials.ca_path
            if not Path(ca).exists():
                raise SimulatorError(f"CA certificate {ca} not found (set CA_CERT or --ca)")
            links.append(
                DeviceLink(
                    device_id=identity.device_id,
                    model=identity.model,
                    stream=streams[identity.device_id],
                    cert_path=credentials.cert_path,
                    key_path=credentials.key_path,
                    ca_path=Path(ca),
                    endpoint=endpoint,
                    interval=1.0 / self.config.rate,
                    quota=messages,
                    record_acks=self.config.record_acks,
                    commands=(
                        DeviceCommands(identity.device_id, streams[identity.device_id])
                        if self.config.obey_commands
                        else None
                    ),
                )
            )
        return links

    def _shards(self, links: list[DeviceLink]) -> list[Shard]:
        size = self.config.devices_per_thread
        return [
            Shard(f"sim-shard-{n}", links[i : i + size])
            for n, i in enumerate(range(0, len(links), size))
        ]

    def _connect(
        self,
        links: list[DeviceLink],
        shards: list[Shard],
        snapshot: Callable[[str], FleetSnapshot],
        tick: Callable[[FleetSnapshot], None],
    ) -> None:
        failures: dict[str, str] = {}

        def handshake(link: DeviceLink) -> None:
            try:
                link.connect()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                link.refused = f"{exc.__class__.__name__}: {exc}"
                failures[link.device_id] = link.refused

        with ThreadPoolExecutor(
            max_workers=self.config.workers, thread_name_prefix="connect"
        ) as pool:
            list(pool.map(handshake, links))
        endpoint = f"{self.config.mqtt_host}:{self.config.mqtt_port}"
        if failures:
            first = next(iter(failures.items()))
            raise SimulatorError(
                f"{len(failures)} of {len(links)} devices could not connect to {endpoint} "
                f"over mTLS; first: {first[0]}: {first[1]}"
            )
        for shard in shards:
            shard.start()
        deadline = time.monotonic() + self.config.connect_timeout
        while time.monotonic() < deadline:
            tick(snapshot("connecting"))
            self._check_shards(shards)
            if all(link.connected or link.refused for link in links):
                break
            time.sleep(0.05)
        problems = {
            link.device_id: link.refused or link.last_error or "no CONNACK in time"
            for link in links
            if not link.connected
        }
        if problems:
            first = next(iter(problems.items()))
            raise SimulatorError(
                f"{len(problems)} of {len(links)} devices were not accepted by {endpoint}; "
                f"first: {first[0]}: {first[1]}"
            )
        logger.info("%d devices connected to %s", len(links), endpoint)

    @staticmethod
    def _check_shards(shards: list[Shard]) -> None:
        for shard in shards:
            if shard.error is not None:
                raise SimulatorError(f"{shard.name} failed: {shard.error!r}") from shard.error

    def _outstanding(self, links: list[DeviceLink]) -> bool:
        if self.config.qos == 0:
            return any(
                link.counters.written + link.counters.dropped < link.counters.sent for link in links
            )
        return any(link.outstanding for link in links)

    def _report(
        self, links: list[DeviceLink], started_at: datetime, duration: float, interrupted: bool
    ) -> FleetReport:
        macs = {i.device_id: i.mac_colons for i in self.identities}
        report = FleetReport(
            seed=self.config.seed,
            qos=self.config.qos,
            rate=self.config.rate,
            started_at=started_at.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            duration_s=duration,
            interrupted=interrupted,
        )
        for link in links:
            c = link.counters
            report.devices.append(
                DeviceReport(
                    device_id=link.device_id,
                    model=link.model,
                    mac=macs[link.device_id],
                    sent=c.sent,
                    acked=c.acked,
                    rejected=c.rejected,
                    written=c.written,
                    dropped=c.dropped,
                    unacknowledged=link.outstanding if self.config.qos else 0,
                    connects=c.connects,
                    disconnects=c.disconnects,
                    last_error=link.last_error,
                    commands=link.commands.counters.received if link.commands else 0,
                    replies=c.replies,
                )
            )
            report.acknowledged.extend(link.acked_messages)
        return report


def _close(shards: list[Shard]) -> None:
    """End every shard (it disconnects its devices); close the sockets of unstarted ones."""
    for shard in shards:
        shard.finish.set()
    for shard in shards:
        if shard.ident is not None:
            shard.join(timeout=10)
            continue
        for link in shard.links:
            link.closing = True
            sock = link.client.socket()
            if sock is not None:
                link.disconnect()


def _snapshot(phase: str, elapsed: float, links: list[DeviceLink], qos: int) -> FleetSnapshot:
    return FleetSnapshot(
        phase=phase,
        elapsed=elapsed,
        devices=len(links),
        connected=sum(link.connected for link in links),
        sent=sum(link.counters.sent for link in links),
        acked=sum(link.counters.acked for link in links),
        rejected=sum(link.counters.rejected for link in links),
        written=sum(link.counters.written for link in links),
        dropped=sum(link.counters.dropped for link in links),
        outstanding=sum(link.outstanding for link in links),
        qos=qos,
        commands=sum(link.commands.counters.received for link in links if link.commands),
        replies=sum(link.counters.replies for link in links),
        listening=sum(link.listening for link in links),
    )
