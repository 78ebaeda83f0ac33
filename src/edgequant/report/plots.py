"""The report's four plots, drawn with matplotlib's Agg backend into self-contained SVG.

Each plot comes with a sentence on how to read it; a plot with nothing to show says why instead
of drawing an empty frame. Simulated rows are left out of the speed plots.

Example:
    >>> speedup_plot([]).missing
    'no integer scheme with a measured fp32 baseline on the same runtime'
    >>> row = Row(run_id="b", model="m", backend="rt", scheme="w8a8", scenario="Offline",
    ...           status="ok", reason=None, simulated=False, speedup=3.0, integer_activations=True)
    >>> speedup_plot([row]).svg.startswith("<svg")
    True
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgequant.report.tables import (
    SCENARIO_ORDER,
    Row,
    devices_of,
    models_of,
    order_backends,
    primary_scenario,
)


@dataclass(kw_only=True)
class Plot:
    """One figure: ``svg`` markup, or ``missing`` saying why there is nothing to draw."""

    key: str
    title: str
    caption: str
    svg: str | None = None
    missing: str | None = None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; the report must build on a headless machine
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: smaller files, selectable in the browser
            "svg.hashsalt": "edgequant",  # stable element ids: the same data gives the same file
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _backends(rows: list[Row]) -> list[str]:
    return order_backends(r.backend for r in rows)


def _colors(names: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def speedup_error(r: Row) -> tuple[float, float] | None:
    """``(below, above)`` the bar: the paired 95% interval around the speed-up, if measured.

    Example:
        >>> row = Row(run_id="r", model="m", backend="b", scheme="w8a8", scenario="Offline",
        ...           status="ok", reason=None, simulated=False, speedup=2.5,
        ...           paired={"median": 2.5, "ci95": [2.4, 2.7]})
        >>> [round(x, 2) for x in speedup_error(row)]
        [0.1, 0.2]
    """
    ci = (r.paired or {}).get("ci95")
    if r.speedup is None or not isinstance(ci, list | tuple) or len(ci) != 2 or None in ci:
        return None
    return max(r.speedup - float(ci[0]), 0.0), max(float(ci[1]) - r.speedup, 0.0)


def _measured_speedups(rows: list[Row], keep: Callable[[Row], bool]) -> list[Row]:
    """The rows ``keep`` accepts with a measured speed-up in their model's primary scenario,
    simulated ones left out (their speed is not representative)."""
    picked: list[Row] = []
    for model in models_of(rows):
        mine = [r for r in rows if r.model == model]
        scen = primary_scenario(mine)
        picked += [
            r for r in mine if r.scenario == scen and r.speedup and not r.simulated and keep(r)
        ]
    return picked


def speedup_plot(rows: list[Row]) -> Plot:
    """Integer schemes' speedup over their runtime's fp32, grouped by model and scheme.

    When the rows span devices the groups are per device too (the same device's fp32 is the
    base of each bar), and each device's tick names its CPU class.
    """
    caption = (
        "Each bar is an integer scheme's speed divided by fp32 on the same runtime and scenario "
        "(throughput in Offline/Server, p50 latency in SingleStream/MultiStream), in each model's "
        "primary scenario (Offline when measured). Above the dashed 1× line the quantized model is "
        "faster; below it, quantization slowed it down (see the inspect notes). Error bars are "
        "the 95% interval of paired rounds (A B A B …); a * marks a single-run ratio with no "
        "interval."
    )
    multi = len(devices_of(rows)) > 1
    title = "INT8 vs FP32 speedup by " + ("device and runtime" if multi else "runtime and model")
    if multi:
        caption += " Groups are devices: each bar is against the same device's fp32."
    plot = Plot(key="speedup", title=title, caption=caption)
    picked = _measured_speedups(rows, lambda r: r.integer_activations)
    if not picked:
        plot.missing = "no integer scheme with a measured fp32 baseline on the same runtime"
        return plot
    groups = list(dict.fromkeys(_group(r, multi) for r in picked))
    cls = {r.device: r.cpu_class for r in picked if r.cpu_class}

    def hits(g: tuple[str, str, str, str], b: str) -> list[Row]:
        return [r for r in picked if _group(r, multi) == g and r.backend == b and r.speedup]

    fig, ax = _bar_chart(groups, _backends(picked), hits, "speedup", _label_speedups, 1.1, 3.6)
    ax.set_xticks(
        range(len(groups)),
        [
            (f"{d}" + (f" ({cls[d]})" if d in cls else "") + "\n" if multi else "")
            + f"{m}\n{s} ({sc})"
            for d, m, s, sc in groups
        ],
    )
    ax.set_ylabel("speedup vs fp32 (×)")
    classes = sorted({r.cpu_class for r in picked if r.cpu_class})
    _legend(ax, "runtime" + (f"\n(CPU class {', '.join(classes)})" if classes else ""))
    plot.svg = _svg(fig)
    return plot


def _label_speedups(ax: Any, bars: Any, xs: list[float], ys: list[float], rows: list[Row]) -> None:
    """Error bars of the paired interval, and each bar's ratio (``*``: a single-run ratio)."""
    errs = [speedup_error(r) for r in rows]
    if any(e is not None for e in errs):
        ax.errorbar(
            xs,
            ys,
            yerr=[[e[0] if e else 0.0 for e in errs], [e[1] if e else 0.0 for e in errs]],
            fmt="none",
            ecolor="0.1",
            elinewidth=1,
            capsize=3,
        )
    ax.bar_label(
        bars,
        labels=[f"{y:.2f}×" + ("" if e else "*") for y, e in zip(ys, errs)],
        fontsize=7,
        padding=3,
    )


