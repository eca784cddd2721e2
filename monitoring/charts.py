"""Plotly figures of the endpoint monitoring page, built from ``series.endpoint_series`` as plain
figure dicts (drawn by static/js/charts.js like the comparison page's). ``uirevision`` keeps a
user's zoom while the live refresh replaces the data."""

from berth.core.drift import drift_text, threshold_text
from common import charts as site_charts
from common.charts import RED, to_json

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
AMBER = "#e6a700"
GREEN = "#2ca02c"
# The legend sits under the date axis's two lines of tick labels (time, then the date), not on them.
LIVE = {
    "uirevision": "live",
    "showlegend": True,
    "height": 340,
    "margin": {"l": 60, "r": 20, "t": 60, "b": 40},
    "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.3, "yanchor": "top"},
}
SEVERITY_CAP = 3.0
DEPLOY_COLORS = {"deploy": "#6b7280", "weights": "#6b7280", "promote": "#2ca02c", "rollback": RED}


def _color(index):
    return PALETTE[index % len(PALETTE)]


def _times(version):
    return [p["t"] for p in version["points"]]


# A deployment label takes about this share of a chart's width; closer ones go on another row.
LABEL_WIDTH = 0.09
ROW_PX = 13


def _fraction(moment, since, until):
    from datetime import datetime

    start, end = datetime.fromisoformat(since), datetime.fromisoformat(until)
    span = (end - start).total_seconds() or 1.0
    return (datetime.fromisoformat(moment) - start).total_seconds() / span


def deploy_markers(data):
    """Vertical lines (and labels) at every deployment change, for every chart. Labels that would
    touch are stacked on rows above the plot, so that "promote" and "rollback" a minute apart stay
    readable; ``rows`` says how many."""
    shapes, notes, row_ends = [], [], []
    for event in sorted(data["deployments"], key=lambda e: e["t"]):
        color = DEPLOY_COLORS.get(event["action"], "#6b7280")
        split = ", ".join(f"v{v} {w} %" for v, w in event["split"].items())
        at = _fraction(event["t"], data["since"], data["until"])
        row = next((i for i, end in enumerate(row_ends) if at - end >= LABEL_WIDTH), len(row_ends))
        if row == len(row_ends):
            row_ends.append(at)
        row_ends[row] = at
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": event["t"],
                "x1": event["t"],
                "y0": 0,
                "y1": 1,
                "line": {"color": color, "dash": "dot", "width": 1},
            }
        )
        notes.append(
            {
                "x": event["t"],
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "yanchor": "bottom",
                "showarrow": False,
                "yshift": row * ROW_PX,
                "text": event["action"],
                "hovertext": f"{event['action']}: {split}",
                "font": {"size": 10, "color": color},
            }
        )
    return {"shapes": shapes, "annotations": notes, "rows": len(row_ends)}


def _live_layout(data, title, subtitle, y_title, **extra):
    markers = deploy_markers(data)
    extra_shapes = extra.pop("shapes", [])
    margin = {**LIVE["margin"], "t": LIVE["margin"]["t"] + ROW_PX * max(0, markers["rows"] - 1)}
    return site_charts.layout(
        title,
        subtitle,
        y_title=y_title,
        xaxis={"type": "date", "range": [data["since"], data["until"]]},
        shapes=markers["shapes"] + extra_shapes,
        annotations=markers["annotations"],
        **{**LIVE, "margin": margin, **extra},
    )


def requests_chart(data):
    # A step the version served only part of (its first, or the one still being reported) is a
    # rate over the seconds it served, said so on hover; a step without data is a gap (lines, not
    # a stack: a stack would draw the gap as zero).
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"v{v['version']}",
            "x": _times(v),
            "y": [p["rps"] for p in v["points"]],
            "line": {"color": _color(i)},
            "connectgaps": False,
            "marker": {
                "size": [6 if p["partial"] and p["rps"] is not None else 0 for p in v["points"]],
                "symbol": "circle-open",
            },
            "customdata": [f" over {p['served_seconds']:.0f} s served" if p["partial"] else "" for p in v["points"]],
            "hovertemplate": "%{y:.2f} req/s%{customdata}<extra>v" + v["version"] + "</extra>",
        }
        for i, v in enumerate(data["versions"])
    ]
    return {
        "data": traces,
        "layout": _live_layout(
            data,
            "Requests per second",
            "per version; open circles: a step served in part (rate over the seconds served)",
            "req/s",
        ),
    }


