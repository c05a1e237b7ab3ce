"""``python -m infra.tools.redrive`` (``make redrive``): send dead letters back into the stage
they failed at. See ``infra.tools.redrive`` and the README's runbook."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from f2lib.errors import ConfigError
from infra.tools.redrive.decision import DEFAULT_MAX_REDRIVES, RedriveTopics
from infra.tools.redrive.runner import RedriveOptions, RedriveRun
from infra.tools.redrive.selection import Selection
from infra.tools.replay.cli import add_common_options, configure_logging, finish, preflight
from infra.tools.replay.clients import KafkaClients
from infra.tools.replay.metrics import ReplayMetrics
from infra.tools.replay.settings import ReplayConfig
from infra.tools.replay.window import TimeWindow


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.tools.redrive",
        description="Send dead letters back into the stage they failed at, once the cause is "
        "fixed. Kafka and the databases come from KAFKA_BOOTSTRAP, DEVICES_DSN and "
        'TIMESERIES_DSN (eval "$(make -s env)").',
    )
    parser.add_argument("--stage", help="bridge, decode, sink, connector, or connector:<fn>")
    parser.add_argument("--reason", help="e.g. unknown_device, unknown_component, bad_payload")
    parser.add_argument("--device", help="f2-<mac>")
    parser.add_argument("--since", help="letters written since: ISO time or a duration (6h, 2d)")
    parser.add_argument("--until", help="letters written until: ISO time or a duration ago")
    parser.add_argument("--dry-run", action="store_true", help="count, send and commit nothing")
    parser.add_argument(
        "--max-redrives",
        type=int,
        default=DEFAULT_MAX_REDRIVES,
        help="a record redriven this often stops (reported, not sent); default %(default)s",
    )
    parser.add_argument("--group", help="consumer group (default: one per selection)")
    parser.add_argument("--rate", type=float, default=0.0, help="records per second (0: no cap)")
    parser.add_argument("--commit-every", type=int, default=200, help="records per commit")
    add_common_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = ReplayConfig()
    configure_logging(config.log_level)
    metrics = ReplayMetrics("redrive")
    kafka = KafkaClients(config.kafka_bootstrap, config.connect_timeout_s, "f2pipe-redrive")
    topics = RedriveTopics(
        config.dead_letter_topic, config.raw_topic, config.decoded_topic, config.replies_topic
    )

    def run() -> object:
        if args.max_redrives < 1 or args.commit_every < 1 or args.rate < 0:
            raise ConfigError("--max-redrives and --commit-every must be >= 1, --rate >= 0")
        window = TimeWindow.parse(args.since, args.until, datetime.now(UTC))
        selection = Selection(
            args.stage, args.reason, args.device, window.since_ms, window.until_ms
        )
        options = RedriveOptions(
            selection=selection,
            dry_run=args.dry_run,
            max_redrives=args.max_redrives,
            group=args.group,
            commit_every=args.commit_every,
            rate=args.rate,
        )
        checks = preflight(config, kafka, [topics.dead_letter, *topics.inputs])
        return RedriveRun(options, topics, kafka, checks, metrics).run()

    metrics_file = config.metrics_file("redrive", args.metrics_file)
    return finish("redrive", run, metrics, metrics_file, args.json)


if __name__ == "__main__":
    sys.exit(main())