def _bar_chart(
    groups: list[Any],
    backends: list[str],
    hits: Callable[[Any, str], list[Row]],
    field: str,
    each: Callable[[Any, Any, list[float], list[float], list[Row]], None] | None,
    per_group: float,
    height: float,
) -> tuple[Any, Any]:
    """Bars of ``row.<field>`` per group, the backends side by side, over a dashed 1× line.

    ``hits(group, backend)`` are the rows drawn at a group; ``each(ax, bars, xs, ys, rows)``
    decorates one backend's bars. Returns the figure and its axes for the ticks and labels.
    """
    plt = _plt()
    colors = _colors(backends)
    width = min(0.8 / len(backends), 0.3)  # a lone group should not fill the axes
    fig, ax = plt.subplots(
        figsize=(max(6.0, per_group * len(groups) * max(1, len(backends)) / 2 + 2), height)
    )
    for j, b in enumerate(backends):
        xs: list[float] = []
        rows: list[Row] = []
        for i, g in enumerate(groups):
            for r in hits(g, b):
                xs.append(i + (j - (len(backends) - 1) / 2) * width)
                rows.append(r)
        ys = [getattr(r, field) for r in rows]
        bars = ax.bar(xs, ys, width=width, label=b, color=colors[b])
        if each is not None:
            each(ax, bars, xs, ys, rows)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlim(-0.6, len(groups) - 0.4)  # keep bars slim when there are few groups
    return fig, ax


