"""The fleet's shape: model mix, deterministic MACs, built-in catalogue, report, dry-run CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from f2lib.contracts.devices import MODELS
from f2lib.errors import SimulatorError
from infra.tools.simulator import __main__ as cli
from infra.tools.simulator.catalogue import BUILTIN_CATALOGUE
from infra.tools.simulator.fleet import DeviceReport, Fleet, FleetConfig, FleetReport
from infra.tools.simulator.identity import device_mac, fleet_identities, parse_mix
from infra.tools.simulator.network import AckedMessage
from provision.registry import normalize_mac

REPO = Path(__file__).resolve().parents[2]
SQL_TEMPLATES = REPO / "sql" / "devices" / "010_model_templates.sql"


def test_mix_all_spreads_devices_over_every_model_round_robin() -> None:
    assert parse_mix("all", 9) == {
        "F2-212": 2,
        "F2-213": 2,
        "F2-214": 1,
        "F2-215": 1,
        "F2-301": 1,
        "F2-401": 1,
        "F2-403": 1,
    }
    assert parse_mix("all", None) == dict.fromkeys(MODELS, 1)


def test_mix_with_counts_is_taken_as_given() -> None:
    assert parse_mix("F2-212:2, f2-401:1", None) == {"F2-212": 2, "F2-401": 1}
    # bare models share --devices in the order given; the answer is in catalogue order
    assert parse_mix("F2-401,F2-212", 3) == {"F2-212": 1, "F2-401": 2}


@pytest.mark.parametrize(
    ("spec", "devices", "message"),
    [
        ("F2-999:1", None, "unknown model"),
        ("F2-212:2,F2-212:1", None, "named twice"),
        ("F2-212:2", 5, "disagrees"),
        ("F2-212:x", None, "not a number"),
        ("F2-212:2,F2-401", None, "mixes"),
        ("all", 0, "empty"),
    ],
)
def test_bad_mixes_are_refused_with_the_reason(
    spec: str, devices: int | None, message: str
) -> None:
    with pytest.raises(SimulatorError, match=message):
        parse_mix(spec, devices)


def test_macs_are_deterministic_locally_administered_unicast_and_accepted() -> None:
    first = fleet_identities(parse_mix("all", 21), seed=7)
    again = fleet_identities(parse_mix("all", 21), seed=7)
    other = fleet_identities(parse_mix("all", 21), seed=8)
    assert [i.mac for i in first] == [i.mac for i in again]
    assert not {i.mac for i in first} & {i.mac for i in other}
    assert len({i.mac for i in first}) == 21
    for identity in first:
        assert identity.mac.startswith("02f2")
        assert normalize_mac(identity.mac_colons) == identity.mac  # the function's own check
        assert re.fullmatch(r"f2-[0-9a-f]{12}", identity.device_id)


def test_a_device_keeps_its_mac_when_the_mix_changes() -> None:
    small = {i.device_id: i.model for i in fleet_identities({"F2-401": 1}, seed=3)}
    large = {i.device_id: i.model for i in fleet_identities(parse_mix("all", 14), seed=3)}
    assert small.items() <= large.items()
    assert device_mac(3, "F2-401", 0) in {i.removeprefix("f2-") for i in small}


def test_builtin_catalogue_mirrors_the_sql_templates() -> None:
    sql = SQL_TEMPLATES.read_text()
    for model, template in BUILTIN_CATALOGUE.items():
        for c in template.components:
            if c.encoding_type == "hex_to_float":
                row = (
                    f"('{model}', '{c.connector}', 'sensor',        '{c.component_id}', "
                    f"'hex_to_float', '{c.units}'"
                )
                assert row in sql, row
            else:
                assert f"('{model}', '{c.connector}', '{c.connector_mode}'" in sql


def test_fleet_with_the_builtin_catalogue_gives_every_device_its_model_s_components() -> None:
    fleet = Fleet(FleetConfig(mix=parse_mix("all", 7), catalogue="builtin"))
    components = fleet.load_components()
    for identity in fleet.identities:
        assert components[identity.device_id] == BUILTIN_CATALOGUE[identity.model].components


def test_fleet_without_a_database_refuses_to_guess_components() -> None:
    fleet = Fleet(FleetConfig(mix={"F2-212": 1}))
    with pytest.raises(SimulatorError, match="DEVICES_DSN"):
        fleet.load_components()


@pytest.mark.parametrize(
    ("kw", "message"), [({"qos": 2}, "qos"), ({"rate": 0}, "rate"), ({"workers": 0}, "at least 1")]
)
def test_config_rejects_impossible_values(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SimulatorError, match=message):
        FleetConfig(mix={"F2-212": 1}, **kw)  # type: ignore[arg-type]


def _report(qos: int, **counts: int) -> FleetReport:
    device = dict(
        device_id="f2-02f200000001",
        model="F2-212",
        mac="02:f2:00:00:00:01",
        sent=3,
        acked=3,
        rejected=0,
        written=0,
        dropped=0,
        unacknowledged=0,
        connects=1,
        disconnects=0,
        last_error=None,
    )
    device.update(counts)
    return FleetReport(
        seed=1,
        qos=qos,
        rate=1.0,
        started_at="s",
        finished_at="f",
        duration_s=1.0,
        interrupted=False,
        devices=[DeviceReport(**device)],  # type: ignore[arg-type]
        acknowledged=[AckedMessage("f2-02f200000001", "cmnd/t", "ts", 2)],
    )


def test_report_is_complete_only_when_every_sent_message_was_acknowledged() -> None:
    assert _report(1).complete
    assert not _report(1, acked=2, unacknowledged=1).complete
    assert not _report(1, rejected=1, acked=2).complete
    assert _report(0, acked=0, written=3).complete
    data = _report(1).to_dict()
    assert data["totals"]["acked"] == 3
    assert data["acknowledged"] == [
        {"device_id": "f2-02f200000001", "topic": "cmnd/t", "timestamp": "ts", "measurements": 2}
    ]
    assert data["by_model"]["F2-212"]["devices"] == 1


def test_dry_run_prints_each_devices_messages_as_json_lines() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.tools.simulator",
            "--dry-run",
            "--models",
            "F2-401:2",
            "--messages",
            "4",
            "--seed",
            "9",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 8
    assert {line["device_id"] for line in lines} == {
        f"f2-{device_mac(9, 'F2-401', n)}" for n in range(2)
    }
    assert all(line["topic"].startswith(f"cmnd/{line['device_id']}/sensor-mode/") for line in lines)


def test_cli_exits_1_with_a_clear_message_when_provisioning_is_impossible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("GATEWAY_URL", "PROVISION_TOKEN", "DEVICES_DSN", "CA_CERT", "F2_SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("F2_STATE_DIR", str(tmp_path / "no-stack"))
    code = cli.main(
        [
            "--models",
            "F2-212:1",
            "--messages",
            "1",
            "--cert-dir",
            str(tmp_path / "devices"),
            "--no-progress",
        ]
    )
    assert code == 1
    assert "no gateway to provision it" in capsys.readouterr().out
