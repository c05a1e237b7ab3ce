"""The matrix as a table (terminal and Markdown), and its place in docs/reliability.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from f2lib.errors import ChaosError
from infra.tools.chaos.ledger import Verdict

BEGIN, END = "<!-- chaos-table:begin -->", "<!-- chaos-table:end -->"
HEADERS = ("scenario", "messages", "acked", "stored", "lost", "dup (Kafka)", "dead-lettered",
           "drain s", "stall s", "part back after")  # fmt: skip


@dataclass
class ScenarioResult:
    """One scenario's faults, what became of the data, and how the parts came back."""

    name: str
    brokers: int
    faults: list[str]
    note: str = ""
    verdict: Verdict | None = None
    back_s: list[float | None] = field(default_factory=list)
    restarted: dict[str, int] = field(default_factory=dict)
    publisher_disconnects: int = 0
    healthy_after_s: float | None = None
    duration_s: float = 0.0
    error: str | None = None

    def row(self) -> list[str]:
        back = ", ".join("-" if b is None else f"{b:.1f}" for b in self.back_s) or "-"
        v = self.verdict
        if v is None:
            return [self.name, "-", "-", "-", "-", "-", "-", "-", "-", f"error: {self.error}"]
        return [
            self.name,
            f"{v.messages:,}",
            f"{v.acknowledged:,}",
            f"{v.stored:,}",
            f"{v.lost:,}",
            f"{v.raw_duplicates:,}",
            f"{v.dead_letters:,}",
            f"{v.drain_s:.1f}",
            f"{v.stall_s:.1f}",
            back,
        ]


def text_table(results: Sequence[ScenarioResult]) -> str:
    rows = [list(HEADERS), *[r.row() for r in results]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in results]
    return "\n".join(lines)


def write_into(doc: Path, block: str) -> None:
    """Replace what stands between the table markers of ``doc`` with ``block``."""
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise ChaosError(f"{doc} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")
