"""The certs CLI: ``init`` the CA and credentials, ``sync`` the ACL/CRL, ``register`` a device.

Layout written by ``init`` (all git-ignored; private keys and secrets 0600)::

    certs/ca.crt  certs/server.crt  certs/server.key  certs/crl.pem  certs/devices.acl
    certs/secrets/{ca-key, ca-crt, provision-token, mqtt-username, mqtt-password,
                   basic-auth-user, basic-auth-password}

``certs/secrets`` is an OpenFaaS-style secrets folder (``F2_SECRETS_DIR``). ``register`` and
``sync`` read their secrets (``provision-token``, ``devices-dsn``) from files only: the file
given (``--token-file``, ``--dsn-file``), else ``$F2_SECRETS_DIR`` when set (``make -s env``
exports the local stack's), else ``<dir>/secrets``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bridge.config import DEFAULT_MQTT_USERNAME
from f2lib.contracts.devices import MODELS
from f2lib.errors import ConfigError, F2PipeError
from f2lib.secrets import SECRETS_DIR_ENV, SecretStore, read_secret_file
from infra.services.kit.openfaas import OpenFaaSClient, TimeoutConfig, pooled_session
from provision.pki import (
    CertificateAuthority,
    certificate_pem,
    crl_pem,
    generate_csr,
    generate_key,
    load_certificate,
    private_key_pem,
)
from provision.publishers import FilesystemPublisher, PidFileReloader, write_atomic
from provision.registry import (
    ACL_FILE,
    CRL_FILE,
    DeviceRegistry,
    RegistrySync,
    device_id_for,
    render_acl,
)

logger = logging.getLogger(__name__)

SECRETS_DIR = "secrets"
GATEWAY_USER = "admin"


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)
    path.chmod(0o600)


def _write_public(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o644)


def load_ca(directory: Path) -> CertificateAuthority:
    secret_dir = directory / SECRETS_DIR
    return CertificateAuthority.from_pem(
        (secret_dir / "ca-crt").read_bytes(), (secret_dir / "ca-key").read_bytes()
    )


def init(
    directory: Path,
    hosts: Sequence[str],
    *,
    force: bool = False,
    mqtt_username: str = DEFAULT_MQTT_USERNAME,
) -> list[str]:
    """Create whatever is missing; return the names written. Existing material is kept.

    ``mqtt_username`` names the internal MQTT user (the bridge's) in ``secrets/mqtt-username``.
    """
    written: list[str] = []
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # the broker's user reads the live ACL and CRL here
    secret_dir = directory / SECRETS_DIR
    secret_dir.mkdir(exist_ok=True)
    secret_dir.chmod(0o700)

    if force or not (secret_dir / "ca-key").exists():
        ca = CertificateAuthority.generate()
        _write_private(secret_dir / "ca-key", ca.private_key_pem)
        _write_public(secret_dir / "ca-crt", ca.certificate_pem)
        (secret_dir / "ca-crt").chmod(0o600)
        written += ["secrets/ca-key", "secrets/ca-crt"]
        force = True  # everything signed by an old CA must go
    ca = load_ca(directory)
    _write_public(directory / "ca.crt", ca.certificate_pem)

    if (
        force
        or not (directory / "server.crt").exists()
        or not ca.issued(load_certificate((directory / "server.crt").read_bytes()))
    ):
        server = ca.issue_server_certificate(list(hosts))
        assert server.private_key is not None
        _write_private(directory / "server.key", private_key_pem(server.private_key))
        _write_public(directory / "server.crt", certificate_pem(server.certificate))
        written += ["server.crt", "server.key"]

    if force or not (directory / CRL_FILE).exists():
        _write_public(directory / CRL_FILE, crl_pem(ca.build_crl([])))
        written.append(CRL_FILE)
    if force or not (directory / ACL_FILE).exists():
        _write_public(directory / ACL_FILE, render_acl([]).encode())
        written.append(ACL_FILE)

    generated: dict[str, Callable[[], str]] = {
        "provision-token": lambda: secrets.token_urlsafe(32),
        "mqtt-username": lambda: mqtt_username,
        "mqtt-password": lambda: secrets.token_urlsafe(24),
        "basic-auth-user": lambda: GATEWAY_USER,
        "basic-auth-password": lambda: secrets.token_urlsafe(24),
    }
    for name, make in generated.items():
        if not (secret_dir / name).exists():
            _write_private(secret_dir / name, (make() + "\n").encode())
            written.append(f"secrets/{name}")
    return written


def sync(directory: Path, dsn: str, pid_file: Path | None) -> dict[str, Any]:
    """Regenerate the ACL and a freshly signed CRL in ``directory`` from the registry database."""
    ca = load_ca(directory)
    registry = DeviceRegistry.from_dsn(dsn)
    publisher = FilesystemPublisher(directory, ca.certificate, PidFileReloader(pid_file))
    bundle = RegistrySync(ca, registry, publisher).sync()
    return {"devices": bundle.devices, "revoked": bundle.revoked}


def register(
    mac: str,
    *,
    model: str,
    serial_number: str,
    url: str,
    token: SecretStr,
    out_dir: Path,
    generate_on_server: bool = False,
    ca_cert: Path | None = None,
    timeout: float = 30.0,
) -> Path:
    """Make a key and CSR here, call the provisioning endpoint, write ``out_dir/<device_id>/``.

    ``url`` is the endpoint, ``<gateway>/function/<name>``; ``ca_cert`` verifies an HTTPS
    gateway against that CA instead of the system's.
    """
    gateway_url, _, function = url.rpartition("/function/")
    if not gateway_url or not function:
        raise ConfigError(f"provision URL {url} is not <gateway>/function/<name>")
    device_id = device_id_for(mac)
    target = out_dir / device_id
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)
    body: dict[str, str] = {"mac": mac, "model": model, "serial_number": serial_number}
    key = None
    if not generate_on_server:
        key = generate_key()
        body["csr"] = generate_csr(key, device_id).decode()
    session = pooled_session()
    session.verify = str(ca_cert) if ca_cert is not None else True
    headers = {
        "Authorization": f"Bearer {token.get_secret_value()}",
        "Content-Type": "application/json",
    }
    with OpenFaaSClient(
        gateway_url, session=session, timeouts=TimeoutConfig(connect_s=timeout)
    ) as gw:
        reply = gw.invoke(function, json.dumps(body).encode(), headers, timeout_s=timeout)
    try:
        answer = reply.json()
    except ValueError:
        answer = {"error": "not_json", "message": reply.body[:200]}
    if reply.status != 201:
        raise F2PipeError(
            f"provisioning refused ({reply.status}): {answer.get('error')}: {answer.get('message')}"
        )
    key_pem = private_key_pem(key) if key is not None else answer["private_key"].encode()
    _write_private(target / "device.key", key_pem)
    _write_public(target / "device.crt", answer["certificate"].encode())
    _write_public(target / "ca.crt", answer["ca_certificate"].encode())
    keep = ("device_id", "serial", "not_after", "fingerprint")
    meta = {k: answer[k] for k in keep if k in answer}
    meta.update(model=model, serial_number=serial_number)
    _write_public(target / "device.json", json.dumps(meta, indent=2).encode())
    return target


def _secret(args: argparse.Namespace, given: Path | None, name: str) -> SecretStr:
    """The file ``given``, else secret ``name`` in $F2_SECRETS_DIR, else in <dir>/secrets."""
    if given is not None:
        return read_secret_file(given, name)
    directory = None if os.environ.get(SECRETS_DIR_ENV) else Path(args.dir) / SECRETS_DIR
    return SecretStore(directory=directory).get(name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m certs", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("certs"), help="certs folder")
    sub = parser.add_subparsers(dest="command", required=True)

    # --dir is accepted before or after the command (`make certs` puts it after).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help="certs folder")
    p_init = sub.add_parser(
        "init", parents=[common], help="create CA, broker cert, credentials, empty CRL and ACL"
    )
    p_init.add_argument(
        "--hosts", default="127.0.0.1,localhost", help="broker certificate names (comma separated)"
    )
    p_init.add_argument("--force", action="store_true", help="replace the CA and everything")
    p_init.add_argument(
        "--mqtt-username",
        default=DEFAULT_MQTT_USERNAME,
        help=f"internal MQTT user, the bridge's (default {DEFAULT_MQTT_USERNAME})",
    )

    p_sync = sub.add_parser(
        "sync", parents=[common], help="rewrite ACL and CRL from the registry, reload broker"
    )
    p_sync.add_argument("--dsn", default=None, help="device-management DSN (prefer --dsn-file)")
    p_sync.add_argument(
        "--dsn-file",
        type=Path,
        default=None,
        help="file holding the DSN (default: the secret devices-dsn)",
    )
    p_sync.add_argument("--pid-file", type=Path, default=None, help="broker pid file to SIGHUP")

    p_reg = sub.add_parser(
        "register", parents=[common], help="register a device through the provisioning API"
    )
    p_reg.add_argument("mac")
    p_reg.add_argument("--model", required=True, choices=MODELS)
    p_reg.add_argument("--serial-number", required=True)
    p_reg.add_argument(
        "--url", default=None, help="provision endpoint (default $GATEWAY_URL/function/provision)"
    )
    p_reg.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="bearer token file (default: the secret provision-token)",
    )
    p_reg.add_argument("--out", type=Path, default=None, help="default <dir>/devices")
    p_reg.add_argument(
        "--server-key",
        action="store_true",
        help="let the function generate the key (default: CSR, key stays here)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s %(message)s"
    )
    args = _parser().parse_args(argv)
    directory: Path = args.dir
    try:
        if args.command == "init":
            hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
            written = init(directory, hosts, force=args.force, mqtt_username=args.mqtt_username)
            print(f"certs in {directory}: " + (", ".join(written) if written else "up to date"))
        elif args.command == "sync":
            dsn = args.dsn or _secret(args, args.dsn_file, "devices-dsn").get_secret_value()
            print(json.dumps(sync(directory, dsn, args.pid_file)))
        elif args.command == "register":
            url = (
                args.url
                or os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080").rstrip("/")
                + "/function/provision"
            )
            target = register(
                args.mac,
                model=args.model,
                serial_number=args.serial_number,
                url=url,
                token=_secret(args, args.token_file, "provision-token"),
                out_dir=args.out or directory / "devices",
                generate_on_server=args.server_key,
            )
            print(f"device files in {target}")
    except F2PipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
