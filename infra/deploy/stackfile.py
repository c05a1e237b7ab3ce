"""stack.yml as the local runtime reads it: functions, labels, annotations, env, secrets, limits."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from f2lib.contracts.functions import replica_bounds, topics_of
from f2lib.errors import StackFileError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` as faas-cli does in stack files."""
    env = os.environ if env is None else env

    def replace(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if value:
            return value
        return match.group(2) or ""

    return _ENV_REF.sub(replace, text)


@dataclass(frozen=True)
class FunctionSpec:
    """One function of stack.yml."""

    name: str
    lang: str
    handler: str
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    limits: dict[str, str] = field(default_factory=dict)  # memory, cpu
    requests: dict[str, str] = field(default_factory=dict)

    @property
    def min_replicas(self) -> int:
        return replica_bounds(self.name, self.labels)[0]

    @property
    def max_replicas(self) -> int:
        return replica_bounds(self.name, self.labels)[1]

    @property
    def topics(self) -> tuple[str, ...]:
        return topics_of(self.annotations)

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any]) -> FunctionSpec:
        def strings(value: Any) -> dict[str, str]:
            return {str(k): str(v) for k, v in (value or {}).items()}

        for key in ("lang", "handler", "image"):
            if key not in raw:
                raise StackFileError(f"function {name!r} has no {key!r}")
        return cls(
            name=name,
            lang=str(raw["lang"]),
            handler=str(raw["handler"]),
            image=str(raw["image"]),
            labels=strings(raw.get("labels")),
            annotations=strings(raw.get("annotations")),
            environment=strings(raw.get("environment")),
            secrets=tuple(str(s) for s in raw.get("secrets") or ()),
            limits=strings(raw.get("limits")),
            requests=strings(raw.get("requests")),
        )

    @classmethod
    def from_deployment(cls, body: Mapping[str, Any], base: FunctionSpec | None) -> FunctionSpec:
        """A function from an OpenFaaS deployment request (``POST|PUT /system/functions``).

        The request carries what ``faas-cli deploy`` sends (service, image, envVars, labels,
        annotations, secrets, limits, requests); the build fields come from ``base`` (stack.yml)
        when the function is known there.
        """

        def strings(value: Any) -> dict[str, str]:
            return {str(k): str(v) for k, v in (value or {}).items() if v not in (None, "")}

        name = str(body.get("service") or "")
        if not name:
            raise StackFileError("a deployment needs a service name")
        return cls(
            name=name,
            lang=base.lang if base else "python3-http-f2",
            handler=base.handler if base else f"./functions/{name}",
            image=str(body.get("image") or (base.image if base else name)),
            labels=strings(body.get("labels")),
            annotations=strings(body.get("annotations")),
            environment=strings(body.get("envVars")),
            secrets=tuple(str(s) for s in body.get("secrets") or ()),
            limits=strings(body.get("limits")),
            requests=strings(body.get("requests")),
        )

    def describe(self, replicas: int, available: int) -> dict[str, Any]:
        """The function as OpenFaaS's ``GET /system/functions`` lists it."""
        return {
            "name": self.name,
            "image": self.image,
            "namespace": "openfaas-fn",
            "replicas": replicas,
            "availableReplicas": available,
            "labels": self.labels,
            "annotations": self.annotations,
            "envProcess": "python index.py",
            "envVars": self.environment,
            "secrets": list(self.secrets),
            **({"limits": self.limits} if self.limits else {}),
            **({"requests": self.requests} if self.requests else {}),
            "invocationCount": 0,
        }


@dataclass(frozen=True)
class StackFile:
    """A parsed stack.yml."""

    path: Path
    functions: dict[str, FunctionSpec]
    copy: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return self.path.parent

    @classmethod
    def load(
        cls, path: Path, env: Mapping[str, str] | None = None, *, expand: bool = True
    ) -> StackFile:
        """Parse ``path``, its ``${VAR:-default}`` references expanded from ``env`` (default:
        the process environment), or kept as written with ``expand=False``."""
        try:
            text = path.read_text()
            raw = yaml.safe_load(expand_env(text, env) if expand else text)
        except (OSError, yaml.YAMLError) as exc:
            raise StackFileError(f"cannot read {path}: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("functions"), dict):
            raise StackFileError(f"{path} has no functions map")
        functions = {
            name: FunctionSpec.from_dict(name, spec) for name, spec in raw["functions"].items()
        }
        configuration = raw.get("configuration") or {}
        return cls(path=path, functions=functions, copy=tuple(configuration.get("copy") or ()))
