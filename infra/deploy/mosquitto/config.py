"""Render mosquitto.conf, the password file and the internal ACL from small value objects.

Facts about Debian's Mosquitto 2.0.11 that shape this file (see infra/deploy/mosquitto/README.md):

* a configuration with only a websockets listener does not start (upstream 2284), so the
  websockets listener is only rendered beside the internal plain listener;
* the websockets listener binds every interface whatever address is configured (2284, 3045);
* websockets connections get no CRL check (3042): a revoked certificate may still complete
  a websockets handshake, so the websockets listener shares the device ACL, from which a
  revoked device's lines are removed, and can therefore neither publish nor subscribe.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from f2lib.contracts.topics import COMMAND_FILTER, REPLY_FILTER, UPLINK_FILTER

# What each internal user may do, from the topics contract's filters. Only the command sender
# writes ctrl/#: neither the bridge nor an operator's monitor can command a door.
BRIDGE_TOPICS: tuple[tuple[str, str], ...] = (("read", UPLINK_FILTER), ("read", REPLY_FILTER))
COMMAND_TOPICS: tuple[tuple[str, str], ...] = (("write", COMMAND_FILTER), ("read", REPLY_FILTER))
MONITOR_TOPICS: tuple[tuple[str, str], ...] = (("read", "#"), ("write", UPLINK_FILTER))

# Mosquitto 2.0 persists by snapshot only: a kill -9 loses every message queued since the last
# one. Saving after this many changes (queued messages, retained messages, subscriptions)
# bounds that loss by a count instead of by 30 s of traffic; see the README for the figures.
DEFAULT_AUTOSAVE_CHANGES = 500
# The largest MQTT packet the broker takes (payload plus topic and headers): an F2 controller's
# message is under 1 KiB; a client sending more is disconnected (MQTT v5: reason 0x95, and the
# limit is announced in CONNACK) and nothing of it reaches the bridge or Kafka.
MAX_PACKET_BYTES = 256 * 1024
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for the $7$ (PBKDF2-SHA512) format
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_TOPIC_ACCESS = ("read", "write", "readwrite", "deny")


@dataclass(frozen=True)
class TlsFiles:
    """Files the mTLS listeners read. ``acl`` and ``crl`` are rewritten live by the registry."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    crl: Path
    acl: Path

    @classmethod
    def from_dir(cls, directory: Path) -> TlsFiles:
        """The layout ``python -m certs init`` writes (and the provision function updates)."""
        return cls(
            ca_cert=directory / "ca.crt",
            server_cert=directory / "server.crt",
            server_key=directory / "server.key",
            crl=directory / "crl.pem",
            acl=directory / "devices.acl",
        )


@dataclass(frozen=True)
class InternalUser:
    """A password user of the internal listener and its ACL lines (``topic <access> <filter>``)."""

    name: str
    password_hash: str
    topics: Sequence[tuple[str, str]] = (("readwrite", "#"),)


@dataclass(frozen=True)
class BrokerConfig:
    """Everything mosquitto.conf says; paths are absolute."""

    host: str
    port: int
    password_file: Path
    internal_acl: Path
    persistence_dir: Path
    log_file: Path | None = None
    tls_port: int | None = None
    ws_port: int | None = None
    tls: TlsFiles | None = None
    extra: Sequence[str] = field(default_factory=tuple)
    # More addresses for the internal listener (functions in containers reach the broker on
    # the Docker bridge address), each with the same password file and ACL.
    internal_hosts: Sequence[str] = field(default_factory=tuple)
    # A snapshot after this many changes; None: every 30 s (Mosquitto's time-based autosave).
    autosave_changes: int | None = DEFAULT_AUTOSAVE_CHANGES


def check_name(name: str) -> str:
    """A user name safe to place in a password file or ACL line."""
    if not _NAME.match(name):
        raise ValueError(f"invalid MQTT user name {name!r}")
    return name


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2.0's ``$7$`` password hash (PBKDF2-SHA512), as mosquitto_passwd writes it."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${PBKDF2_ITERATIONS}${salt_b64}${digest_b64}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash."""
    try:
        _, kind, iterations, salt_b64, digest_b64 = encoded.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt_b64), int(iterations)
    )
    return secrets.compare_digest(digest, base64.b64decode(digest_b64))


def render_password_file(users: Iterable[InternalUser]) -> str:
    return "".join(f"{check_name(u.name)}:{u.password_hash}\n" for u in users)


def render_internal_acl(users: Iterable[InternalUser]) -> str:
    lines = ["# f2pipe internal listener ACL: generated, do not edit"]
    for user in users:
        lines.append(f"\nuser {check_name(user.name)}")
        for access, topic in user.topics:
            if access not in _TOPIC_ACCESS or not topic or any(c in topic for c in "\r\n"):
                raise ValueError(f"invalid ACL entry {access!r} {topic!r}")
            lines.append(f"topic {access} {topic}")
    return "\n".join(lines) + "\n"


def _tls_lines(tls: TlsFiles) -> list[str]:
    return [
        f"cafile {tls.ca_cert}",
        f"certfile {tls.server_cert}",
        f"keyfile {tls.server_key}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        f"acl_file {tls.acl}",
    ]


def autosave_lines(changes: int | None) -> list[str]:
    """When Mosquitto snapshots its database: after ``changes`` changes, or every 30 s."""
    if changes is None:
        return ["autosave_interval 30"]
    if changes < 1:
        raise ValueError(f"autosave after {changes} changes: must be 1 or more")
    return ["autosave_on_changes true", f"autosave_interval {changes}"]


def render_config(cfg: BrokerConfig) -> str:
    """mosquitto.conf text for ``cfg``; listener-level auth (``per_listener_settings true``)."""
    lines = [
        "# f2pipe mosquitto.conf: generated by infra.deploy.mosquitto.config, do not edit",
        "per_listener_settings true",
        "persistence true",
        f"persistence_location {cfg.persistence_dir}/",
        *autosave_lines(cfg.autosave_changes),
        f"log_dest file {cfg.log_file}" if cfg.log_file else "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "max_queued_messages 100000",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "",
        "# internal services (bridge, tools): loopback, password file, own ACL",
        f"listener {cfg.port} {cfg.host}",
        "protocol mqtt",
        "allow_anonymous false",
        f"password_file {cfg.password_file}",
        f"acl_file {cfg.internal_acl}",
    ]
    for host in cfg.internal_hosts:
        lines += [
            f"listener {cfg.port} {host}",
            "protocol mqtt",
            "allow_anonymous false",
            f"password_file {cfg.password_file}",
            f"acl_file {cfg.internal_acl}",
        ]
    if (cfg.tls_port is not None or cfg.ws_port is not None) and cfg.tls is None:
        raise ValueError("tls_port/ws_port need TLS files")
    if cfg.tls_port is not None and cfg.tls is not None:
        lines += [
            "",
            "# devices: mutual TLS, certificate CN f2-<mac> is the user name, CRL checked",
            f"listener {cfg.tls_port} {cfg.host}",
            "protocol mqtt",
            *_tls_lines(cfg.tls),
            f"crlfile {cfg.tls.crl}",
        ]
    if cfg.ws_port is not None and cfg.tls is not None:
        lines += [
            "",
            "# devices over websockets: mutual TLS. 2.0.11 binds all interfaces here and does",
            "# no CRL check (upstream 3042); revoked devices lose their ACL lines instead.",
            f"listener {cfg.ws_port} {cfg.host}",
            "protocol websockets",
            *_tls_lines(cfg.tls),
        ]
    lines += list(cfg.extra)
    return "\n".join(lines) + "\n"
