"""py-spy profiles of the stack's Python processes during a phase, and where their time went.

``py-spy record --format raw --gil`` samples each process, its subprocesses included (so a
function replica's worker is seen), in the thread holding the GIL: where the interpreter's CPU
goes (time in C with the GIL released, in librdkafka or libpq, is not seen). It writes
collapsed stacks (``frame;frame;... count``), the input of any flame graph; ``flamegraph_svg``
draws one from them. ``summary`` gives each process's hottest frames by own time and by time
including callees: the text of a flame graph.
"""

from __future__ import annotations

import contextlib
import html
import logging
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PYTHON_GROUPS = ("bridge", "connector", "gateway", "decode", "sink")
SAMPLE_RATE = 97  # per second; prime, so sampling does not beat with the pipeline's timers


def py_spy() -> str | None:
    """The py-spy executable (requirements-dev.txt), None when it is not installed."""
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@dataclass
class Profiler:
    """Records every Python group of the stack for ``seconds`` into ``folder``."""

    folder: Path
    seconds: float
    groups: Mapping[str, Sequence[int]]
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> Profiler:
        exe = py_spy()
        if exe is None:
            logger.warning("py-spy is not installed; no profiles")
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, pids in self.groups.items():
            if name.split("#")[0] not in PYTHON_GROUPS or not pids:
                continue
            argv = [
                exe, "record", "--pid", str(pids[0]), "--duration", str(int(self.seconds)),
                "--rate", str(SAMPLE_RATE), "--format", "raw", "--nonblocking", "--gil",
                "--output", str(self.raw_path(name)),
            ]  # fmt: skip
            if name != "gateway":  # the gateway's children are the function replicas
                argv.append("--subprocesses")
            self._procs[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        return self

    def raw_path(self, name: str) -> Path:
        return self.folder / f"{name.replace('#', '-')}.txt"

    def stop(self) -> dict[str, Any]:
        """Wait for the recordings; write a flame graph per process; return the summaries."""
        found: dict[str, Any] = {}
        for name, proc in self._procs.items():
            try:
                proc.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            path = self.raw_path(name)
            if not path.exists():
                continue
            stacks = read_collapsed(path.read_text())
            path.with_suffix(".svg").write_text(flamegraph_svg(stacks, title=name))
            found[name] = {"file": str(path), **summary(stacks)}
        return found


def read_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """Collapsed stacks (``a;b;c 12`` per line) as counts by stack, outermost frame first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _short(frame: str) -> str:
    """``send (kafka/producer/kafka.py:123)`` -> ``send (kafka/producer/kafka.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/functions/", "/wt/", "/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def summary(stacks: Counter[tuple[str, ...]], top: int = 12) -> dict[str, Any]:
    """The hottest frames: by own samples and by samples including callees, as shares."""
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        if not stack:
            continue
        own[_short(stack[-1])] += count
        for frame in {_short(f) for f in stack}:
            inclusive[frame] += count
    if not total:
        return {"samples": 0, "own": [], "inclusive": []}
    return {
        "samples": total,
        "own": [[frame, round(n / total, 3)] for frame, n in own.most_common(top)],
        "inclusive": [[frame, round(n / total, 3)] for frame, n in inclusive.most_common(top)],
    }


def flamegraph_svg(stacks: Counter[tuple[str, ...]], title: str, width: int = 1200) -> str:
    """A plain flame graph (root at the bottom, width = share of samples) as SVG text."""
    total = sum(stacks.values()) or 1
    tree: dict[str, Any] = {"n": 0, "kids": {}}
    for stack, count in stacks.items():
        node = tree
        node["n"] += count
        for frame in stack:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    rows: list[tuple[int, float, float, str, int]] = []

    def walk(node: dict[str, Any], depth: int, x: float) -> int:
        deepest = depth
        for frame, child in sorted(node["kids"].items()):
            w = child["n"] / total * width
            if w >= 0.3:
                rows.append((depth, x, w, frame, child["n"]))
                deepest = max(deepest, walk(child, depth + 1, x))
            x += w
        return deepest

    depth = walk(tree, 0, 0.0)
    line = 16
    height = (depth + 2) * line + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="monospace" font-size="11">',
        f'<text x="4" y="14">{html.escape(title)}: {total} samples (py-spy)</text>',
    ]
    for level, x, w, frame, n in rows:
        y = height - (level + 1) * line
        hue = 20 + (hash(frame.split(" (")[0]) % 40)
        label = html.escape(_short(frame))
        out.append(
            f"<g><title>{label}: {n} samples ({n / total:.1%})</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{line - 1}" '
            f'fill="hsl({hue},85%,60%)"/>'
            + (f'<text x="{x + 2:.1f}" y="{y + 11}">{label[: int(w / 7)]}</text>' if w > 30 else "")
            + "</g>"
        )
    out.append("</svg>")
    return "\n".join(out)
