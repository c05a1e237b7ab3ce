"""Retention of the replayable topics: what the runtime and the deployments set on them."""

from __future__ import annotations

from f2lib.contracts.records import (
    DECODED_TOPIC,
    DEFAULT_RETENTION_DAYS,
    PIPELINE_TOPICS,
    REPLAYABLE_TOPICS,
    retention_ms,
    topic_configs,
)


def test_topic_configs__raw_and_dead_letters_keep_seven_days_by_default() -> None:
    configs = topic_configs()
    assert DEFAULT_RETENTION_DAYS == 7
    assert set(configs) == set(REPLAYABLE_TOPICS) < set(PIPELINE_TOPICS)
    assert DECODED_TOPIC not in configs
    assert {c["retention.ms"] for c in configs.values()} == {str(7 * 24 * 3600 * 1000)}


def test_topic_configs__follow_the_days_asked_for_with_an_hour_at_least() -> None:
    assert topic_configs(1.5)[REPLAYABLE_TOPICS[0]]["retention.ms"] == str(36 * 3600 * 1000)
    assert retention_ms(0) == 3600 * 1000
