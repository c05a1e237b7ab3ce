"""``python -m infra.tools.reprocess`` (``make reprocess DEVICE=… SINCE=… [UNTIL=…]``): decode a
device's raw records again after a parameter fix and overwrite its rows. See
``infra.tools.reprocess.runner`` and the README's runbook."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg2

from f2lib.contracts.devices import is_device_id
from f2lib.contracts.functions import consumer_group
from f2lib.errors import ConfigError
from infra.tools.replay.cli import add_common_options, configure_logging, finish, preflight
from infra.tools.replay.clients import KafkaClients
from infra.tools.replay.metrics import ReplayMetrics
from infra.tools.replay.preflight import check_device
from infra.tools.replay.settings import ReplayConfig
from infra.tools.replay.window import TimeWindow
from infra.tools.reprocess.rows import RowReader
from infra.tools.reprocess.runner import (
    PipelineGroups,
    ReprocessOptions,
    ReprocessRun,
    ReprocessTopics,
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.tools.reprocess",
        description="Decode a device's raw records of a time window again (after a parameter "
        "fix) and overwrite its stored rows. Kafka and the databases come from "
        'KAFKA_BOOTSTRAP, DEVICES_DSN and TIMESERIES_DSN (eval "$(make -s env)").',
    )
    parser.add_argument("--device", required=True, help="f2-<mac>")
    parser.add_argument("--since", required=True, help="ISO time or a duration ago (6h, 2d)")
    parser.add_argument("--until", help="ISO time or a duration ago (default: now)")
    parser.add_argument("--dry-run", action="store_true", help="count the records, send nothing")
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for decode and sink to take the records (default %(default)s)",
    )
    parser.add_argument(
        "--all-partitions",
        action="store_true",
        help="read every partition, not only the device's (after the topic was grown)",
    )
    add_common_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = ReplayConfig()
    configure_logging(config.log_level)
    metrics = ReplayMetrics("reprocess")
    kafka = KafkaClients(config.kafka_bootstrap, config.connect_timeout_s, "f2pipe-reprocess")
    topics = ReprocessTopics(config.raw_topic, config.decoded_topic, config.dead_letter_topic)
    groups = PipelineGroups(
        consumer_group("decode", config.group_prefix), consumer_group("sink", config.group_prefix)
    )

    def connect_timeseries() -> Any:
        assert config.timeseries_dsn is not None  # the checks refused otherwise
        timeout = max(1, int(config.connect_timeout_s))
        return psycopg2.connect(config.timeseries_dsn.get_secret_value(), connect_timeout=timeout)

    def run() -> object:
        if not is_device_id(args.device):
            raise ConfigError(f"{args.device!r} is not a device id (f2-<12 hex digits>)")
        window = TimeWindow.parse(args.since, args.until, datetime.now(UTC))
        options = ReprocessOptions(
            device=args.device,
            window=window,
            dry_run=args.dry_run,
            wait_timeout_s=args.wait_timeout,
            all_partitions=args.all_partitions,
        )
        common = preflight(config, kafka, [topics.raw, topics.decoded, topics.dead_letter])

        def checks() -> None:
            common()
            check_device(config.devices_dsn, args.device, config.connect_timeout_s)

        rows = RowReader(connect_timeseries)
        return ReprocessRun(options, topics, groups, kafka, rows, checks, metrics).run()

    metrics_file = config.metrics_file("reprocess", args.metrics_file)
    return finish("reprocess", run, metrics, metrics_file, args.json)


if __name__ == "__main__":
    sys.exit(main())
