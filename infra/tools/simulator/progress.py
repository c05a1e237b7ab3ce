"""The simulator's terminal output: a live rich panel while it runs and a summary at the end."""

from __future__ import annotations

import time
from collections import deque

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from infra.tools.simulator.fleet import FleetReport, FleetSnapshot

RATE_WINDOW_SECONDS = 5.0


class RateMeter:
    """Messages per second over the last few seconds."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self.window = window
        self._points: deque[tuple[float, int]] = deque()

    def update(self, at: float, count: int) -> float:
        self._points.append((at, count))
        while len(self._points) > 2 and at - self._points[0][0] > self.window:
            self._points.popleft()
        first_at, first = self._points[0]
        return (count - first) / (at - first_at) if at > first_at else 0.0


def render_snapshot(snap: FleetSnapshot, sent_rate: float, ack_rate: float) -> RenderableType:
    """One compact row (fits 80 columns) under a header."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"F2 fleet simulator: {snap.phase}",
        title_justify="left",
        header_style="bold",
        pad_edge=False,
    )
    acked_label = "acked" if snap.qos else "written"
    for name in (
        "time",
        "connected",
        "sent",
        acked_label,
        "in flight",
        "refused",
        "sent/s",
        f"{acked_label}/s",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    acked = snap.acked if snap.qos else snap.written
    table.add_row(
        f"{snap.elapsed:.0f}s",
        f"{snap.connected}/{snap.devices}",
        str(snap.sent),
        str(acked),
        str(snap.outstanding),
        str(snap.rejected + snap.dropped),
        f"{sent_rate:.1f}",
        f"{ack_rate:.1f}",
    )
    return table


class LiveProgress:
    """``on_tick`` for ``Fleet.run``: redraws at most a few times per second."""

    def __init__(self, console: Console, refresh_per_second: float = 4.0) -> None:
        self.console = console
        self.live = Live(console=console, refresh_per_second=refresh_per_second, transient=False)
        self.sent_rate = RateMeter()
        self.ack_rate = RateMeter()

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, snap: FleetSnapshot) -> None:
        now = time.monotonic()
        sent = self.sent_rate.update(now, snap.sent)
        acked = self.ack_rate.update(now, snap.acked if snap.qos else snap.written)
        self.live.update(render_snapshot(snap, sent, acked))


class QuietProgress:
    """``on_tick`` for ``--no-progress``: one plain line every ``every`` seconds."""

    def __init__(self, console: Console, every: float = 10.0) -> None:
        self.console = console
        self.every = every
        self._last = 0.0

    def __call__(self, snap: FleetSnapshot) -> None:
        now = time.monotonic()
        if snap.phase != "done" and now - self._last < self.every:
            return
        self._last = now
        acked = snap.acked if snap.qos else snap.written
        self.console.print(
            f"[{snap.phase}] {snap.elapsed:.0f}s devices={snap.devices} "
            f"connected={snap.connected} sent={snap.sent} acked={acked} "
            f"in_flight={snap.outstanding} refused={snap.rejected + snap.dropped}",
            highlight=False,
            markup=False,
        )


def render_summary(report: FleetReport) -> RenderableType:
    table = Table(title="Simulated fleet: summary", title_justify="left", header_style="bold")
    acked_label = "acked" if report.qos else "written"
    for name in ("model", "devices", "sent", acked_label, "refused", "unacked"):
        table.add_column(name, justify="right" if name != "model" else "left")
    for model, row in sorted(report.by_model().items()):
        table.add_row(
            model,
            str(row["devices"]),
            str(row["sent"]),
            str(row["acked"] if report.qos else row["written"]),
            str(row["rejected"]),
            str(row["unacknowledged"]),
        )
    totals = report.to_dict()["totals"]
    table.add_row(
        "all",
        str(totals["devices"]),
        str(totals["sent"]),
        str(totals["acked"] if report.qos else totals["written"]),
        str(totals["rejected"] + totals["dropped"]),
        str(totals["unacknowledged"]),
        style="bold",
    )
    seconds = max(report.duration_s, 1e-9)
    done = totals["acked"] if report.qos else totals["written"]
    verdict = Text(
        f"{done} of {totals['sent']} messages {'acknowledged' if report.qos else 'written'} "
        f"in {report.duration_s:.1f}s ({done / seconds:.1f}/s), QoS {report.qos}, "
        f"seed {report.seed}" + (", interrupted" if report.interrupted else ""),
        style="green" if report.complete else "bold red",
    )
    return Group(table, verdict)
