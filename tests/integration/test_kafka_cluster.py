"""Three Kafka nodes of one KRaft quorum (F2_KAFKA_BROKERS=3): replicated 3 times, 2 in sync.

With the producers' acks=all, a record is acknowledged once two nodes hold it: killing any
one node, the active controller included, loses nothing acknowledged, and producing goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from f2lib.kafka import make_producer
from infra.local.launch.kafka import KafkaCluster, KafkaServer
from infra.local.ports import free_port
from infra.local.settings import RuntimeConfig
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, runtime_config: RuntimeConfig
) -> Iterator[KafkaCluster]:
    found = KafkaCluster(
        tmp_path_factory.mktemp("kafka-cluster"),
        [free_port() for _ in range(3)],
        [free_port() for _ in range(3)],
        partitions=3,
        libs_dir=runtime_config.kafka_libs_dir,
        heap="384m",
        jvm_opts=runtime_config.kafka_jvm_opts,
        java_home=runtime_config.java_home,
    ).start()
    try:
        yield found
    finally:
        found.stop()


def quorum_leader(cluster: KafkaCluster) -> int:
    argv = cluster.tool_argv(
        "org.apache.kafka.tools.MetadataQuorumCommand",
        "--bootstrap-server",
        cluster.bootstrap,
        "describe",
        "--status",
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    (line,) = [line for line in out.splitlines() if line.strip().startswith("LeaderId:")]
    return int(line.split(":", 1)[1])


def consume_all(bootstrap: str, topic: str, count: int) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    seen: list[int] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 90
        while len(set(seen)) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                seen.extend(int(r.value) for r in batch)
    finally:
        consumer.close()
    return seen


def test_topics__are_replicated_on_three_nodes_with_two_in_sync(cluster: KafkaCluster) -> None:
    topic = f"t-rf-{uuid.uuid4().hex[:8]}"
    cluster.create_topics([topic])

    def replicas() -> set[int]:
        with cluster.nodes[0].admin() as admin:
            (described,) = admin.describe_topics([topic])
        return {len(p["replica_nodes"]) for p in described["partitions"]}

    assert wait_for(replicas, message="the topic is known to every node") == {3}
    config = (cluster.nodes[0].state_dir / "server.properties").read_text().splitlines()
    assert "min.insync.replicas=2" in config and "default.replication.factor=3" in config
    assert "offsets.topic.replication.factor=3" in config


def kill_node_while_producing(
    cluster: KafkaCluster, node_id: int, while_down: Callable[[], None] = lambda: None
) -> None:
    """Produce with acks=all while node ``node_id`` is killed; every acknowledged record is
    then read back, the node started again rejoins."""
    topic = f"t-kill-{uuid.uuid4().hex[:8]}"
    cluster.create_topics([topic])
    producer = make_producer(cluster.bootstrap, retries=2**31 - 1, delivery_timeout_ms=60_000)
    acked: list[int] = []
    lock = threading.Lock()
    total = 3000

    def produced(seq: int) -> None:
        with lock:
            acked.append(seq)

    node: KafkaServer = cluster.nodes[node_id - 1]
    assert node.process is not None and node.process.popen is not None
    pid_path = node.state_dir / "node.pid"
    try:
        for seq in range(total):
            future = producer.send(topic, key=f"k{seq % 7}".encode(), value=str(seq).encode())
            future.add_callback(lambda _, s=seq: produced(s))
            if seq == total // 3:
                os.kill(node.process.popen.pid, signal.SIGKILL)
                node.process.popen.wait(timeout=10)
            time.sleep(0.002)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    assert len(acked) == total, f"only {len(acked)} of {total} acknowledged"
    read = consume_all(cluster.bootstrap, topic, total)
    assert set(read) >= set(acked), f"lost {len(set(acked) - set(read))} acknowledged records"
    while_down()
    node.start(pid_path=pid_path)
    wait_for(cluster.all_registered, timeout=120, message="the killed node rejoins")


def test_kill_9_of_a_broker__loses_no_acknowledged_record(cluster: KafkaCluster) -> None:
    leader = quorum_leader(cluster)
    follower = next(n for n in (1, 2, 3) if n != leader)
    kill_node_while_producing(cluster, follower)


def test_kill_9_of_the_active_controller__loses_no_acknowledged_record_and_a_new_one_leads(
    cluster: KafkaCluster,
) -> None:
    leader = quorum_leader(cluster)

    def another_leads() -> None:
        wait_for(lambda: quorum_leader(cluster) != leader, timeout=60, interval=1,
                 message="the remaining two elect a controller")  # fmt: skip

    kill_node_while_producing(cluster, leader, another_leads)


def test_one_or_three_nodes_only(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="1, or 3"):
        KafkaCluster(tmp_path, [1, 2], [3, 4])
