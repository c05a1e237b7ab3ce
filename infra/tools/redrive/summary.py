"""What a redrive run did: counts per stage, reason and outcome, as text or JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from infra.tools.redrive.decision import Outcome
from infra.tools.redrive.selection import Selection

# The letters a summary lists one by one (at their limit, or with no destination).
LISTED = 20
COLUMNS = (
    Outcome.SENT,
    Outcome.WOULD_SEND,
    Outcome.AT_LIMIT,
    Outcome.ALREADY_SENT,
    Outcome.ALREADY_REDRIVEN,
    Outcome.NO_TARGET,
    Outcome.UNREADABLE,
)


@dataclass
class RedriveSummary:
    """Counts of one run; ``counts`` by (stage, reason, outcome) for the selected letters."""

    group: str
    selection: Selection
    dry_run: bool
    max_redrives: int
    read: int = 0
    not_selected: int = 0
    lost: int = 0  # letters that aged out of the topic before this selection read them
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    sent_to: Counter[str] = field(default_factory=Counter)
    listed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, stage: str, reason: str, outcome: Outcome, detail: dict[str, Any] | None) -> None:
        self.read += 1
        if outcome is Outcome.NOT_SELECTED:
            self.not_selected += 1
            return
        self.counts[(stage, reason, outcome.value)] += 1
        if detail is not None and len(self.listed) < LISTED:
            self.listed.append({"outcome": outcome.value, **detail})

    def total(self, outcome: Outcome) -> int:
        return sum(n for (_, _, kind), n in self.counts.items() if kind == outcome.value)

    @property
    def sent(self) -> int:
        return sum(self.sent_to.values())

    def to_json(self) -> dict[str, Any]:
        rows: dict[tuple[str, str], dict[str, int]] = {}
        for (stage, reason, outcome), n in sorted(self.counts.items()):
            rows.setdefault((stage, reason), {})[outcome] = n
        return {
            "group": self.group,
            "selection": self.selection.to_json(),
            "dry_run": self.dry_run,
            "max_redrives": self.max_redrives,
            "read": self.read,
            "not_selected": self.not_selected,
            "lost": self.lost,
            "sent": self.sent,
            "sent_to": dict(self.sent_to),
            "totals": {o.value: self.total(o) for o in COLUMNS if self.total(o)},
            "by_stage_and_reason": [
                {"stage": stage, "reason": reason, **outcomes}
                for (stage, reason), outcomes in rows.items()
            ],
            "listed": self.listed,
        }

    def render(self) -> str:
        mode = " (dry run: nothing sent, nothing committed)" if self.dry_run else ""
        lines = [
            f"redrive of {self.selection.describe()}, group {self.group}{mode}",
            f"read {self.read} dead letter(s): {self.read - self.not_selected} selected,"
            f" {self.not_selected} not selected",
        ]
        if self.lost:
            lines.append(f"WARNING: {self.lost} letter(s) aged out before this selection read them")
        used = [o for o in COLUMNS if self.total(o)]
        if used:
            keys = sorted({(stage, reason) for stage, reason, _ in self.counts})
            width = max(len(stage) for stage, _ in keys)
            rwidth = max(len(reason) for _, reason in keys)
            header = f"  {'stage':<{width}}  {'reason':<{rwidth}}" + "".join(
                f"  {o.value:>16}" for o in used
            )
            lines.append(header)
            for stage, reason in keys:
                cells = "".join(f"  {self.counts[(stage, reason, o.value)]:>16}" for o in used)
                lines.append(f"  {stage:<{width}}  {reason:<{rwidth}}{cells}")
        if self.sent_to:
            where = ", ".join(f"{n} to {topic}" for topic, n in sorted(self.sent_to.items()))
            lines.append(f"sent {where}")
        elif not self.dry_run:
            lines.append("sent nothing")
        for item in self.listed:
            lines.append(
                f"  {item['outcome']}: {item['dead_letter']} device {item.get('device') or '?'}"
                f" {item.get('stage')}/{item.get('reason')} redriven {item.get('count', 0)}x"
            )
        return "\n".join(lines)
