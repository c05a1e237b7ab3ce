"""Deployment files: the Helm chart in each of its modes (helm lint/template and checks on the
rendered manifests; the kubernetes runtime's functions against stack.yml), the faasd compose
additions and installer helpers, the container images' Dockerfile, and the
broker and database bootstrap scripts run against the real Mosquitto and PostgreSQL.

helm is the binary `infra/tools/setup/install-helm.sh` builds from its Go module (`make setup` does it;
the first test run builds it when it is missing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg2
import pytest
import yaml

from f2lib.contracts.functions import scaling_spec
from f2lib.contracts.records import (
    DEAD_LETTER_TOPIC,
    RAW_TOPIC,
    REPLAYABLE_TOPICS,
    retention_ms,
    topic_configs,
)
from infra.deploy import keda
from infra.deploy.docker import create_topics, ensure_bucket, faasd_compose, mosquitto_passwd
from infra.deploy.k8s_functions import connector_entry, service_url
from infra.deploy.mosquitto.config import verify_password
from infra.deploy.stackfile import StackFile
from infra.local.launch.postgres import PostgresServer
from infra.local.ports import free_port, port_open
from infra.services.connector.static import parse_function_list
from provision.pki import CertificateAuthority, certificate_pem, private_key_pem
from provision.registry import render_acl
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "infra" / "deploy" / "k8s" / "f2pipe"
FAASD = REPO / "infra" / "deploy" / "faasd"
TOOLS = Path(os.environ.get("F2_TOOLS_DIR", REPO / ".tools")) / "bin"
RELEASE, NAMESPACE = "f2pipe", "f2pipe"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
# The containers running an f2pipe service (kit's ops endpoint: /healthz, /livez).
SERVICE_CONTAINERS = {"bridge", "connector", "autoscaler", "aclsync"}
# what faasd reads from a service (pkg/supervisor.go ParseCompose), as the issue lists them
FAASD_KEYS = {
    "image",
    "command",
    "environment",
    "volumes",
    "ports",
    "restart",
    "depends_on",
    "user",
}
FAASD_CORE = {"gateway", "nats", "prometheus", "basic-auth-plugin", "queue-worker"}
IMAGE_TARGETS = {
    "bridge": "bridge",
    "connector": "infra.services.connector",
    "autoscaler": "infra.services.autoscaler",
    "aclsync": "infra.services.aclsync",
}


# --- helm --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Path:
    binary = TOOLS / "helm"
    if not binary.exists():
        if shutil.which("go") is None:
            pytest.skip("helm is not built and go is missing; run `make setup`")
        result = subprocess.run(
            ["bash", str(REPO / "infra" / "tools" / "setup" / "install-helm.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return binary


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, broker certificate, CRL and ACL made by the project's own `python -m certs`."""
    directory = tmp_path_factory.mktemp("certs")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "certs",
            "--dir",
            str(directory),
            "init",
            "--hosts",
            "mqtt.example.com,10.0.0.5",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'functions'}"},
    )
    assert result.returncode == 0, result.stderr
    return directory


def chart_args(certs: Path, *extra: str, gateway_password: str | None = "gateway-pw") -> list[str]:
    password = ["--set", f"openfaas.basicAuth.password={gateway_password}"]
    return [
        *(password if gateway_password is not None else []),
        "--set-file",
        f"pki.caCrt={certs / 'ca.crt'}",
        "--set-file",
        f"pki.caKey={certs / 'secrets' / 'ca-key'}",
        "--set-file",
        f"pki.serverCrt={certs / 'server.crt'}",
        "--set-file",
        f"pki.serverKey={certs / 'server.key'}",
        "--set-file",
        f"pki.crl={certs / 'crl.pem'}",
        "--set-file",
        f"pki.acl={certs / 'devices.acl'}",
        *extra,
    ]


def helm_template(helm: Path, certs: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
    args = chart_args(certs, *extra) if certs is not None else list(extra)
    return subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=False,
    )


