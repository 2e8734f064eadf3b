"""The benchmark's outputs: the printed table (with ratios to the baseline), the JSON file, the PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# (scenario, field, column title, format, higher is better)
COLUMNS = [
    (1, "connects_per_s", "S1 connects/s", "{:,.0f}", True),
    (1, "p99_ms", "S1 p99 connect→subscribed", "{:,.0f} ms", False),
    (2, "achieved_per_s", "S2 deliveries/s", "{:,.0f}", True),
    (2, "p99_ms", "S2 p99", "{:,.0f} ms", False),
    (2, "lost_pct", "S2 lost", "{:.1f} %", False),
    (3, "deliveries_per_s", "S3 deliveries/s", "{:,.0f}", True),
    (3, "server_cpu_us_per_delivery", "S3 server CPU/delivery", "{:,.0f} µs", False),
    (4, "kib_per_connection", "S4 per idle connection", "{:,.1f} KiB", False),
    (5, "all_back_s", "S5 all back after restart", "{:,.1f} s", False),
]
CHARTED = [
    (1, "connects_per_s", "S1: connects/s (higher is better)"),
    (2, "achieved_per_s", "S2: deliveries/s achieved (higher is better)"),
    (2, "p99_ms", "S2: p99 publish→receive, ms (lower is better)"),
    (3, "deliveries_per_s", "S3: deliveries/s at max rate (higher is better)"),
    (3, "server_cpu_us_per_delivery", "S3: server CPU µs per delivery (lower is better)"),
    (4, "kib_per_connection", "S4: KiB per idle connection (lower is better)"),
    (5, "all_back_s", "S5: s from restart until all resumed, complete (lower is better)"),
]


def value(results: dict, key: str, scenario: int, field: str) -> float | None:
    entry = results.get(key, {}).get(str(scenario), {})
    if entry.get("status") != "ok":
        return None
    found = entry.get(field)
    return found if isinstance(found, int | float) else None


def cell(results: dict, key: str, scenario: int, field: str, fmt: str, baseline: str | None) -> str:
    entry = results.get(key, {}).get(str(scenario))
    if entry is None:
        return ""
    if entry.get("status") == "skipped":
        return "–"
    if entry.get("status") != "ok":
        return entry.get("status", "?")
    found = value(results, key, scenario, field)
    if found is None:
        return "n/a"
    text = fmt.format(found)
    if baseline and key != baseline:
        base = value(results, baseline, scenario, field)
        if base:
            text += f" ({found / base:.2f}×)"
    return text


def markdown_table(document: dict) -> str:
    """One row per server, one column per headline figure; `(N×)` is the ratio to the baseline's figure."""
    results = document["results"]
    keys = [target["key"] for target in document["targets"]]
    labels = {target["key"]: target["label"] for target in document["targets"]}
    baseline = "baseline" if "baseline" in results else None
    scenarios = {int(s) for key in keys for s in results.get(key, {})}
    columns = [c for c in COLUMNS if c[0] in scenarios]
    lines = [
        "| server | " + " | ".join(title for _, _, title, _, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key in keys:
        cells = [cell(results, key, s, field, fmt, baseline) for s, field, _, fmt, _ in columns]
        lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def problems(document: dict) -> list[str]:
    """One line per failed scenario, loss, or server log problem."""
    lines = []
    for key, scenarios in document["results"].items():
        for number, entry in scenarios.items():
            status = entry.get("status")
            if status in ("error", "timeout"):
                lines.append(f"{key} scenario {number}: {status}: {entry.get('error', '')[:300]}")
            for field in ("lost", "missing", "duplicates", "offset_gaps", "offset_repeats", "failed", "incomplete",
                          "unacknowledged", "stalls", "publisher_closed", "closed", "close_codes_after_kill"):
                if entry.get(field):
                    lines.append(f"{key} scenario {number}: {field} = {entry[field]}")
            for problem in entry.get("server_problems", [])[:2]:
                lines.append(f"{key} scenario {number}: the server logged: {problem[:300]}")
    return lines


def write_json(document: dict, path: Path) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def write_chart(document: dict, path: Path) -> str | None:
    """A PNG of the headline figures, one panel per figure; returns why not when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (pip install -r requirements-bench.txt): no chart"
    matplotlib.use("Agg")
    from matplotlib import pyplot

    results = document["results"]
    targets = document["targets"]
    panels = [(s, f, t) for s, f, t in CHARTED if any(value(results, x["key"], s, f) is not None for x in targets)]
    if not panels:
        return "no figures to chart"
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    cols = 4
    rows = (len(panels) + cols - 1) // cols
    figure, axes = pyplot.subplots(rows, cols, figsize=(15, 0.45 * len(targets) * rows + 1.2 * rows + 0.5),
                                   squeeze=False)  # fmt: skip
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    names = [x["key"] for x in targets]
    for ax, (scenario, field, title) in zip(axes.flat, panels, strict=False):
        values = [value(results, key, scenario, field) for key in names]
        bars = ax.barh(range(len(names)), [v or 0 for v in values], color=colours[: len(names)])
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        for bar, found, key in zip(bars, values, names, strict=True):
            status = results.get(key, {}).get(str(scenario), {}).get("status")
            if found is None:
                label = "does not apply" if status == "skipped" else "not run" if status is None else (
                    status if status != "ok" else "incomplete")
            else:
                label = f"{found:,.0f}" if found >= 10 else f"{found:,.2f}"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center", fontsize=7)
        ax.margins(x=0.25)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    machine = document["machine"]
    figure.suptitle(
        f"bench/run.py {document['started'][:16]} · {machine['cpus']} CPUs · "
        f"{'quick' if document['quick'] else 'full sizes'} · one server process each",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return None


def summary(document: dict) -> dict[str, Any]:
    """The headline figures by server, for a quick look in the JSON."""
    results = document["results"]
    return {
        target["key"]: {
            f"s{s}.{field}": value(results, target["key"], s, field) for s, field, _, _, _ in COLUMNS
        }
        for target in document["targets"]
    }
