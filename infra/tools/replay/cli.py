"""What the redrive and reprocess command lines share: logging, options, checks, the exit."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from f2lib.errors import ConfigError, F2PipeError, ReplayIncompleteError, ReplayRefusedError
from infra.tools.replay.clients import KafkaClients
from infra.tools.replay.metrics import ReplayMetrics
from infra.tools.replay.preflight import check_database, check_kafka
from infra.tools.replay.settings import ReplayConfig

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INCOMPLETE = 0, 1, 2, 3


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--metrics-file",
        type=Path,
        default=None,
        help="Prometheus textfile to write (default: $F2_METRICS_DIR/<tool>.prom when set)",
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)


def preflight(config: ReplayConfig, kafka: KafkaClients, topics: list[str]) -> Callable[[], None]:
    """The checks of a run: Kafka with ``topics``, then DEVICES_DSN and TIMESERIES_DSN."""

    def checks() -> None:
        check_kafka(kafka.admin, config.kafka_bootstrap, topics)
        check_database("DEVICES_DSN", config.devices_dsn, config.connect_timeout_s)
        check_database("TIMESERIES_DSN", config.timeseries_dsn, config.connect_timeout_s)

    return checks


def finish(
    tool: str,
    run: Callable[[], Any],
    metrics: ReplayMetrics,
    metrics_file: Path | None,
    as_json: bool,
) -> int:
    """Run, print the summary (``render()`` or ``to_json()``), write the metrics, map errors to
    exit codes: 0 done, 1 failed midway, 2 refused (nothing sent), 3 sent but unconfirmed."""
    code = EXIT_OK
    summary: Any = None
    try:
        summary = run()
    except (ReplayRefusedError, ConfigError) as exc:
        print(f"{tool} refused: {exc}", file=sys.stderr)
        code = EXIT_REFUSED
    except ReplayIncompleteError as exc:
        print(f"{tool} incomplete: {exc}", file=sys.stderr)
        summary = exc.summary
        code = EXIT_INCOMPLETE
    except F2PipeError as exc:
        print(f"{tool} failed: {exc}", file=sys.stderr)
        code = EXIT_FAILED
    if summary is not None:
        text = json.dumps(summary.to_json(), indent=2) if as_json else summary.render()
        print(text, flush=True)
    metrics.finish(code == EXIT_OK)
    metrics.write(metrics_file)
    return code
