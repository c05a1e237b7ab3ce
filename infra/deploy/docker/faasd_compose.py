"""Merge f2pipe's services into faasd's docker-compose.yaml (the faasd installer's step).

``python -m infra.deploy.docker.faasd_compose --compose /var/lib/faasd/docker-compose.yaml
--additions infra/deploy/faasd/docker-compose.f2pipe.yaml --registry R --tag T --cluster-id C``
replaces the block between ``# BEGIN f2pipe`` / ``# END f2pipe`` (appended to the end of the
``services`` mapping) and leaves faasd's own services byte for byte as they were. faasd does
not interpolate variables, so image prefixes, the tag and the Kafka cluster id are written in.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from f2lib.errors import ComposeMergeError

BEGIN = "# BEGIN f2pipe"
END = "# END f2pipe"
OWN_PREFIX = "f2pipe/"
_BLOCK = re.compile(rf"\n?{re.escape(BEGIN)}\n.*?{re.escape(END)}\n?", re.S)


def rewrite_services(
    services: Mapping[str, Any], registry: str, tag: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """Our images under ``registry`` at ``tag``; ``KEY=value`` items of ``env`` replaced."""
    out: dict[str, Any] = {}
    for name, spec in services.items():
        spec = dict(spec)
        image = str(spec["image"])
        if image.startswith(OWN_PREFIX):
            repo = image[len(OWN_PREFIX) :].split(":", 1)[0]
            spec["image"] = f"{registry.rstrip('/')}/{repo}:{tag}"
        items = []
        for item in spec.get("environment", []):
            key = str(item).split("=", 1)[0]
            items.append(f"{key}={env[key]}" if key in env else item)
        if items:
            spec["environment"] = items
        out[name] = spec
    return out


def merge(base_text: str, services: Mapping[str, Any]) -> str:
    """``base_text`` without any previous f2pipe block, with ``services`` appended to it."""
    text = _BLOCK.sub("\n", base_text).rstrip("\n") + "\n"
    base = yaml.safe_load(text) or {}
    keys = [k for k in base if k != "version"]
    if keys[-1:] != ["services"]:
        raise ComposeMergeError("'services' must be the last top-level key to append to it")
    clash = set(services) & set(base["services"] or {})
    if clash:
        raise ComposeMergeError(f"services defined outside the f2pipe block: {sorted(clash)}")
    dumped = yaml.safe_dump({"services": dict(services)}, sort_keys=False, default_flow_style=False)
    body = "".join(line + "\n" for line in dumped.splitlines()[1:])  # under "services:"
    merged = f"{text}{BEGIN}\n{body}{END}\n"
    result = yaml.safe_load(merged)["services"]
    missing = (set(services) | set(base["services"] or {})) - set(result)
    if missing:
        raise ComposeMergeError(f"merge lost services {sorted(missing)} (indentation?)")
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.faasd_compose",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--compose", type=Path, required=True, help="faasd's docker-compose.yaml")
    parser.add_argument("--additions", type=Path, required=True)
    parser.add_argument("--registry", required=True, help="prefix of the f2pipe images")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--cluster-id", required=True, help="Kafka KRaft cluster id")
    parser.add_argument("--gateway-user", default="admin")
    args = parser.parse_args(argv)
    additions = yaml.safe_load(args.additions.read_text())["services"]
    services = rewrite_services(
        additions,
        args.registry,
        args.tag,
        {"CLUSTER_ID": args.cluster_id, "GATEWAY_USERNAME": args.gateway_user},
    )
    try:
        merged = merge(args.compose.read_text(), services)
    except ComposeMergeError as exc:
        print(f"{args.compose}: {exc}", file=sys.stderr)
        return 1
    tmp = args.compose.with_name(args.compose.name + ".f2pipe.tmp")
    tmp.write_text(merged)
    tmp.replace(args.compose)
    print(f"{args.compose}: f2pipe services {', '.join(services)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
