"""The simulator against real services: the provision function (template-served), PostgreSQL
device registry, and Mosquitto's mTLS listener; every acknowledged message reaches the
internal listener, where the bridge subscribes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg2
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from f2lib.contracts.devices import MODELS
from f2lib.errors import SimulatorError
from infra.local.launch.mosquitto import MosquittoServer
from infra.local.ports import free_port
from infra.tools.simulator import Fleet, FleetConfig, FleetReport, FleetSnapshot, parse_mix
from infra.tools.simulator.credentials import CredentialStore, DeviceProvisioner, ProvisioningClient
from provision.pki import CertificateAuthority
from tests.fixtures.provision import FunctionEndpoint
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SEED = 20230526
PER_MODEL = 2
MESSAGES = 16  # the largest template (F2-214) has 16 components: each is sent once


class InternalListener:
    """A subscriber to ``cmnd/#`` on the broker's internal (password) listener."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="sim-test-monitor", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(broker.username, broker.password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("cmnd/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert subscribed.wait(10), "the internal listener did not confirm the subscription"

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, message.payload))

    def keys(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter((t, json.loads(p)["timestamp"]) for t, p in self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener(secure_mosquitto: MosquittoServer) -> Iterator[InternalListener]:
    monitor = InternalListener(secure_mosquitto)
    yield monitor
    monitor.close()


def _config(
    tmp_path: Path,
    fn: FunctionEndpoint,
    broker: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
    **kw: object,
) -> FleetConfig:
    values: dict[str, object] = dict(
        mix=parse_mix("all", PER_MODEL * len(MODELS)),
        seed=SEED,
        rate=10.0,
        qos=1,
        cert_dir=tmp_path / "devices",
        gateway_url=fn.url.removesuffix("/function/provision"),
        provision_token=SecretStr(fn.token),
        mqtt_host=broker.host,
        mqtt_port=broker.tls_port,
        ca_cert=certs_dir / "ca.crt",
        devices_dsn=SecretStr(registry_db),
    )
    values.update(kw)
    return FleetConfig(**values)  # type: ignore[arg-type]


def _wait_for(listener: InternalListener, report: FleetReport, timeout: float = 10.0) -> None:
    expected = Counter((m.topic, m.timestamp) for m in report.acknowledged)
    wait_for(
        lambda: expected <= listener.keys(),
        timeout=timeout,
        interval=0.1,
        message=lambda: f"{len(expected - listener.keys())} acknowledged messages not received",
    )


class Progress:
    """The fleet's live figures (``Fleet.run(on_tick=...)``, about four times a second)."""

    def __init__(self) -> None:
        self.last: FleetSnapshot | None = None

    def __call__(self, snapshot: FleetSnapshot) -> None:
        self.last = snapshot

    def reached(self, what: str, check: Callable[[FleetSnapshot], bool], timeout: float) -> None:
        wait_for(
            lambda: self.last is not None and check(self.last),
            timeout=timeout,
            interval=0.1,
            message=lambda: f"the fleet never reached: {what}; last figures {self.last}",
        )


def test_fleet_of_every_model_provisions_publishes_and_every_ack_reaches_the_broker(
    tmp_path: Path,
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
    listener: InternalListener,
) -> None:
    fleet = Fleet(_config(tmp_path, provision_fn, secure_mosquitto, certs_dir, registry_db))

    credentials = fleet.provision_all()
    report = fleet.run(messages=MESSAGES)

    assert len(credentials) == PER_MODEL * len(MODELS) and all(c.provisioned for c in credentials)
    with psycopg2.connect(registry_db) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT device_id, model FROM device WHERE device_id = ANY(%s)",
            ([i.device_id for i in fleet.identities],),
        )
        assert dict(cur.fetchall()) == {i.device_id: i.model for i in fleet.identities}
    totals = report.to_dict()["totals"]
    assert totals["sent"] == MESSAGES * PER_MODEL * len(MODELS)
    assert totals["acked"] == totals["sent"] and report.complete, report.to_dict()["devices"]
    assert set(report.by_model()) == set(MODELS)
    _wait_for(listener, report)
    received = listener.keys()
    acked = Counter((m.topic, m.timestamp) for m in report.acknowledged)
    assert len(acked) == totals["acked"]  # every acknowledged message is distinct
    missing = acked - received
    assert not missing, f"{len(missing)} acknowledged messages never reached the broker"
    assert all(received[key] == 1 for key in acked), "a message arrived twice"
    # each device reported every component of its template, on its own topics only
    for identity in fleet.identities:
        topics = {t for t, _ in acked if t.startswith(f"cmnd/{identity.device_id}/")}
        assert topics == {c.topic(identity.device_id) for c in fleet.components[identity.device_id]}


def test_second_run_with_the_same_seed_reuses_certificates_and_sends_the_same_payloads(
    tmp_path: Path,
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
    listener: InternalListener,
) -> None:
    config = _config(
        tmp_path,
        provision_fn,
        secure_mosquitto,
        certs_dir,
        registry_db,
        mix={"F2-215": 1, "F2-401": 1},
        record_acks=True,
    )
    first = Fleet(config)
    first.provision_all()
    report = first.run(messages=6)
    _wait_for(listener, report)
    payloads_first = sorted((t, json.loads(p)) for t, p in listener.received)
    listener.received.clear()

    again = Fleet(config)
    reused = again.provision_all()
    report_again = again.run(messages=6)
    _wait_for(listener, report_again)
    payloads_again = sorted((t, json.loads(p)) for t, p in listener.received)

    assert not any(c.provisioned for c in reused)
    assert report_again.complete
    strip = [(t, {k: v for k, v in p.items() if k != "timestamp"}) for t, p in payloads_first]
    strip_again = [(t, {k: v for k, v in p.items() if k != "timestamp"}) for t, p in payloads_again]
    assert sorted(map(str, strip)) == sorted(map(str, strip_again))


def test_a_broker_that_is_not_listening_fails_the_run_before_publishing(
    tmp_path: Path,
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
) -> None:
    config = _config(
        tmp_path,
        provision_fn,
        secure_mosquitto,
        certs_dir,
        registry_db,
        mix={"F2-212": 1},
        mqtt_port=free_port(),
        connect_timeout=3.0,
    )
    fleet = Fleet(config)
    fleet.provision_all()
    with pytest.raises(SimulatorError, match=r"could not connect to 127\.0\.0\.1:\d+ over mTLS"):
        fleet.run(messages=1)


def test_a_certificate_from_another_ca_is_refused_by_the_broker(
    tmp_path: Path,
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
) -> None:
    rogue = CertificateAuthority.generate("rogue CA")
    rogue_ca = tmp_path / "rogue-ca.crt"
    rogue_ca.write_bytes(rogue.certificate_pem)
    config = _config(
        tmp_path,
        provision_fn,
        secure_mosquitto,
        certs_dir,
        registry_db,
        mix={"F2-212": 1},
        connect_timeout=5.0,
    )
    fleet = Fleet(config)
    fleet.provision_all()
    # Replace the device's certificate by one of a CA the broker does not trust.
    identity = fleet.identities[0]
    issued = rogue.issue_client_certificate(identity.device_id)
    folder = tmp_path / "devices" / identity.device_id
    (folder / "device.crt").write_bytes(issued.certificate_pem)
    (folder / "device.key").write_bytes(issued.private_key_pem or b"")
    store = CredentialStore(tmp_path / "devices", rogue_ca)
    client = ProvisioningClient(config.gateway_url or "", SecretStr(provision_fn.token))
    fleet = Fleet(config, provisioner=DeviceProvisioner(store, client))
    fleet.provision_all()
    started = time.monotonic()
    with pytest.raises(SimulatorError, match=r"could not connect|not accepted") as refused:
        fleet.run(messages=1)
    assert identity.device_id in str(refused.value)
    assert time.monotonic() - started < 4.0, "a refusal should not wait for the timeout"


def test_publishes_refused_by_the_acl_count_as_rejected_not_acknowledged(
    tmp_path: Path,
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
) -> None:
    config = _config(
        tmp_path,
        provision_fn,
        secure_mosquitto,
        certs_dir,
        registry_db,
        mix={"F2-301": 1},
        seed=SEED + 1,
        rate=20.0,
        drain_timeout=3.0,
    )
    fleet = Fleet(config)
    fleet.provision_all()
    device_id = fleet.identities[0].device_id
    stop = threading.Event()
    reports: list[FleetReport] = []
    progress = Progress()
    runner = threading.Thread(target=lambda: reports.append(fleet.run(stop=stop, on_tick=progress)))
    runner.start()
    try:
        progress.reached("acknowledged publishes", lambda f: f.acked > 0, timeout=30)
        # Revocation removes the device's ACL lines and reloads the broker: the connected
        # device's next publishes are answered "Not authorized".
        assert provision_fn.delete(device_id).status_code == 200
        progress.reached("refused publishes", lambda f: f.rejected > 0, timeout=30)
    finally:
        stop.set()
        runner.join(30)
    (report,) = reports
    device = report.devices[0]
    assert device.acked > 0
    assert device.rejected > 0, report.to_dict()["devices"]
    assert not report.complete
    assert device.acked == len(report.acknowledged)
    assert "Not authorized" in (device.last_error or "")


def test_qos0_counts_written_messages_and_lists_no_acknowledgements(
    tmp_path: Path,
    provision_fn: FunctionEndpoint,
    secure_mosquitto: MosquittoServer,
    certs_dir: Path,
    registry_db: str,
    listener: InternalListener,
) -> None:
    config = _config(
        tmp_path,
        provision_fn,
        secure_mosquitto,
        certs_dir,
        registry_db,
        mix={"F2-213": 1, "F2-403": 1},
        qos=0,
    )
    fleet = Fleet(config)
    fleet.provision_all()
    report = fleet.run(messages=10)
    totals = report.to_dict()["totals"]
    assert totals["sent"] == totals["written"] == 20
    assert totals["acked"] == 0 and report.acknowledged == []
    assert report.complete
    ours = {i.device_id for i in fleet.identities}
    wait_for(
        lambda: sum(t.split("/")[1] in ours for t, _ in listener.received) >= 20,
        timeout=5,
        interval=0.1,
        message="QoS 0 messages lost on loopback",
    )
    assert sum(t.split("/")[1] in ours for t, _ in listener.received) == 20  # loopback: no loss


def test_a_broker_restart_mid_run_is_survived_and_every_message_is_acknowledged(
    tmp_path: Path,
    runtime_root: Path,
    provision_fn: FunctionEndpoint,
    certs_dir: Path,
    registry_db: str,
    secure_mosquitto: MosquittoServer,
) -> None:
    from tests.fixtures.provision import tls_files

    broker = MosquittoServer(
        runtime_root / f"mosquitto-restart-{uuid.uuid4().hex[:6]}",
        free_port(),
        tls_port=free_port(),
        tls=tls_files(certs_dir),
    )
    config = _config(
        tmp_path,
        provision_fn,
        broker,
        certs_dir,
        registry_db,
        mix={"F2-212": 1, "F2-401": 1},
        rate=10.0,
        drain_timeout=20.0,
    )
    fleet = Fleet(config)
    fleet.provision_all()  # before the broker starts: the function reloads only its own broker
    broker.start()
    try:
        stop = threading.Event()
        reports: list[FleetReport] = []
        progress = Progress()
        runner = threading.Thread(
            target=lambda: reports.append(fleet.run(stop=stop, on_tick=progress))
        )
        runner.start()
        try:
            progress.reached("acknowledged publishes", lambda f: f.acked > 0, timeout=30)
            broker.stop()
            progress.reached("every device disconnected", lambda f: f.connected == 0, 30)
            # devices keep publishing into paho's queue meanwhile
            queued_from = progress.last.sent if progress.last else 0
            progress.reached("publishes while down", lambda f: f.sent > queued_from, 30)
            broker.start()
            # backoff 1 s then 2 s; then what was queued is acknowledged
            progress.reached("every device back", lambda f: f.connected == f.devices, 60)
            progress.reached("acks after the restart", lambda f: f.acked > queued_from, 60)
        finally:
            stop.set()
            runner.join(60)
    finally:
        broker.stop()
    (report,) = reports
    totals = report.to_dict()["totals"]
    assert all(d.disconnects >= 1 and d.connects >= 2 for d in report.devices), report.devices
    assert totals["sent"] > 0 and totals["rejected"] == 0
    assert totals["acked"] == totals["sent"], report.to_dict()["devices"]
