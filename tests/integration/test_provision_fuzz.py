"""Fuzzed bodies into the real provisioning function (served by the template over HTTP): a 4xx
naming the problem with the registry, ACL and CRL as they were, or a device provisioned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.provision import FunctionEndpoint
from tests.fuzz_support import BODIES, PROVISION_FIELDS, dumps

pytestmark = pytest.mark.integration


def registry_state(dsn: str, certs_dir: Path) -> tuple[Any, ...]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM device ORDER BY device_id")
        devices = cur.fetchall()
        cur.execute("SELECT serial, revoked_at FROM device_certificate ORDER BY serial")
        certificates = cur.fetchall()
    conn.close()
    files = tuple((certs_dir / name).read_bytes() for name in ("devices.acl", "crl.pem"))
    return devices, certificates, files


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(BODIES, PROVISION_FIELDS.map(dumps)))
def test_fuzzed_bodies__get_a_named_4xx_and_change_nothing_or_provision_a_device(
    provision_fn: FunctionEndpoint, registry_db: str, certs_dir: Path, body: bytes
) -> None:
    before = registry_state(registry_db, certs_dir)
    answer = requests.post(
        provision_fn.url,
        data=body,
        headers={
            "Authorization": f"Bearer {provision_fn.token}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    if answer.status_code == 201:
        assert answer.json()["device_id"].startswith("f2-")
        return
    assert 400 <= answer.status_code < 500, (body[:200], answer.status_code, answer.text[:200])
    error = answer.json()
    assert error["error"] and error["message"]
    assert registry_state(registry_db, certs_dir) == before