def _legend(ax: Any, title: str) -> None:
    ax.legend(title=title, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _group(r: Row, by_device: bool) -> tuple[str, str, str, str]:
    """The x group of a speed-up bar: (device or "", model, scheme, scenario)."""
    return (r.device if by_device else "", r.model, r.scheme, r.scenario)


def latency_plot(rows: list[Row]) -> Plot:
    """p50 bars with p90/p99 markers, one panel per scenario."""
    caption = (
        "One panel per LoadGen scenario. The bar is the median (p50) latency per query; the "
        "markers show p90 (◆) and p99 (▲) — a long gap between the bar and the markers means an "
        "unsteady run. Shorter is better; Offline queries carry many samples, so compare within a panel."
    )
    plot = Plot(key="latency", title="Latency percentiles per scenario", caption=caption)
    ok = [r for r in rows if r.status == "ok" and r.latency_ms.get("p50") is not None]
    scenarios = [s for s in SCENARIO_ORDER if any(r.scenario == s for r in ok)]
    if not scenarios:
        plot.missing = "no run recorded latency percentiles"
        return plot
    plt = _plt()
    heights = [len([r for r in ok if r.scenario == s]) for s in scenarios]
    # panels stacked, each as tall as its number of bars, so bars keep one thickness
    fig, axes = plt.subplots(
        len(scenarios),
        1,
        figsize=(8.0, 0.9 * len(scenarios) + 0.2 * sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": [h + 2 for h in heights]},
    )
    colors = _colors(_backends(ok))
    for ax, scen in zip(axes[:, 0], scenarios):
        mine = [r for r in ok if r.scenario == scen]
        labels = [f"{r.model} · {r.label}" + (" (simulated)" if r.simulated else "") for r in mine]
        ys = range(len(mine))
        ax.barh(
            ys,
            [r.latency_ms["p50"] for r in mine],
            color=[colors[r.backend] for r in mine],
            height=0.7,
        )
        for y, r in zip(ys, mine):
            if r.latency_ms.get("p90") is not None:
                ax.plot(r.latency_ms["p90"], y, marker="D", color="0.15", markersize=3.5)
            if r.latency_ms.get("p99") is not None:
                ax.plot(r.latency_ms["p99"], y, marker="^", color="0.15", markersize=4)
        ax.set_yticks(list(ys), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("latency per query (ms, log scale)")
        ax.set_title(scen)
    fig.tight_layout()
    plot.svg = _svg(fig)
    return plot


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both speedup (higher) and drop (lower).

    Example:
        >>> pareto_front([(1.0, 0.0), (2.0, 0.5), (1.5, 1.0), (3.0, 2.0)])
        [0, 1, 3]
    """
    front = []
    for i, (s, d) in enumerate(points):
        dominated = any(
            (s2 >= s and d2 <= d) and (s2 > s or d2 < d)
            for j, (s2, d2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def pareto_plot(rows: list[Row]) -> Plot:
    """Top-1 drop against speedup for every configuration with both measured."""
    caption = (
        "Each point is one runtime × scheme: how much faster than its runtime's fp32 (right is "
        "better) against how many top-1 points it lost (down is better). Ringed points joined by "
        "the line are the Pareto front — no other configuration is both faster and more accurate."
    )
    plot = Plot(
        key="pareto", title="Accuracy drop vs speedup (Pareto front highlighted)", caption=caption
    )
    # build_rows gives every run of a configuration that configuration's measured accuracy
    pts = _measured_speedups(rows, lambda r: r.top1_drop is not None)
    if not pts:
        plot.missing = (
            "accuracy was not measured together with speed for any configuration, so there is no "
            "accuracy/speed trade-off to draw (run with accuracy: true and labelled data)"
        )
        return plot
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    models = models_of(pts)
    colors = _colors(models)
    for m in models:
        mine = [r for r in pts if r.model == m]
        xy = [(r.speedup or 0.0, r.top1_drop or 0.0) for r in mine]
        ax.scatter([p[0] for p in xy], [p[1] for p in xy], color=colors[m], label=m, s=28, zorder=2)
        for r, (x, y) in zip(mine, xy):
            ax.annotate(r.label, (x, y), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
        front = sorted((xy[i] for i in pareto_front(xy)), key=lambda p: p[0])
        ax.plot(
            [p[0] for p in front], [p[1] for p in front], color=colors[m], linewidth=1.5, zorder=1
        )
        ax.scatter(
            [p[0] for p in front],
            [p[1] for p in front],
            facecolors="none",
            edgecolors="black",
            s=90,
            linewidths=1.2,
            zorder=3,
        )
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.axvline(1.0, color="0.6", linewidth=0.8, linestyle="--")
    ax.set_xlabel("speedup vs fp32 on the same runtime (×)")
    ax.set_ylabel("top-1 drop (points; lower is better)")
    _legend(ax, "model")
    plot.svg = _svg(fig)
    return plot


def size_plot(rows: list[Row]) -> Plot:
    """fp32 artifact size divided by each scheme's, per runtime."""
    caption = (
        "How many times smaller each artifact is than the same runtime's fp32 artifact (bytes on "
        "disk). 8-bit weights give about 4×, 4-bit about 8×; less means parts stayed in float."
    )
    plot = Plot(key="size", title="Model size reduction vs fp32", caption=caption)
    seen: dict[tuple[str, str, str], Row] = {}
    for r in rows:
        if r.status == "ok" and r.size_reduction and r.scheme != "fp32":
            seen.setdefault(r.config, r)
    if not seen:
        plot.missing = "no quantized artifact with an fp32 artifact on the same runtime to compare"
        return plot
    picked = list(seen.values())
    groups = list(dict.fromkeys((r.model, r.scheme) for r in picked))

    def hits(g: tuple[str, str], b: str) -> list[Row]:
        hit = seen.get((g[0], b, g[1]))
        return [hit] if hit is not None and hit.size_reduction else []

    fig, ax = _bar_chart(groups, _backends(picked), hits, "size_reduction", None, 0.55, 3.4)
    ax.set_xticks(
        range(len(groups)), [f"{m}\n{s}" for m, s in groups], fontsize=7, rotation=30, ha="right"
    )
    ax.set_ylabel("fp32 size / size (×)")
    _legend(ax, "runtime")
    plot.svg = _svg(fig)
    return plot


def all_plots(rows: list[Row]) -> list[Plot]:
    """The four plots in report order."""
    return [speedup_plot(rows), latency_plot(rows), pareto_plot(rows), size_plot(rows)]


__all__ = [
    "Plot",
    "all_plots",
    "latency_plot",
    "pareto_front",
    "pareto_plot",
    "size_plot",
    "speedup_error",
    "speedup_plot",
]
