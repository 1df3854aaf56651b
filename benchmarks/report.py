"""The benchmark's results: a Markdown table, a JSON object, a bar chart, the targets."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.machine import Machine
from benchmarks.peers import PEERS, Variant

TARGETS = (
    ("xpnet numpy on cpu", "onnxruntime", 1.05),
    ("xpnet numpy on cpu", "torch native", 1.0),
    ("xpnet numpy on cpu", "jax.jit", 1.0),
    ("end to end, warm files", "xpnet numpy on cpu", 1.5),
)
"""(variant, peer, the most its time may be as a multiple of the peer's)."""


@dataclass(frozen=True)
class Row:
    """One variant's result."""

    name: str
    milliseconds: float
    images_per_second: float
    vs_floor: float
    vs_peers: dict[str, float]
    note: str


def make_rows(
    variants: Sequence[Variant], medians: Mapping[str, float], images: int, floor: float
) -> list[Row]:
    """Rows in the variants' order; ratios are this variant's time over the peer's."""
    peers = {p: medians[p] for p in PEERS if p in medians}
    return [
        Row(
            name=v.name,
            milliseconds=medians[v.name] * 1e3,
            images_per_second=images / medians[v.name],
            vs_floor=medians[v.name] / floor,
            vs_peers={p: medians[v.name] / s for p, s in peers.items()},
            note=v.note,
        )
        for v in variants
    ]


def targets(medians: Mapping[str, float]) -> list[dict[str, Any]]:
    """Each target whose two sides were measured, with its ratio and whether it is met."""
    return [
        {
            "variant": a,
            "peer": b,
            "ratio": medians[a] / medians[b],
            "at_most": limit,
            "met": medians[a] / medians[b] <= limit,
        }
        for a, b, limit in TARGETS
        if a in medians and b in medians
    ]


def table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table."""
    peers = [p for p in PEERS if rows and p in rows[0].vs_peers]
    head = ["variant", "ms", "images/s", "x floor", *(f"x {p}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [
            row.name,
            f"{row.milliseconds:.2f}",
            f"{row.images_per_second:,.0f}",
            f"{row.vs_floor:.2f}",
            *(f"{row.vs_peers[p]:.2f}" for p in peers),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(machine: Machine, floor: float, images: int, met: Sequence[dict[str, Any]]) -> str:
    """Lines on the machine and the targets, printed under the table."""
    lines = [
        f"floor: {floor * 1e3:.2f} ms for {images} images (sgemm {machine.sgemm_gflops:.0f} "
        f"GFLOP/s, copy {machine.copy_gbytes_per_second:.1f} GB/s)",
        f"CPU: {machine.cpu}; BLAS: {machine.blas}; NumPy engine: {machine.numpy_engine}",
    ]
    lines += [
        f"target: {t['variant']} / {t['peer']} = {t['ratio']:.2f} (at most {t['at_most']}): "
        f"{'met' if t['met'] else 'NOT met'}"
        for t in met
    ]
    return "\n".join(lines)


def as_json(machine: Machine, floor: float, rows: Sequence[Row], met: Sequence[dict]) -> dict:
    """Everything measured, as one JSON-ready object."""
    return {
        "machine": asdict(machine),
        "floor_ms": floor * 1e3,
        "variants": [asdict(r) for r in rows],
        "targets": list(met),
    }


def bar_chart(rows: Sequence[Row], floor: float, path: str | Path, title: str) -> None:
    """A horizontal bar chart of the times, with the floor drawn as a line."""
    from xpnet.plotting import new_figure

    figure = new_figure(7.5, 0.45 * len(rows) + 1.2)
    axes = figure.add_subplot()
    names = [r.name for r in rows][::-1]
    times = [r.milliseconds for r in rows][::-1]
    axes.barh(names, times, color="tab:blue")
    axes.axvline(floor * 1e3, color="tab:red", linestyle="--", label="machine floor")
    axes.set_xscale("log")
    axes.set_xlim(right=max(times) * 3)  # room for the longest bar's label
    axes.set_xlabel("milliseconds for the 10,000 MNIST test images (log scale)")
    # Wrapped to the figure's width: a BLAS description naming two libraries ran off it.
    axes.set_title("\n".join(textwrap.fill(line, 64) for line in title.splitlines()), fontsize=9)
    for y, value in enumerate(times):
        axes.text(value, y, f" {value:.1f}", va="center", fontsize=7)
    axes.legend(loc="lower right", fontsize=7)
    figure.savefig(path)