def latency_chart(data):
    """Request latency per version (p50, p95, p99) and, where berth-serve reports it, the
    inference-only p95 at the batch size compared with the benchmark; the benchmark p95 is drawn
    beside that inference line only (a like figure). Where an end-to-end benchmark is like
    production's requests (same encoding and rows), its p95 is drawn beside the request p95 of
    that encoding and rows; a session.run figure never beside request latency."""
    traces = []
    for i, v in enumerate(data["versions"]):
        color = _color(i)
        for key, dash, width in (("p50_ms", "dot", 1), ("p95_ms", "solid", 2), ("p99_ms", "dash", 1)):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"v{v['version']} {key[:3]}",
                    "x": _times(v),
                    "y": [
                        p[key] if p[key] is not None else p["mean_ms"] if key == "p50_ms" else None for p in v["points"]
                    ],
                    "line": {"color": color, "dash": dash, "width": width},
                    "connectgaps": False,
                    "hovertemplate": "%{y:.3f} ms<extra>v" + v["version"] + " request " + key[:3] + "</extra>",
                }
            )
        like = (v.get("benchmark") or {}).get("inference") or {}
        if any(p.get("inference_p95_ms") is not None for p in v["points"]):
            rows = like.get("batch_size")
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"v{v['version']} inference p95 (batch {rows})",
                    "x": _times(v),
                    "y": [p.get("inference_p95_ms") for p in v["points"]],
                    "line": {"color": color, "dash": "dashdot", "width": 2},
                    "connectgaps": False,
                    "hovertemplate": "session.run p95 %{y:.3f} ms<extra>v" + v["version"] + "</extra>",
                }
            )
        request_like = (v.get("benchmark") or {}).get("request") or {}
        if v.get("request_benchmark_p95_ms") is not None:
            # The end-to-end benchmark beside the request p95 of the encoding and rows it is like.
            label = f"{request_like.get('encoding')}, batch {request_like.get('batch_size')}"
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"v{v['version']} request p95 ({label})",
                    "x": _times(v),
                    "y": [p.get("request_p95_ms") for p in v["points"]],
                    "line": {"color": color, "dash": "longdashdot", "width": 2},
                    "connectgaps": False,
                    "hovertemplate": f"request p95 ({label}) " + "%{y:.3f} ms<extra>v" + v["version"] + "</extra>",
                }
            )
            traces.append(
                _benchmark_line(
                    data, v, "request_benchmark_p95_ms", "end-to-end benchmark p95", label, color, "longdashdot"
                )
            )
        if v["benchmark_p95_ms"] is not None:
            traces.append(
                _benchmark_line(
                    data, v, "benchmark_p95_ms", "benchmark p95", f"batch {like.get('batch_size')}", color, "longdash"
                )
            )
    # Log scale: a session.run of microseconds and a request of milliseconds both stay readable.
    return {
        "data": traces,
        "layout": _live_layout(
            data,
            "Latency",
            "requests: p50 dotted, p95 solid, p99 dashed; dash-dot: inference-only p95; long dashes: "
            "the benchmark p95 at the same batch size; long dash-dot: the request p95 in the encoding and "
            "batch size served most, and its end-to-end benchmark p95",
            "ms (log)",
            yaxis={"type": "log"},
        ),
    }


def _benchmark_line(data, version, key, figure, like, color, dash):
    """``version``'s benchmark ``figure`` (its ``key``, ms) as a faint level line across the
    charted range, named with what the benchmark is ``like``."""
    return {
        "type": "scatter",
        "mode": "lines",
        "x": [data["since"], data["until"]],
        "y": [version[key]] * 2,
        "name": f"v{version['version']} {figure} ({like})",
        "line": {"color": color, "dash": dash, "width": 1},
        "opacity": 0.6,
        "hovertemplate": f"{figure} " + "%{y:.3f} ms<extra>v" + version["version"] + "</extra>",
    }


def errors_chart(data):
    traces = []
    for i, v in enumerate(data["versions"]):
        kinds = sorted({k for p in v["points"] for k in p["error_kinds"]})
        for j, kind in enumerate(kinds or ["errors"]):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"v{v['version']} {kind}",
                    "x": _times(v),
                    "y": [
                        100 * p["error_kinds"].get(kind, 0) / p["requests"] if p["requests"] else None
                        for p in v["points"]
                    ],
                    "line": {"color": _color(i), "dash": ["solid", "dot", "dash", "dashdot"][j % 4]},
                    "hovertemplate": "%{y:.2f} %<extra>v" + v["version"] + " " + kind + "</extra>",
                }
            )
    return {
        "data": traces,
        "layout": _live_layout(
            data, "Error rate by kind", "share of requests, per version", "% of requests", yaxis={"rangemode": "tozero"}
        ),
    }


def _severity(point):
    """How far past its thresholds a verdict is (1 = where it starts to drift), capped for the
    colour scale."""
    if point is None:
        return None
    return min(SEVERITY_CAP, point["relative"])


def _point_text(point, feature):
    """A heatmap cell's hover: the test's p-value and the effect against their thresholds."""
    verdict = "DRIFT" if point["drifted"] else "significant, too small" if point["warn"] else "like the reference"
    return f"{verdict}: {drift_text({**feature, **point})}"


# The colour scale and the drift-now bars: how far past its thresholds a verdict is
# (berth.core.drift.relative_drift), 1 where the feature starts to drift.
RELATIVE_TITLE = "past the thresholds (1: drifts)"


