"""Create the pipeline's Kafka topics, or raise their partition count (never lowers it).

``python -m infra.deploy.docker.create_topics --bootstrap HOST:PORT --partitions N
[--retention-days D]`` makes ``raw_iot_data``, ``decoded_iot_data`` and ``iot_dead_letter``
exist with at least N partitions, and sets ``retention.ms`` of the replayable topics
(``raw_iot_data``, ``iot_dead_letter``: D days, default 7, so that ``make redrive`` and
``make reprocess`` find them) on new and existing topics alike; run again with a larger N to
scale a topic out. Used by the faasd installer (Kubernetes gets its topics from Strimzi
``KafkaTopic`` resources instead).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from f2lib.contracts.records import DEFAULT_RETENTION_DAYS, PIPELINE_TOPICS, topic_configs
from f2lib.errors import StreamError

TopicConfigs = Mapping[str, Mapping[str, str]]

logger = logging.getLogger(__name__)


def partition_counts(admin: Any, names: Sequence[str]) -> dict[str, int]:
    """Partitions per existing topic among ``names``."""
    existing = set(admin.list_topics())
    present = [name for name in names if name in existing]
    if not present:
        return {}
    described = admin.describe_topics(present)
    # kafka-python names the field "name" (newer metadata versions) or "topic" (older)
    return {str(t.get("name") or t.get("topic")): len(t["partitions"]) for t in described}


def config_changes(admin: Any, configs: TopicConfigs) -> dict[str, dict[str, str]]:
    """The entries of ``configs`` (topic -> key -> value) that the existing topics lack."""
    if not configs:
        return {}
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, list(keys)) for name, keys in configs.items()
    ]
    described = admin.describe_configs(resources, config_filter="all")
    # kafka-python: {resource type: {topic: {key: {"value": ..., ...}}}}
    by_topic: dict[str, Any] = next(iter(described.values()), {}) if described else {}
    changes: dict[str, dict[str, str]] = {}
    for name, wanted in configs.items():
        current = by_topic.get(name) or {}
        for key, value in wanted.items():
            entry = current.get(key)
            have = entry.get("value") if isinstance(entry, Mapping) else entry
            if str(have) != str(value):
                changes.setdefault(name, {})[key] = str(value)
    return changes


def ensure_topic_configs(admin: Any, configs: TopicConfigs) -> dict[str, dict[str, str]]:
    """Set the entries of ``configs`` the existing topics lack (only those keys, incrementally);
    returns what was changed, topic -> key -> value."""
    changes = config_changes(admin, configs)
    if changes:
        admin.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, dict(keys))
                for name, keys in changes.items()
            ]
        )
        logger.info("topic configs set: %s", changes)
    return changes


def ensure_topics(
    admin: Any,
    names: Sequence[str],
    partitions: int,
    replication: int = 1,
    configs: TopicConfigs | None = None,
) -> dict[str, str]:
    """Create missing topics and grow smaller ones to ``partitions``, with ``configs``
    (topic -> key -> value) on new and existing topics; returns name -> action."""
    configs = {name: keys for name, keys in (configs or {}).items() if name in names}
    counts = partition_counts(admin, names)
    actions: dict[str, str] = {}
    missing = [name for name in names if name not in counts]
    if missing:
        spec: dict[str, dict[str, Any]] = {
            n: {"num_partitions": partitions, "replication_factor": replication} for n in missing
        }
        for name in missing:
            if configs.get(name):
                spec[name]["configs"] = dict(configs[name])
        result = admin.create_topics(spec, raise_errors=False)
        for topic in result["topics"]:
            code = topic["error_code"]
            if code and code != TopicAlreadyExistsError.errno:
                raise StreamError(f"creating topic {topic['name']} failed: error {code}")
        admin.wait_for_topics(missing, timeout_ms=30_000)
        actions.update({name: f"created with {partitions} partitions" for name in missing})
    grow = {name: partitions for name, count in counts.items() if count < partitions}
    if grow:
        admin.create_partitions(grow)
        actions.update({name: f"grown {counts[name]} -> {partitions} partitions" for name in grow})
    for name, count in counts.items():
        actions.setdefault(name, f"kept ({count} partitions)")
    existing = {name: keys for name, keys in configs.items() if name in counts}
    for name, changed in ensure_topic_configs(admin, existing).items():
        settings = ", ".join(f"{key}={value}" for key, value in sorted(changed.items()))
        actions[name] += f"; set {settings}"
    return actions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.docker.create_topics",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--bootstrap", required=True, help="host:port of a broker")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--replication", type=int, default=1)
    parser.add_argument(
        "--retention-days",
        type=float,
        default=DEFAULT_RETENTION_DAYS,
        help="retention of raw_iot_data and iot_dead_letter (default %(default)s)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        dest="topics",
        help="topic name (repeatable; default: the three pipeline topics)",
    )
    parser.add_argument("--wait-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    names = tuple(args.topics or PIPELINE_TOPICS)
    deadline = time.monotonic() + args.wait_seconds
    while True:
        try:
            with KafkaAdminClient(
                bootstrap_servers=args.bootstrap, client_id="f2pipe-create-topics"
            ) as admin:
                actions = ensure_topics(
                    admin,
                    names,
                    args.partitions,
                    args.replication,
                    topic_configs(args.retention_days),
                )
            break
        except KafkaError as exc:
            if time.monotonic() >= deadline:
                logger.error("kafka %s: %s", args.bootstrap, exc)
                return 1
            logger.info("kafka %s not ready (%s); retrying", args.bootstrap, type(exc).__name__)
            time.sleep(3)
        except StreamError as exc:
            logger.error("%s", exc)
            return 1
    for name, action in actions.items():
        print(f"{name}: {action}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
