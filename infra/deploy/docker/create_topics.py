"""Create the pipeline's Kafka topics, or raise their partition count (never lowers it).

``python -m infra.deploy.docker.create_topics --bootstrap HOST:PORT --partitions N`` makes
``raw_iot_data``, ``decoded_iot_data`` and ``iot_dead_letter`` exist with at least N
partitions; run again with a larger N to scale a topic out. Used by the faasd installer
(Kubernetes gets its topics from Strimzi ``KafkaTopic`` resources instead).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from f2lib.contracts.records import PIPELINE_TOPICS
from f2lib.errors import StreamError

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


def ensure_topics(
    admin: Any, names: Sequence[str], partitions: int, replication: int = 1
) -> dict[str, str]:
    """Create missing topics and grow smaller ones to ``partitions``; returns name -> action."""
    counts = partition_counts(admin, names)
    actions: dict[str, str] = {}
    missing = [name for name in names if name not in counts]
    if missing:
        spec = {
            n: {"num_partitions": partitions, "replication_factor": replication} for n in missing
        }
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
                actions = ensure_topics(admin, names, args.partitions, args.replication)
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