def drift_heatmap(data, version):
    features = version["drift"]["features"]
    z = [[_severity(point) for point in f["points"]] for f in features]
    text = [
        [("no verdict (too few requests)" if point is None else _point_text(point, f)) for point in f["points"]]
        for f in features
    ]
    trace = {
        "type": "heatmap",
        "x": _times(version),
        "y": [f["name"] for f in features],
        "z": z,
        "text": text,
        "zmin": 0,
        "zmax": 2,
        "hovertemplate": "%{y} %{x}<br>%{text}<extra></extra>",
        "hoverongaps": False,
        "colorscale": [[0, "#f7fbff"], [0.2, "#c6dbef"], [0.45, "#fdd49e"], [0.5, RED], [1, "#67000d"]],
        "colorbar": {
            "title": {"text": "past the<br>thresholds", "side": "top"},
            "tickvals": [0, 0.5, 1, 1.5, 2],
            "ticktext": ["0", "0.5", "1: drifts", "1.5", "2+"],
        },
    }
    height = max(320, 60 + 14 * len(features))
    return {
        "data": [trace],
        "layout": _live_layout(
            data,
            f"Drift per feature, v{version['version']}",
            "red: drifted (p-value below its threshold and the effect at or above its own); hover for the figures",
            None,
            height=height,
            yaxis={"automargin": True, "autorange": "reversed"},
        ),
    }


def drift_now_chart(version, verdicts, window_minutes):
    """The latest verdict of every feature: red drifted, amber a significant change too small to
    matter."""
    names, values, colors, text = [], [], [], []
    for name, verdict in verdicts.items():
        if verdict is None:
            continue
        names.append(name)
        values.append(_severity(verdict))
        colors.append(RED if verdict["drifted"] else AMBER if verdict.get("warn") else GREEN)
        text.append(
            ("DRIFT: " if verdict["drifted"] else "") + f"{verdict['explanation']}<br>{drift_text(verdict, name)}"
        )
    trace = {
        "type": "bar",
        "x": names,
        "y": values,
        "marker": {"color": colors},
        "text": text,
        "hovertemplate": "%{x}: %{text}<extra></extra>",
        "textposition": "none",
    }
    layout = site_charts.layout(
        f"Drift now, v{version} (last {window_minutes} min)",
        "bar: the smaller of p threshold ÷ p-value and effect ÷ its threshold; hover for the figures",
        y_title=RELATIVE_TITLE,
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": 1,
                "y1": 1,
                "line": {"color": RED, "dash": "dash"},
            }
        ],
        annotations=[
            {
                "xref": "paper",
                "x": 1,
                "xanchor": "right",
                "y": 1,
                "yanchor": "bottom",
                "text": _threshold_label(verdicts),
                "showarrow": False,
                "font": {"color": RED, "size": 11},
            }
        ],
        **{**LIVE, "showlegend": False},
        xaxis={"type": "category"},
    )
    return {"data": [trace], "layout": layout}


def _threshold_label(verdicts):
    """The drift-now line's label: when each test on the chart calls drift."""
    rules = {(v["test"], v["threshold"], v["effect"], v["effect_threshold"]) for v in verdicts.values() if v}
    return "drifts above: " + "; ".join(
        f"{threshold_text(test, p)} and {threshold_text(effect, e)}" for test, p, effect, e in sorted(rules)
    )


def histogram_chart(version, name):
    histogram = version["histograms"].get(name)
    if histogram is None:
        return None
    reference, current = histogram["reference"], histogram["current"] or []
    if histogram["kind"] == "class":
        labels = [str(i) for i in range(len(reference))]
    else:
        edges = histogram["edges"]
        labels = [f"≤ {edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in zip(edges, edges[1:])] + [f"> {edges[-1]:.3g}"]

    def share(counts):
        total = sum(counts)
        return [c / total if total else 0 for c in counts]

    traces = [
        {"type": "bar", "name": "reference", "x": labels, "y": share(reference), "marker": {"color": "#9ca3af"}},
        {
            "type": "bar",
            "name": "current",
            "x": labels,
            "y": share(current) if current else [],
            "marker": {"color": _color(0)},
        },
    ]
    return {
        "data": traces,
        "layout": site_charts.layout(
            f"{name}: reference vs current, v{version['version']}",
            "share of rows per bin over the chosen range",
            y_title="share",
            barmode="group",
            **LIVE,
        ),
    }


def page_figures(data, recent, *, feature=None, recent_minutes):
    """Every figure of the endpoint page as JSON, and the feature the histogram shows."""
    figures = {"requests": requests_chart(data), "latency": latency_chart(data), "errors": errors_chart(data)}
    primary = max(data["versions"], key=lambda v: (v["weight"], sum(p["requests"] for p in v["points"])), default=None)
    if primary is not None and primary["drift"]["features"]:
        figures["drift"] = drift_heatmap(data, primary)
        verdicts = next(
            (summary["drift"] for version, summary in recent.items() if version.version == primary["version"]), {}
        )
        if any(verdicts.values()):
            figures["drift_now"] = drift_now_chart(primary["version"], verdicts, recent_minutes)
        names = [f["name"] for f in primary["drift"]["features"]]
        if feature not in names:
            scored = [(v["relative"], name) for name, v in verdicts.items() if v]
            feature = max(scored)[1] if scored else names[0]
        figures["histogram"] = histogram_chart(primary, feature)
    return {name: to_json(figure) for name, figure in figures.items() if figure}, primary, feature