def render(helm: Path, certs: Path, *extra: str) -> list[dict[str, Any]]:
    result = helm_template(helm, certs, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# The chart in each of its modes (functions.runtime and what goes with it): the generic checks
# below run on every one of them.
MODES: dict[str, tuple[str, ...]] = {
    "openfaas": (),
    "openfaas-keda": ("--set", "keda.enabled=true", "--set", "autoscaler.enabled=false"),
    "kubernetes": ("--set", "functions.runtime=kubernetes"),
    "kubernetes-endpoints": (
        "--set", "functions.runtime=kubernetes", "--set", "functions.namespace=f2pipe-fn",
        "--set", "keda.enabled=false", "--set", "functions.endpoints.ingress.enabled=true",
        "--set", "functions.endpoints.ingress.host=devices.example.com",
        "--set", "functions.endpoints.service.type=LoadBalancer",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def renders(helm: Path, certs: Path) -> dict[str, list[dict[str, Any]]]:
    """Each mode rendered once for the module."""
    return {mode: render(helm, certs, *extra) for mode, extra in MODES.items()}


@pytest.fixture(params=sorted(MODES))
def rendered(request: pytest.FixtureRequest, renders: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart as one of MODES renders it (the generic checks run on each)."""
    return list(renders[request.param])


@pytest.fixture(scope="module")
def manifests(renders: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The chart with its defaults (the openfaas runtime)."""
    return renders["openfaas"]


def namespace_of(doc: dict[str, Any]) -> str:
    return str(doc["metadata"].get("namespace") or NAMESPACE)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if kind in WORKLOADS:
        return dict(doc["spec"]["template"]["spec"])
    return None


def containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(workload kind/name, container kind, container) for every container and init container."""
    for doc in manifests:
        spec = pod_spec(doc)
        if spec is None:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        for section in ("initContainers", "containers"):
            for container in spec.get(section) or []:
                yield where, section, container


def is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return False
    tag = name.rsplit(":", 1)[1]
    return bool(tag) and tag != "latest"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_helm_lint_passes_strict(helm: Path, certs: Path, mode: str) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), *chart_args(certs, *MODES[mode])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_helm_template_renders_every_part(manifests: list[dict[str, Any]]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    for expected in [
        ("Kafka", "f2pipe-kafka"),
        ("KafkaNodePool", "f2pipe-kafka-dual"),
        ("KafkaTopic", "raw-iot-data"),
        ("KafkaTopic", "decoded-iot-data"),
        ("KafkaTopic", "iot-dead-letter"),
        ("StatefulSet", "f2pipe-timescaledb"),
        ("StatefulSet", "f2pipe-mosquitto"),
        ("StatefulSet", "f2pipe-bridge"),
        ("Deployment", "f2pipe-connector"),
        ("Deployment", "f2pipe-autoscaler"),
        ("StatefulSet", "f2pipe-minio"),
        ("Job", "f2pipe-bootstrap"),
        ("CronJob", "f2pipe-crl-refresh"),
    ]:
        assert expected in kinds, expected
    topics = {d["spec"]["topicName"]: d["spec"] for d in manifests if d["kind"] == "KafkaTopic"}
    assert set(topics) == {
        "raw_iot_data",
        "decoded_iot_data",
        "iot_dead_letter",
        "iot_command_replies",
    }
    pool = next(d for d in manifests if d["kind"] == "KafkaNodePool")
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]  # KRaft, no ZooKeeper
    bridge = next(
        d
        for d in manifests
        if d["metadata"]["name"] == "f2pipe-bridge" and d["kind"] == "StatefulSet"
    )
    assert bridge["spec"]["replicas"] >= 2


def test_helm_replayable_topics_keep_the_retention_days_and_a_topic_may_keep_longer(
    helm: Path, certs: Path, manifests: list[dict[str, Any]]
) -> None:
    def retention(docs: list[dict[str, Any]]) -> dict[str, int]:
        return {
            d["spec"]["topicName"]: int(d["spec"]["config"]["retention.ms"])
            for d in docs
            if d["kind"] == "KafkaTopic"
        }

    day = 24 * 3600 * 1000
    default = retention(manifests)
    assert default[RAW_TOPIC] == 7 * day
    assert default[DEAD_LETTER_TOPIC] >= 7 * day
    longer = retention(render(helm, certs, "--set", "kafka.retentionDays=10.5"))
    assert longer[RAW_TOPIC] == int(10.5 * day)
    assert longer[DEAD_LETTER_TOPIC] == default[DEAD_LETTER_TOPIC]  # its own retentionMs
    kafka_cluster = next(d for d in manifests if d["kind"] == "Kafka")
    offsets_minutes = kafka_cluster["spec"]["kafka"]["config"]["offsets.retention.minutes"]
    assert offsets_minutes * 60 * 1000 >= 2 * max(default.values())


def test_every_image_is_pinned(rendered: list[dict[str, Any]]) -> None:
    images = [(where, c["name"], c["image"]) for where, _, c in containers(rendered)]
    assert images
    unpinned = [entry for entry in images if not is_pinned(entry[2])]
    assert not unpinned, unpinned


def test_every_container_has_requests_and_limits(rendered: list[dict[str, Any]]) -> None:
    missing = []
    for where, _, container in containers(rendered):
        resources = container.get("resources") or {}
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part) or {}):
                missing.append((where, container["name"], part))
    assert not missing, missing
    pool = next(d for d in rendered if d["kind"] == "KafkaNodePool")
    assert {"cpu", "memory"} <= set(pool["spec"]["resources"]["limits"])


def test_every_long_running_container_has_liveness_and_readiness(
    rendered: list[dict[str, Any]],
) -> None:
    # Jobs and CronJobs run to completion: Kubernetes gives them no use for probes, and init
    # containers may not have them.
    missing = []
    for doc in rendered:
        if doc["kind"] not in LONG_RUNNING:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    missing.append((doc["metadata"]["name"], container["name"], probe))
    assert not missing, missing


def test_every_f2pipe_service_is_restarted_on_livez_and_ready_on_healthz(
    rendered: list[dict[str, Any]],
) -> None:
    """A service whose health stays bad (a wedged client) is restarted: its liveness probe
    asks /livez, which fails only after the liveness grace; readiness is /healthz (or TCP for
    aclsync, whose S3 outage must not take the broker's pod out of its Service)."""
    seen = {}
    for doc in rendered:
        if doc["kind"] not in LONG_RUNNING:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["name"] not in SERVICE_CONTAINERS:
                continue
            live = container["livenessProbe"].get("httpGet") or {}
            seen[container["name"]] = live.get("path")
            if container["name"] != "aclsync":
                assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"bridge", "connector", "aclsync"} <= set(seen), seen  # the autoscaler or KEDA
    assert all(path == "/livez" for path in seen.values()), seen


def defined(manifests: list[dict[str, Any]], kind: str) -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> keys, of every Secret or ConfigMap in the rendered chart."""
    out = {}
    for doc in manifests:
        if doc["kind"] == kind:
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
            out[(namespace_of(doc), doc["metadata"]["name"])] = keys
    return out


def references(doc: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(kind, name, key or None) of each Secret/ConfigMap a workload's pods use."""
    spec = pod_spec(doc) or {}
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            keys = [i["key"] for i in volume["secret"].get("items") or []] or [None]
            for key in keys:
                yield "Secret", volume["secret"]["secretName"], key
        if "configMap" in volume:
            keys = [i["key"] for i in volume["configMap"].get("items") or []] or [None]
            for key in keys:
                yield "ConfigMap", volume["configMap"]["name"], key
        for source in (volume.get("projected") or {}).get("sources") or []:
            for kind, field in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if field in source:
                    yield kind, source[field]["name"], None
    for secret in spec.get("imagePullSecrets") or []:
        yield "Secret", secret["name"], None
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for env in container.get("env") or []:
            ref = env.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"]
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"]
        for env_from in container.get("envFrom") or []:
            if "secretRef" in env_from:
                yield "Secret", env_from["secretRef"]["name"], None
            if "configMapRef" in env_from:
                yield "ConfigMap", env_from["configMapRef"]["name"], None


def test_every_referenced_secret_and_configmap_is_defined_with_its_keys(
    rendered: list[dict[str, Any]],
) -> None:
    available = {
        "Secret": defined(rendered, "Secret"),
        "ConfigMap": defined(rendered, "ConfigMap"),
    }
    checked, problems = 0, []
    for doc in rendered:
        for kind, name, key in references(doc):
            checked += 1
            keys = available[kind].get((namespace_of(doc), name))
            if keys is None:
                problems.append(f"{doc['metadata']['name']}: {kind} {name} not defined")
            elif key is not None and key not in keys:
                problems.append(f"{doc['metadata']['name']}: {kind} {name} has no key {key}")
    assert checked > 10
    assert not problems, problems


def test_every_service_selects_pods_of_the_chart(rendered: list[dict[str, Any]]) -> None:
    pods = [
        (namespace_of(d), d["spec"]["template"]["metadata"]["labels"])
        for d in rendered
        if d["kind"] in LONG_RUNNING
    ]
    orphans = []
    for doc in rendered:
        if doc["kind"] != "Service" or doc["spec"].get("type") == "ExternalName":
            continue
        selector = doc["spec"]["selector"]
        if not any(
            ns == namespace_of(doc) and selector.items() <= labels.items() for ns, labels in pods
        ):
            orphans.append(doc["metadata"]["name"])
    assert not orphans, orphans


def stack_functions() -> dict[str, Any]:
    text = (REPO / "stack.yml").read_text()
    return dict(yaml.safe_load(re.sub(r"\$\{[^}]*\}", "x", text))["functions"])


def test_function_namespace_has_every_secret_stack_yml_names(
    manifests: list[dict[str, Any]],
) -> None:
    secrets = defined(manifests, "Secret")
    wanted = {name for fn in stack_functions().values() for name in fn.get("secrets") or []}
    assert wanted
    missing = [n for n in sorted(wanted) if n not in secrets.get(("openfaas-fn", n), set())]
    assert not missing, missing


def test_function_namespace_aliases_resolve_stack_yml_addresses(
    manifests: list[dict[str, Any]],
) -> None:
    aliases = {
        d["metadata"]["name"]: d["spec"]["externalName"]
        for d in manifests
        if d["kind"] == "Service" and namespace_of(d) == "openfaas-fn"
    }
    assert aliases["kafka"] == "f2pipe-kafka-kafka-bootstrap.f2pipe.svc.cluster.local"
    assert aliases["minio"] == "f2pipe-minio.f2pipe.svc.cluster.local"
    for fn in stack_functions().values():
        bootstrap = (fn.get("environment") or {}).get("KAFKA_BOOTSTRAP")
        if bootstrap:
            assert bootstrap.split(":")[0] in aliases


def chart_scaling_values() -> dict[str, dict[str, Any]]:
    """The lag-scaled functions of the chart's function list (files/functions.yaml)."""
    listed = yaml.safe_load((CHART / "files" / "functions.yaml").read_text())["functions"]
    return {
        name: {
            "topic": ",".join(entry["topics"]),
            "minReplicas": entry["minReplicas"],
            "maxReplicas": entry["maxReplicas"],
            "lagTarget": entry["lagTarget"],
        }
        for name, entry in listed.items()
        if "lagTarget" in entry
    }


def test_chart_function_scaling_values_equal_stack_yml() -> None:
    values = chart_scaling_values()
    for name, fn in stack_functions().items():
        labels = fn.get("labels") or {}
        if "f2pipe.lag.target" not in labels:
            assert name not in values
            continue
        assert values[name] == {
            "topic": fn["annotations"]["topic"],
            "minReplicas": int(labels["com.openfaas.scale.min"]),
            "maxReplicas": int(labels["com.openfaas.scale.max"]),
            "lagTarget": int(labels["f2pipe.lag.target"]),
        }, name


def test_generated_passwords_are_consistent_across_secrets(
    manifests: list[dict[str, Any]],
) -> None:
    secrets = {
        (namespace_of(d), d["metadata"]["name"]): d["stringData"]
        for d in manifests
        if d["kind"] == "Secret"
    }
    database = secrets[(NAMESPACE, "f2pipe-database")]
    assert f":{database['f2pipe-password']}@" in database["devices-dsn"]
    assert secrets[("openfaas-fn", "devices-dsn")]["devices-dsn"] == database["devices-dsn"]
    assert (
        secrets[("openfaas-fn", "provision-token")]["provision-token"]
        == secrets[(NAMESPACE, "f2pipe-provision")]["provision-token"]
    )
    assert len(database["postgres-password"]) >= 32


def test_template_refuses_to_render_without_credentials(helm: Path) -> None:
    result = helm_template(helm, None)
    assert result.returncode != 0
    assert "openfaas.basicAuth.password is required" in result.stderr


def test_keda_and_autoscaler_are_alternatives(helm: Path, certs: Path) -> None:
    both = helm_template(helm, certs, "--set", "keda.enabled=true")
    assert both.returncode != 0 and "alternatives" in both.stderr
    keda_only = render(
        helm, certs, "--set", "keda.enabled=true", "--set", "autoscaler.enabled=false"
    )
    assert not [d for d in keda_only if d["metadata"]["name"] == "f2pipe-autoscaler"]


def test_topic_with_fewer_partitions_than_max_replicas_is_refused(
    helm: Path,
    certs: Path,
) -> None:
    result = helm_template(helm, certs, "--set", "kafka.topics.raw_iot_data.partitions=2")
    assert result.returncode != 0
    assert "kafka.topics.raw_iot_data.partitions must be >= functions.decode.maxReplicas" in (
        result.stderr
    )


def test_external_s3_store_replaces_minio(helm: Path, certs: Path) -> None:
    docs = render(
        helm,
        certs,
        "--set",
        "minio.enabled=false",
        "--set",
        "s3.endpoint=https://s3.eu-west-1.amazonaws.com",
    )
    assert not [d for d in docs if "minio" in d["metadata"]["name"]]
    bootstrap = next(d for d in docs if d["kind"] == "Job")
    env = {e["name"]: e.get("value") for e in pod_spec(bootstrap)["containers"][0]["env"]}
    assert env["S3_ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"


def test_faasd_installs_the_charts_broker_and_database_files() -> None:
    """One copy of each file serves both deployments (the chart's files/)."""
    install = (FAASD / "install.sh").read_text()
    for name in ("mosquitto.conf", "internal.acl", "run-broker.sh", "010-f2pipe-databases.sh"):
        assert (CHART / "files" / name).is_file(), name
        assert f'"$CHART_FILES/{name}"' in install, name
    assert not list(FAASD.rglob("*.sh")) or all(p.name == "install.sh" for p in FAASD.rglob("*.sh"))


# --- the kubernetes runtime: stack.yml's functions without OpenFaaS ----------------------------

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
K8S_MODES = {"kubernetes": NAMESPACE, "kubernetes-endpoints": "f2pipe-fn"}  # mode -> functions' ns
SECRETS_DIR = "/var/openfaas/secrets"


def chart_stack() -> StackFile:
    """stack.yml expanded as the chart expands it by default (image, bucket, S3 endpoint)."""
    return StackFile.load(
        REPO / "stack.yml",
        env={
            "F2_REGISTRY": VALUES["image"]["repository"],
            "F2_TAG": str(VALUES["image"]["tag"]),
            "F2_REGISTRY_BUCKET": VALUES["s3"]["bucket"],
            "F2_S3_ENDPOINT_URL": f"http://f2pipe-minio.{NAMESPACE}.svc.cluster.local:9000",
        },
    )


def find(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> Any:
    (doc,) = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and (namespace is None or namespace_of(d) == namespace)
    ]
    return doc


def template_user() -> tuple[int, int]:
    """(uid, gid) of the function image's user, as template/python3-http-f2/Dockerfile fixes them."""
    text = (REPO / "template" / "python3-http-f2" / "Dockerfile").read_text()
    uid = re.search(r"adduser --system --uid (\d+)", text)
    gid = re.search(r"addgroup --system --gid (\d+) app", text)
    assert uid and gid, "the template's Dockerfile fixes no uid/gid"
    return int(uid.group(1)), int(gid.group(1))


@pytest.mark.parametrize("mode", sorted(K8S_MODES))
def test_kubernetes_runtime__deployments_use_exactly_the_environment_and_secrets_of_stack_yml(
    renders: dict[str, list[dict[str, Any]]], mode: str
) -> None:
    docs, ns = renders[mode], K8S_MODES[mode]
    stack = chart_stack()
    deployments = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "Deployment"
        and namespace_of(d) == ns
        and "faas_function" in d["metadata"]["labels"]
    }
    assert set(deployments) == set(stack.functions)
    for name, spec in stack.functions.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == spec.image, name
        env = container.get("env") or []
        assert all(set(e) == {"name", "value"} for e in env), name  # no valueFrom: no secret
        assert "envFrom" not in container
        assert {e["name"]: e["value"] for e in env} == spec.environment, name
        assert len(env) == len(spec.environment), name
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        sources = volumes[mounts[SECRETS_DIR]["name"]]["projected"]["sources"]
        mounted = [
            (source["secret"]["name"], item["key"], item["path"])
            for source in sources
            for item in source["secret"]["items"]
        ]
        assert mounted == [(secret, secret, secret) for secret in spec.secrets], name
        assert mounts[SECRETS_DIR]["readOnly"] is True
        other_secrets = [v for v in pod["volumes"] if "secret" in v or "projected" in v]
        assert len(other_secrets) == 1, name
        resources = container["resources"]
        assert spec.limits.items() <= resources["limits"].items(), name
        assert spec.requests.items() <= resources["requests"].items(), name


@pytest.mark.parametrize("mode", sorted(K8S_MODES))
def test_kubernetes_runtime__function_pods_run_unprivileged_as_the_template_user_with_probes(
    renders: dict[str, list[dict[str, Any]]], mode: str
) -> None:
    uid, gid = template_user()
    for name in chart_stack().functions:
        pod = find(renders[mode], "Deployment", name, K8S_MODES[mode])["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
            uid,
            gid,
        )
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert container["ports"] == [{"name": "http", "containerPort": 8080}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/_/health", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/_/ready", "port": "http"}
        service = find(renders[mode], "Service", name, K8S_MODES[mode])
        assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]


def test_kubernetes_runtime__needs_no_openfaas_and_runs_no_gateway_client(
    helm: Path, certs: Path
) -> None:
    args = chart_args(certs, "--set", "functions.runtime=kubernetes", gateway_password=None)
    result = helm_template(helm, None, *args)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "f2pipe-autoscaler") not in names
    assert ("Secret", "f2pipe-gateway") not in names
    assert not [d for d in docs if namespace_of(d) == "openfaas-fn"]
    gateway_env = [
        (where, e["name"])
        for where, _, c in containers(docs)
        for e in c.get("env") or []
        if e["name"].startswith("GATEWAY_") and "provision" not in str(e.get("value"))
    ]
    assert not gateway_env, gateway_env
    assert not [k for keys in defined(docs, "Secret").values() for k in keys if "basic-auth" in k]
    connector = find(docs, "Deployment", "f2pipe-connector")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in connector["containers"][0]["env"]}
    assert "GATEWAY_URL" not in env and "GATEWAY_USERNAME" not in env
    mount = next(m for m in connector["containers"][0]["volumeMounts"] if m["name"] == "functions")
    assert env["CONNECTOR_FUNCTIONS_FILE"] == f"{mount['mountPath']}/functions.json"
    assert not [v for v in connector["volumes"] if "secret" in v], "no gateway password"


@pytest.mark.parametrize("mode", sorted(K8S_MODES))
def test_kubernetes_runtime__connector_function_list_is_stack_yml_with_the_service_urls(
    renders: dict[str, list[dict[str, Any]]], mode: str
) -> None:
    ns, stack = K8S_MODES[mode], chart_stack()
    scaled_by_keda = mode == "kubernetes"
    configmap = find(renders[mode], "ConfigMap", "f2pipe-connector-functions")
    listed = json.loads(configmap["data"]["functions.json"])
    parse_function_list(listed)  # what the connector reads
    expected = []
    for name in sorted(stack.functions):
        spec = stack.functions[name]
        lag_scaled = scaling_spec(name, spec.labels, spec.annotations) is not None
        replicas = spec.max_replicas if scaled_by_keda and lag_scaled else spec.min_replicas
        expected.append(connector_entry(spec, service_url(name, ns), replicas))
    assert listed == expected


@pytest.mark.parametrize(
    ("mode", "namespace", "cap"),
    [("openfaas-keda", "openfaas-fn", 5), ("kubernetes", NAMESPACE, 0)],
)
def test_scaled_objects_equal_what_infra_deploy_keda_renders(
    renders: dict[str, list[dict[str, Any]]], mode: str, namespace: str, cap: int
) -> None:
    stack = StackFile.load(REPO / "stack.yml", env={})
    options = keda.KedaOptions(namespace=namespace, replica_cap=cap, scale_to_zero=cap == 0)
    bootstrap = f"f2pipe-kafka-kafka-bootstrap.{NAMESPACE}.svc.cluster.local:9092"
    rendered = {d["metadata"]["name"]: d for d in renders[mode] if d["kind"] == "ScaledObject"}
    expected = {}
    for name, spec in stack.functions.items():
        scaling = scaling_spec(name, spec.labels, spec.annotations)
        if scaling is not None:
            expected[name] = keda.scaled_object(scaling.capped(cap), bootstrap, options)
    assert set(rendered) == set(expected) == {"decode", "sink"}
    for name, document in expected.items():
        assert rendered[name]["spec"] == document["spec"], name
        assert rendered[name]["metadata"]["namespace"] == namespace
    if mode == "kubernetes":  # KEDA owns the replica count of the chart's own Deployments
        for name in expected:
            assert "replicas" not in find(renders[mode], "Deployment", name, namespace)["spec"]


def test_without_keda__the_functions_run_their_min_replicas_and_no_scaled_object(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    docs = renders["kubernetes-endpoints"]
    assert not [d for d in docs if d["kind"] == "ScaledObject"]
    assert not [d for d in renders["openfaas"] if d["kind"] == "ScaledObject"]
    for name, spec in chart_stack().functions.items():
        deployment = find(docs, "Deployment", name, "f2pipe-fn")
        assert deployment["spec"]["replicas"] == spec.min_replicas


def test_kubernetes_runtime__endpoints_are_published_with_their_tokens_and_consumers_are_not(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    docs, ns = renders["kubernetes-endpoints"], "f2pipe-fn"
    stack = chart_stack()
    endpoints = sorted(n for n, spec in stack.functions.items() if not spec.topics)
    assert endpoints == ["command", "provision"]
    ingress = find(docs, "Ingress", "f2pipe-functions", ns)
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "devices.example.com"
    routes = {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
    assert routes == {f"/function/{name}": name for name in endpoints}
    for name in stack.functions:
        kind = find(docs, "Service", name, ns)["spec"]["type"]
        assert kind == ("LoadBalancer" if name in endpoints else "ClusterIP"), name
    secrets = defined(docs, "Secret")
    assert secrets[(ns, "provision-token")] == {"provision-token"}
    assert secrets[(NAMESPACE, "f2pipe-provision")] == {"provision-token"}
    assert secrets[(NAMESPACE, "f2pipe-command")] == {"command-token"}
    assert secrets[(ns, "command-token")] == {"command-token"}
    aliases = {
        d["metadata"]["name"] for d in docs if d["kind"] == "Service" and namespace_of(d) == ns
        and d["spec"].get("type") == "ExternalName"
    }  # fmt: skip
    assert aliases == {"kafka", "minio", "mosquitto"}
    crl = pod_spec(find(docs, "CronJob", "f2pipe-crl-refresh"))
    env = {e["name"]: e["value"] for e in crl["containers"][0]["env"]}
    assert env["GATEWAY_URL"] == f"http://provision.{ns}.svc:8080"


def chart_copy(tmp_path: Path, edit: Any) -> Path:
    """The chart with its function list edited by ``edit(functions)`` (a stack.yml change)."""
    copy = tmp_path / "f2pipe"
    shutil.copytree(CHART, copy)
    listing = copy / "files" / "functions.yaml"
    document = yaml.safe_load(listing.read_text())
    edit(document["functions"])
    listing.write_text(yaml.safe_dump(document))
    return copy


def template_copy(
    helm: Path, certs: Path, chart: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", RELEASE, str(chart), "--namespace", NAMESPACE,
         *chart_args(certs, "--set", "functions.runtime=kubernetes", *extra)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_kubernetes_runtime__a_function_secret_the_chart_does_not_make_is_refused(
    helm: Path, certs: Path, tmp_path: Path
) -> None:
    chart = chart_copy(tmp_path, lambda fns: fns["decode"]["secrets"].append("mqtt-x-password"))
    result = template_copy(helm, certs, chart)
    assert result.returncode != 0
    assert "function decode (stack.yml) mounts the secret mqtt-x-password" in result.stderr


def test_kubernetes_runtime__stack_references_expand_as_faas_cli_expands_them(
    helm: Path, certs: Path, tmp_path: Path
) -> None:
    def edit(fns: dict[str, Any]) -> None:
        fns["sink"]["environment"].update(
            {"WITH_DEFAULT": "${F2_UNSET:-fallback}", "BARE": "x-${F2_UNSET}-y"}
        )

    chart = chart_copy(tmp_path, edit)
    result = template_copy(
        helm, certs, chart,
        "--set", "functions.stackEnv.F2_TAG=2.0.1",
        "--set", "functions.stackEnv.F2_REGISTRY_BUCKET=acme-registry",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    sink = find(docs, "Deployment", "sink", NAMESPACE)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in sink["env"]}
    assert (env["WITH_DEFAULT"], env["BARE"]) == ("fallback", "x--y")
    assert sink["image"] == f"{VALUES['image']['repository']}/sink:2.0.1"
    provision = find(docs, "Deployment", "provision", NAMESPACE)["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in provision["containers"][0]["env"]}
    assert env["REGISTRY_S3_BUCKET"] == "acme-registry"


def test_a_lag_scaled_topic_missing_from_kafka_topics_is_refused(
    helm: Path, certs: Path, tmp_path: Path
) -> None:
    """A function added to stack.yml on a new topic (the reply recorder) needs its KafkaTopic."""

    def edit(fns: dict[str, Any]) -> None:
        fns["replies"] = {**fns["sink"], "topics": ["iot_command_replies"]}

    result = template_copy(helm, certs, chart_copy(tmp_path, edit))
    assert result.returncode != 0
    assert "kafka.topics.iot_command_replies.partitions must be >= functions.replies" in (
        result.stderr
    )


# --- faasd -------------------------------------------------------------------------------------


def faasd_services() -> dict[str, Any]:
    return dict(yaml.safe_load((FAASD / "docker-compose.f2pipe.yaml").read_text())["services"])


def test_faasd_compose_parses_and_uses_only_keys_faasd_supports() -> None:
    doc = yaml.safe_load((FAASD / "docker-compose.f2pipe.yaml").read_text())
    assert set(doc) <= {"version", "services"}
    services = doc["services"]
    assert {"mosquitto", "aclsync", "kafka", "timescaledb", "minio", "bridge", "connector"} <= set(
        services
    )
    for name, spec in services.items():
        assert set(spec) <= FAASD_KEYS, (name, set(spec) - FAASD_KEYS)
        assert is_pinned(spec["image"]), (name, spec["image"])
        for dependency in spec.get("depends_on") or []:
            assert dependency in services or dependency in FAASD_CORE, (name, dependency)
        for volume in spec.get("volumes") or []:
            assert isinstance(volume, dict) and volume["type"] == "bind", (name, volume)
            source = os.path.normpath(os.path.join("/var/lib/faasd", volume["source"]))
            assert source.startswith("/var/lib/faasd/"), (name, volume["source"])
        for item in spec.get("environment") or []:
            key = str(item).split("=", 1)[0]
            assert not re.search(r"PASSWORD$|SECRET|TOKEN$", key) or key.endswith("_FILE"), (
                name,
                key,
            )


def test_faasd_compose_publishes_only_mtls_and_gateway_facing_ports_publicly() -> None:
    public = []
    for name, spec in faasd_services().items():
        for port in spec.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                public.append((name, port))
    assert public == [("mosquitto", "8883:8883")]


FAASD_LIKE = """version: "3.7"
services:
  nats:
    image: docker.io/library/nats-streaming:0.25.6
    command:
      - "/nats-streaming-server"
  gateway:
    image: ghcr.io/openfaas/gateway:0.27.12
    environment:
      - basic_auth=true
    ports:
      - "8080:8080"
"""


def test_faasd_compose_merge_is_idempotent_and_keeps_faasd_services(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text(FAASD_LIKE)
    argv = [
        "--compose",
        str(compose),
        "--additions",
        str(FAASD / "docker-compose.f2pipe.yaml"),
        "--registry",
        "registry.example.com/acme/",
        "--tag",
        "1.2.3",
        "--cluster-id",
        "6BKKIEVwTmSKSVphpG8rog",
        "--gateway-user",
        "ops",
    ]
    assert faasd_compose.main(argv) == 0
    first = compose.read_text()
    assert faasd_compose.main(argv) == 0
    assert compose.read_text() == first
    assert first.startswith(FAASD_LIKE)
    services = yaml.safe_load(first)["services"]
    assert services["gateway"]["ports"] == ["8080:8080"]
    assert services["bridge"]["image"] == "registry.example.com/acme/bridge:1.2.3"
    assert services["kafka"]["image"] == "docker.io/apache/kafka:4.1.1"
    assert "CLUSTER_ID=6BKKIEVwTmSKSVphpG8rog" in services["kafka"]["environment"]
    assert "GATEWAY_USERNAME=ops" in services["connector"]["environment"]
    assert first.count(faasd_compose.BEGIN) == 1


def test_faasd_compose_merge_refuses_a_file_it_cannot_append_to(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text(FAASD_LIKE + "networks:\n  default: {}\n")
    argv = [
        "--compose",
        str(compose),
        "--additions",
        str(FAASD / "docker-compose.f2pipe.yaml"),
        "--registry",
        "r",
        "--tag",
        "1",
        "--cluster-id",
        "x",
    ]
    assert faasd_compose.main(argv) == 1
    assert faasd_compose.BEGIN not in compose.read_text()


def test_shell_scripts_pass_bash_syntax_and_shellcheck() -> None:
    scripts = [
        FAASD / "install.sh",
        CHART / "files" / "run-broker.sh",
        CHART / "files" / "010-f2pipe-databases.sh",
        REPO / "infra" / "tools" / "setup" / "install-helm.sh",
    ]
    for script in scripts:
        shell = "bash" if script.name.endswith(("install.sh", "install-helm.sh")) else "sh"
        result = subprocess.run(
            [shell, "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (script, result.stderr)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck); syntax checked only")
    result = subprocess.run(
        ["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# --- images --------------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> {base, instructions}; ARG defaults substituted into FROM."""
    text = (REPO / "infra" / "deploy" / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    args: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif word == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            name = rest.split()[-1] if " AS " in rest.upper() else f"stage{len(stages)}"
            current = stages[name] = {"base": base, "instructions": []}
        elif current is not None:
            current["instructions"].append((word, rest))
    return stages


def resolve(stages: dict[str, dict[str, Any]], name: str, word: str) -> list[str]:
    """Every value of ``word`` along the stage's chain, oldest first."""
    chain = []
    while name in stages:
        chain.append(name)
        name = stages[name]["base"]
    return [
        rest for stage in reversed(chain) for w, rest in stages[stage]["instructions"] if w == word
    ]


def test_dockerfile_bases_are_pinned_and_targets_run_unprivileged_with_health_checks() -> None:
    stages = dockerfile_stages()
    for name, stage in stages.items():
        if stage["base"] not in stages:
            assert is_pinned(stage["base"]), (name, stage["base"])
    for target, module in IMAGE_TARGETS.items():
        users = resolve(stages, target, "USER")
        assert users and users[-1].split(":")[0] not in ("root", "0"), target
        checks = resolve(stages, target, "HEALTHCHECK")
        assert checks and checks[-1] != "NONE" and "f2-healthcheck" in checks[-1], target
        assert resolve(stages, target, "CMD")[-1] == f'["python", "-m", "{module}"]', target
    assert resolve(stages, "tools", "USER")[-1].startswith("10001")


def test_dockerfile_bakes_in_no_secrets() -> None:
    stages = dockerfile_stages()
    for stage in stages.values():
        for word, rest in stage["instructions"]:
            if word in ("ENV", "ARG"):
                assert not re.search(r"(PASSWORD|SECRET|TOKEN|_KEY)\b", rest, re.I), rest
            if word == "COPY":
                assert not re.search(r"\b(certs|\.state|secrets)\b", rest), rest
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in ("certs", ".state", ".venv", ".tools", "build", "**/node_modules"):
        assert entry in ignored, entry


def test_dockerfile_commands_name_modules_that_exist() -> None:
    missing = [
        module
        for module in IMAGE_TARGETS.values()
        if not (REPO / module.replace(".", "/") / "__main__.py").exists()
    ]
    assert missing == [], f"entry points named by the Dockerfile are missing: {missing}"


def test_dockerfile_targets_import_from_what_the_image_copies(tmp_path: Path) -> None:
    """Each target's entry module imports from the files the Dockerfile COPYs, and nothing else.

    The tree the image gets (its ``COPY`` lines) is laid out in a folder of its own and every
    entry module is imported there with the image's PYTHONPATH: a package the image lacks fails
    here, without Docker, instead of as an image that exits at start.
    """
    stages = dockerfile_stages()
    app = tmp_path / "app"
    for word, rest in stages["app"]["instructions"]:
        if word != "COPY" or "--from=" in rest:
            continue
        source, target = [part for part in rest.split() if not part.startswith("--")]
        if not target.startswith("/app/"):
            continue
        destination = app / target.removeprefix("/app/")
        if (REPO / source).is_dir():
            shutil.copytree(
                REPO / source,
                destination,
                ignore=shutil.ignore_patterns("__pycache__", "node_modules"),
            )
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, destination)
    env_line = next(rest for word, rest in stages["app"]["instructions"] if "PYTHONPATH=" in rest)
    image_path = re.search(r"PYTHONPATH=(\S+)", env_line)
    assert image_path is not None
    # The image's path, then the installed packages without the .pth that puts this checkout on
    # the path (python -S: no site processing).
    site_packages = sysconfig.get_paths()["purelib"]
    python_path = image_path.group(1).replace("/app", str(app)) + f":{site_packages}"
    for target, module in {**IMAGE_TARGETS, "tools": "infra.deploy.schema"}.items():
        entry = module if target == "tools" else f"{module}.__main__"
        result = subprocess.run(
            [sys.executable, "-S", "-c", f"import {entry}"],
            env={"PYTHONPATH": python_path, "PATH": os.environ["PATH"]},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{target}: {result.stderr[-800:]}"


def test_healthcheck_exits_zero_only_on_200(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from infra.services.kit.ops_http import OpsServer

    state = {"healthy": False}
    server = OpsServer(
        "127.0.0.1", 0, CollectorRegistry(), lambda: (state["healthy"], {"state": state["healthy"]})
    ).start()
    script = REPO / "infra" / "deploy" / "docker" / "healthcheck.py"
    env = {**os.environ, "SOME_HTTP_PORT": str(server.port)}
    try:

        def run() -> int:
            return subprocess.run(
                [sys.executable, str(script), "SOME_HTTP_PORT", "1"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            ).returncode

        assert run() == 1
        state["healthy"] = True
        assert run() == 0
    finally:
        server.stop()
    assert (
        subprocess.run(
            [sys.executable, str(script), "SOME_HTTP_PORT", "1"],
            env=env,
            capture_output=True,
            check=False,
        ).returncode
        == 1
    )


# --- bootstrap helpers against real services ---------------------------------------------------


def test_create_topics_creates_then_only_grows_partitions(kafka: Any) -> None:
    names = [f"deploy_test_{os.getpid()}_a", f"deploy_test_{os.getpid()}_b"]
    with kafka.admin() as admin:
        first = create_topics.ensure_topics(admin, names, 2)
        assert all(action.startswith("created") for action in first.values())
        again = create_topics.ensure_topics(admin, names, 2)
        assert all(action.startswith("kept") for action in again.values())
        grown = create_topics.ensure_topics(admin, names, 4)
        assert all("2 -> 4" in action for action in grown.values())
        assert create_topics.partition_counts(admin, names) == {n: 4 for n in names}
        lower = create_topics.ensure_topics(admin, names, 1)
        assert all(action == "kept (4 partitions)" for action in lower.values())


def test_create_topics_sets_the_retention_of_new_and_existing_replayable_topics(
    kafka: Any,
) -> None:
    raw, decoded = f"deploy_test_{os.getpid()}_raw", f"deploy_test_{os.getpid()}_decoded"
    week, day = str(retention_ms(7)), str(retention_ms(1))
    with kafka.admin() as admin:
        created = create_topics.ensure_topics(
            admin, [raw, decoded], 1, configs={raw: {"retention.ms": week}}
        )
        assert created == {raw: "created with 1 partitions", decoded: "created with 1 partitions"}
        assert create_topics.config_changes(admin, {raw: {"retention.ms": week}}) == {}
        again = create_topics.ensure_topics(admin, [raw], 1, configs={raw: {"retention.ms": week}})
        assert again == {raw: "kept (1 partitions)"}
        changed = create_topics.ensure_topics(admin, [raw], 1, configs={raw: {"retention.ms": day}})
        assert changed == {raw: f"kept (1 partitions); set retention.ms={day}"}
        assert create_topics.config_changes(admin, {raw: {"retention.ms": day}}) == {}


def test_create_topics_cli_gives_the_pipeline_topics_the_retention_days(kafka: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.deploy.docker.create_topics", "--bootstrap",
         kafka.bootstrap, "--partitions", "3", "--retention-days", "9"],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'functions'}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with kafka.admin() as admin:
        wanted = {name: {"retention.ms": str(retention_ms(9))} for name in REPLAYABLE_TOPICS}
        assert create_topics.config_changes(admin, wanted) == {}
        create_topics.ensure_topic_configs(admin, topic_configs())  # the session's default again


def test_ensure_bucket_creates_the_bucket_once() -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        assert ensure_bucket.ensure_bucket(client, "f2pipe-registry") is True
        assert ensure_bucket.ensure_bucket(client, "f2pipe-registry") is False
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["f2pipe-registry"]


def test_mosquitto_passwd_writes_a_verifiable_hash_and_keeps_a_matching_file(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("bridge-secret\n")
    out = tmp_path / "passwd"
    assert mosquitto_passwd.main(["--out", str(out), f"f2-bridge={secret}"]) == 0
    name, encoded = out.read_text().strip().split(":", 1)
    assert name == "f2-bridge" and verify_password("bridge-secret", encoded)
    assert "bridge-secret" not in out.read_text()
    before = out.stat().st_mtime_ns, out.read_text()
    assert mosquitto_passwd.write_password_file(out, [("f2-bridge", "bridge-secret")]) is False
    assert (out.stat().st_mtime_ns, out.read_text()) == before
    assert mosquitto_passwd.write_password_file(out, [("f2-bridge", "rotated")]) is True


@pytest.fixture
def own_postgres(runtime_root: Path) -> Iterator[PostgresServer]:
    """A cluster of its own: the init script creates roles and databases cluster-wide."""
    server = PostgresServer(
        runtime_root / f"pg-init-{os.getpid()}-{time.monotonic_ns()}", free_port()
    ).start()
    yield server
    server.stop()


def test_database_init_script_creates_role_and_databases_idempotently(
    own_postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "f2pipe-db-password"
    password_file.write_text("app-pw-123\n")
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(own_postgres.port),
        "PGPASSWORD": own_postgres.password,
        "F2PIPE_DB_PASSWORD_FILE": str(password_file),
        "POSTGRES_USER": "postgres",
    }
    script = CHART / "files" / "010-f2pipe-databases.sh"
    for _ in range(2):
        result = subprocess.run(
            ["sh", str(script)], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "app-pw-123" not in result.stdout + result.stderr
    for db in ("devices", "timeseries"):
        dsn = f"postgresql://f2pipe:app-pw-123@127.0.0.1:{own_postgres.port}/{db}"
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            )
            assert cur.fetchone() == ("f2pipe",)
            cur.execute("CREATE TABLE deploy_probe (id int)")
        conn.close()
    schema = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.deploy.schema",
            "--timescaledb",
            "auto",
            "--devices-dsn",
            f"postgresql://f2pipe:app-pw-123@127.0.0.1:{own_postgres.port}/devices",
            "--timeseries-dsn",
            f"postgresql://f2pipe:app-pw-123@127.0.0.1:{own_postgres.port}/timeseries",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'functions'}"},
    )
    assert schema.returncode == 0, schema.stderr


# --- the broker as deployed: shipped mosquitto.conf under run-broker.sh ------------------------


class Broker:
    """The shipped mosquitto.conf with its /mosquitto paths and ports moved into a temp dir."""

    def __init__(self, root: Path, ca: CertificateAuthority) -> None:
        self.root, self.ca = root, ca
        self.port, self.tls_port = free_port(), free_port()
        for sub in ("config", "certs", "registry", "auth", "data", "bin"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / sub).chmod(0o755)
        conf = (CHART / "files" / "mosquitto.conf").read_text()
        conf = conf.replace("/mosquitto/", f"{root}/")
        conf = conf.replace("listener 1883", f"listener {self.port} 127.0.0.1")
        conf = conf.replace("listener 8883", f"listener {self.tls_port} 127.0.0.1")
        self.write("config/mosquitto.conf", conf)
        self.write("config/internal.acl", (CHART / "files" / "internal.acl").read_text())
        server = ca.issue_server_certificate(["127.0.0.1", "localhost"])
        assert server.private_key is not None
        self.write("certs/ca.crt", ca.certificate_pem.decode())
        self.write("certs/server.crt", certificate_pem(server.certificate).decode())
        self.write("certs/server.key", private_key_pem(server.private_key).decode())
        self.write("registry/crl.pem", _crl(ca))
        self.write("registry/devices.acl", render_acl([]))
        self.bridge_password = "bridge-pw"
        pw = root / "bridge-pw"
        pw.write_text(self.bridge_password)
        mosquitto_passwd.write_password_file(
            root / "auth" / "passwd", [("f2-bridge", self.bridge_password)]
        )
        (root / "auth" / "passwd").chmod(0o644)
        shutil.chown(root / "data", "mosquitto", "mosquitto")
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, relative: str, text: str) -> None:
        """Replace a file the way the sync agent does: temp file, then rename."""
        target = self.root / relative
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(target)

    def start(self) -> None:
        env = {
            **os.environ,
            "MOSQUITTO_CONF": str(self.root / "config" / "mosquitto.conf"),
            "MOSQUITTO_WATCH_FILES": " ".join(
                str(self.root / p)
                for p in ("registry/devices.acl", "registry/crl.pem", "auth/passwd")
            ),
            "MOSQUITTO_WAIT_FOR": str(self.root / "registry" / "devices.acl"),
            "MOSQUITTO_WATCH_SECONDS": "0.5",
            "MOSQUITTO_BIN": shutil.which("mosquitto") or "/usr/sbin/mosquitto",
        }
        self.log = (self.root / "broker.log").open("wb")
        self.process = subprocess.Popen(
            ["sh", str(CHART / "files" / "run-broker.sh")],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = self.process

        def listening() -> bool:
            assert process.poll() is None, (self.root / "broker.log").read_text()
            return port_open(self.port) and port_open(self.tls_port)

        wait_for(listening, timeout=20, interval=0.1, message="broker did not open its ports")

    def reloads(self) -> int:
        """How often run-broker.sh has told mosquitto (SIGHUP) to reload its files."""
        return (self.root / "broker.log").read_text().count("SIGHUP to mosquitto")

    def wait_reloaded(self, before: int) -> None:
        """Wait until run-broker.sh has sent a SIGHUP after the ``before``-th one."""
        wait_for(
            lambda: self.reloads() > before,
            timeout=20,
            interval=0.1,
            message=lambda: f"no reload:\n{(self.root / 'broker.log').read_text()}",
        )

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=5)
        finally:
            self.log.close()


def _crl(ca: CertificateAuthority) -> str:
    from provision.pki import crl_pem

    return crl_pem(ca.build_crl([])).decode()


def _connect(client: mqtt.Client, port: int) -> int:
    result: dict[str, Any] = {}
    answered = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        result.setdefault("rc", rc)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    answered.wait(10)
    rc = result.get("rc")
    return int(rc.value if hasattr(rc, "value") else rc) if rc is not None else -1


@pytest.fixture
def broker(runtime_root: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto not installed; run `make setup`")
    root = runtime_root / f"deploy-broker-{time.monotonic_ns()}"
    instance = Broker(root, CertificateAuthority.generate())
    instance.start()
    yield instance
    instance.stop()


def test_deployed_broker_config_reloads_device_acl_without_restart(
    broker: Broker,
    tmp_path: Path,
) -> None:
    device_id = "f2-0a1b2c3d4e5f"
    issued = broker.ca.issue_client_certificate(device_id, days=1)
    assert issued.private_key_pem is not None
    (tmp_path / "device.crt").write_bytes(issued.certificate_pem)
    (tmp_path / "device.key").write_bytes(issued.private_key_pem)
    (tmp_path / "ca.crt").write_bytes(broker.ca.certificate_pem)
    pid_before = broker.process.pid if broker.process else None

    received: list[str] = []
    bridge = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="deploy-test-bridge", protocol=mqtt.MQTTv5
    )
    bridge.username_pw_set("f2-bridge", broker.bridge_password)
    bridge.on_message = lambda c, u, m: received.append(m.topic)
    assert _connect(bridge, broker.port) == 0
    bridge.subscribe("$share/g/cmnd/#", qos=1)

    def publish_once(suffix: str) -> None:
        device = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
        )
        device.tls_set(
            ca_certs=str(tmp_path / "ca.crt"),
            certfile=str(tmp_path / "device.crt"),
            keyfile=str(tmp_path / "device.key"),
        )
        assert _connect(device, broker.tls_port) == 0
        device.publish(
            f"cmnd/{device_id}/access-control-mode/J1/{suffix}", b"{}", qos=1
        ).wait_for_publish(5)
        device.disconnect()
        device.loop_stop()

    try:
        # Not in the ACL yet: the broker drops it. strike-2 below is the sentinel: it reaches
        # the bridge after strike-1 would have, so only strike-2 may be received.
        publish_once("strike-1")
        assert received == []
        reloads = broker.reloads()
        broker.write("registry/devices.acl", render_acl([device_id]))
        broker.wait_reloaded(reloads)  # run-broker.sh polls every 0.5 s here, then SIGHUP
        publish_once("strike-2")
        sentinel = f"cmnd/{device_id}/access-control-mode/J1/strike-2"
        wait_for(lambda: sentinel in received, timeout=10, interval=0.1)
        assert received == [sentinel]
    finally:
        bridge.disconnect()
        bridge.loop_stop()
    assert broker.process is not None and broker.process.pid == pid_before
    assert broker.process.poll() is None
    assert "SIGHUP" in (broker.root / "broker.log").read_text()


def test_deployed_broker_reloads_password_file_and_stops_cleanly(broker: Broker) -> None:
    rotated = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deploy-test-rotated")
    rotated.username_pw_set("f2-bridge", "rotated-pw")
    assert _connect(rotated, broker.port) != 0
    rotated.loop_stop()
    reloads = broker.reloads()
    mosquitto_passwd.write_password_file(
        broker.root / "auth" / "passwd", [("f2-bridge", "rotated-pw")]
    )
    (broker.root / "auth" / "passwd").chmod(0o644)
    broker.wait_reloaded(reloads)
    again = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deploy-test-rotated-2")
    again.username_pw_set("f2-bridge", "rotated-pw")
    assert _connect(again, broker.port) == 0
    again.disconnect()
    again.loop_stop()
    assert broker.stop() == 0
    assert not port_open(broker.port)
    broker.process = None


def test_crl_refresh_posts_to_the_provision_function_with_the_token(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"crl": "refreshed"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "provision-token").write_text("tok-123\n")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "infra.deploy.docker.refresh_crl",
                "--gateway",
                f"http://127.0.0.1:{server.server_address[1]}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            env={
                **os.environ,
                "F2_SECRETS_DIR": str(tmp_path),
                "PYTHONPATH": f"{REPO}:{REPO / 'functions'}",
            },
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert seen == [("/function/provision/crl", "Bearer tok-123")]
    assert "tok-123" not in result.stdout + result.stderr


def test_shell_scripts__every_path_they_name_under_the_repository_exists() -> None:
    """Scripts find the repository from their own folder (``ROOT=$(cd $(dirname $0)/..)``); every
    ``$ROOT/...`` or ``$repo_root/...`` path they name must be there (generated folders aside)."""
    generated = (".venv", ".tools", ".state", "build", "node_modules", "certs")
    checked = 0
    for script in sorted(REPO.rglob("*.sh")):
        if any(part in (".venv", "node_modules", ".tools") for part in script.parts):
            continue
        text = script.read_text()
        found = re.search(
            r'(\w+)="\$\(cd "\$\(dirname "\$\{BASH_SOURCE\[0\]\}"\)/([./]*)" && pwd\)"', text
        )
        if found is None:
            continue
        variable, relative = found.groups()
        root = (script.parent / relative).resolve()
        assert root == REPO, f"{script}: {variable} is {root}, not the repository"
        for path in re.findall(rf"\${variable}/([A-Za-z0-9_./-]+)", text):
            if path.split("/")[0] in generated:
                continue
            assert (root / path).exists(), f"{script.relative_to(REPO)} names ${variable}/{path}"
            checked += 1
    assert checked >= 5
