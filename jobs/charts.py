"""Plotly figures for the comparison page, built in Python as plain figure dicts (the JSON that
plotly.js draws) and handed to the page as JSON; one small script, static/js/charts.js, draws
them. Plain dicts, not plotly.graph_objects: validating hundreds of traces on every page view
cost more than the rest of the page (the tests validate every figure with graph_objects)."""

from common.charts import RED, layout, to_json


def latency_unit(values):
    """(factor, unit) to show latencies in: µs when all are below 1 ms (0.008 ms reads as 8 µs)."""
    present = [v for v in values if v is not None]
    return (1000.0, "µs") if present and max(present) < 1 else (1.0, "ms")


def _scaled(values, factor):
    return [None if v is None else v * factor for v in values]


# Latency axes start at zero (never negative, even around a single point).
LATENCY_AXIS = {"rangemode": "tozero"}


def _lineage_root(version, by_id):
    """The first ancestor of ``version`` known here (its fp32 original, usually)."""
    seen = set()
    while version.parent_id in by_id and version.pk not in seen:
        seen.add(version.pk)
        version = by_id[version.parent_id]
    return version


def latency_distribution(comparison):
    """One box per version and target from the measured quartiles (whiskers: fastest run and p99)."""
    measured = [r for r in comparison.rows if r.result is not None]
    factor, unit = latency_unit([r.result.p99_ms for r in measured])
    traces = []
    for target in comparison.targets:
        rows = [r for r in measured if r.target == target]
        if not rows:
            continue
        traces.append(
            {
                "type": "box",
                "name": target.slug,
                "x": [r.version.version for r in rows],
                "q1": _scaled([r.result.p25_ms for r in rows], factor),
                "median": _scaled([r.result.p50_ms for r in rows], factor),
                "q3": _scaled([r.result.p75_ms for r in rows], factor),
                "lowerfence": _scaled([r.result.min_ms for r in rows], factor),
                "upperfence": _scaled([r.result.p99_ms for r in rows], factor),
                "mean": _scaled([r.result.mean_ms for r in rows], factor),
                "boxmean": True,
                "hovertemplate": "%{x}<br>median %{median:.3f} " + unit + "<extra>" + target.slug + "</extra>",
            }
        )
    return {
        "data": traces,
        "layout": layout(
            f"Latency distribution, batch {comparison.batch_size}",
            "box p25–p75, line median, dashes mean, whiskers fastest run to p99",
            y_title=unit,
            boxmode="group",
            yaxis=LATENCY_AXIS,
        ),
    }


def latency_by_batch(comparison):
    key = f"{comparison.percentile}_ms"
    series, sizes_seen = [], set()
    for target in comparison.targets:
        for version in comparison.versions:
            by_batch = comparison.results_by_batch.get((version.pk, target.pk), {})
            if by_batch:
                sizes = sorted(by_batch)
                sizes_seen.update(sizes)
                series.append(
                    (f"{version.version} on {target.slug}", sizes, [getattr(by_batch[s], key) for s in sizes])
                )
    factor, unit = latency_unit([y for _, _, ys in series for y in ys])
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": sizes,
            "y": _scaled(ys, factor),
            "hovertemplate": "batch %{x}: %{y:.3f} " + unit + "<extra>" + name + "</extra>",
        }
        for name, sizes, ys in series
    ]
    ticks = sorted(sizes_seen)  # one tick per measured batch size, not log-scale's 2 3 4 … 9
    return {
        "data": traces,
        "layout": layout(
            f"{comparison.percentile} latency by batch size",
            x_title="batch size",
            y_title=unit,
            xaxis={"type": "log", "tickvals": ticks, "ticktext": [str(t) for t in ticks]},
            yaxis=LATENCY_AXIS,
        ),
    }


def pareto(comparison):
    """Accuracy against latency, marker area by file size; the Pareto-optimal variants (no other
    is both faster and at least as accurate) are outlined and joined."""
    key = f"{comparison.percentile}_ms"
    points = [r for r in comparison.rows if r.result is not None and r.result.accuracy is not None]
    optimal = pareto_optimal([(getattr(r.result, key), r.result.accuracy) for r in points])
    largest = max((r.version.size_bytes for r in points), default=1)
    traces = []
    for target in comparison.targets:
        mine = [(r, optimal[i]) for i, r in enumerate(points) if r.target == target]
        if not mine:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": target.slug,
                "textposition": "top center",
                "x": [getattr(r.result, key) for r, _ in mine],
                "y": [r.result.accuracy * 100 for r, _ in mine],
                "text": [r.version.version for r, _ in mine],
                "marker": {
                    "size": [12 + 30 * (r.version.size_bytes / largest) ** 0.5 for r, _ in mine],
                    "opacity": 0.8,
                    "line": {"width": [3 if best else 0 for _, best in mine], "color": RED},
                },
                "customdata": [[r.version.size_bytes / 1e6, "Pareto-optimal" if best else ""] for r, best in mine],
                "hovertemplate": "%{text}<br>%{x:.3f} ms, %{y:.2f} %<br>%{customdata[0]:.2f} MB<br>%{customdata[1]}"
                "<extra>" + target.slug + "</extra>",
            }
        )
        front = sorted((getattr(r.result, key), r.result.accuracy * 100) for r, best in mine if best)
        if len(front) > 1:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"Pareto front ({target.slug})",
                    "x": [p[0] for p in front],
                    "y": [p[1] for p in front],
                    "hoverinfo": "skip",
                    "line": {"dash": "dot", "color": RED},
                }
            )
    return {
        "data": traces,
        "layout": layout(
            f"Accuracy vs {comparison.percentile} latency",
            "marker size: file size; outlined in red: Pareto-optimal",
            x_title=f"{comparison.percentile} ms",
            y_title="accuracy %",
            xaxis=LATENCY_AXIS,
        ),
    }


def pareto_optimal(points):
    """For (latency, accuracy) pairs: True where no other point is at least as good on both and
    better on one."""
    flags = []
    for i, (latency, accuracy) in enumerate(points):
        dominated = any(
            other_latency <= latency
            and other_accuracy >= accuracy
            and (other_latency < latency or other_accuracy > accuracy)
            for j, (other_latency, other_accuracy) in enumerate(points)
            if j != i
        )
        flags.append(not dominated)
    return flags


def history(comparison):
    """A latency figure across the model's versions in registration order: one labelled line per
    lineage (a version and what was made from it) and target."""
    key = f"{comparison.percentile}_ms"
    by_id = {v.pk: v for v in comparison.all_versions}
    lines = {}
    for version, target_pk, result in comparison.history:
        root = _lineage_root(version, by_id)
        lines.setdefault((target_pk, root.created, root.pk, root.version), []).append((version, result))
    factor, unit = latency_unit([getattr(r, key) for _, _, r in comparison.history])
    slugs = {t.pk: t.slug for t in comparison.targets}
    traces = []
    for (target_pk, _, _, root_name), points in sorted(lines.items(), key=lambda item: item[0][:3]):
        if target_pk not in slugs:
            continue
        points.sort(key=lambda item: (item[0].created, item[0].pk))
        name = f"{root_name} lineage on {slugs[target_pk]}"
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers+text",
                "name": name,
                "textposition": "top center",
                "x": [v.created for v, _ in points],
                "y": _scaled([getattr(r, key) for _, r in points], factor),
                "text": [v.version for v, _ in points],
                "cliponaxis": False,
                "hovertemplate": "%{text}<br>%{y:.3f} " + unit + "<extra>" + name + "</extra>",
            }
        )
    return {
        "data": traces,
        "layout": layout(
            f"{comparison.percentile} at batch {comparison.batch_size} across versions",
            "one line per lineage",
            x_title="registered",
            y_title=unit,
            yaxis=LATENCY_AXIS,
            showlegend=True,
        ),
    }


BUILDERS = {"distribution": latency_distribution, "batch": latency_by_batch, "pareto": pareto, "history": history}


def all_charts(comparison):
    """{name: figure JSON} for the page."""
    return {name: to_json(build(comparison)) for name, build in BUILDERS.items()}


def loss_curve(result):
    """A training job's mean loss per epoch, one line per stage (fine-tuning, distillation), from
    its result (partial while it runs); None when it has no curve."""
    curve = (result or {}).get("loss_curve") or []
    if not curve:
        return None
    stages = list(dict.fromkeys(point["stage"] for point in curve))
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": stage,
            "x": [p["epoch"] for p in curve if p["stage"] == stage],
            "y": [p["loss"] for p in curve if p["stage"] == stage],
            "hovertemplate": "epoch %{x}<br>loss %{y:.4f}<extra>" + stage + "</extra>",
        }
        for stage in stages
    ]
    return {
        "data": traces,
        "layout": layout(
            "Training loss", "mean loss per epoch", x_title="epoch", y_title="loss", height=320, uirevision="loss"
        ),
    }


def serving_profile(profile):
    """A serving profile's sweep (jobs.selectors.serving_profile_summary): throughput against p99
    for every configuration measured, one line per max_batch_size and thread count through its
    concurrency levels, the p99 budget as a dashed line and the recommended configuration ringed."""
    runs = [r for r in profile["runs"] if r.get("p99_ms") is not None]
    budget = profile["budget_ms"]
    factor, unit = latency_unit([r["p99_ms"] for r in runs] + ([budget] if budget is not None else []))
    lines = {}
    for run in sorted(runs, key=lambda r: r["concurrency"]):
        lines.setdefault((run["max_batch_size"], run["threads"]), []).append(run)
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": f"batch ≤ {size}, {threads} thread{'s' if threads != 1 else ''}",
            "x": _scaled([r["p99_ms"] for r in line], factor),
            "y": [r["throughput"] for r in line],
            "customdata": [r["concurrency"] for r in line],
            "hovertemplate": "concurrency %{customdata}<br>p99 %{x:.3f} "
            + unit
            + "<br>%{y:,.0f} req/s<extra>batch ≤ "
            + str(size)
            + "</extra>",
        }
        for (size, threads), line in sorted(lines.items())
    ]
    best = profile["recommended"]
    if best is not None and best.get("p99_ms") is not None:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "recommended",
                "x": [best["p99_ms"] * factor],
                "y": [best["throughput"]],
                "marker": {"size": 16, "symbol": "circle-open", "color": RED, "line": {"width": 2}},
                "hoverinfo": "skip",
            }
        )
    shapes = []
    if budget is not None:
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": budget * factor,
                "x1": budget * factor,
                "y0": 0,
                "y1": 1,
                "line": {"color": RED, "dash": "dash", "width": 1},
            }
        )
    target = profile["target"].slug
    return {
        "data": traces,
        "layout": layout(
            f"Serving profile on {target}",
            "throughput against p99 per configuration; dashed: the p99 budget",
            x_title=f"p99 ({unit}, log scale)",
            y_title="requests/s",
            # p99 spans decades across a sweep (µs unbatched, ms when batches wait) and the budget
            # may be far above them all: a log axis keeps every point and the budget apart.
            xaxis={"type": "log"},
            yaxis={"rangemode": "tozero"},
            shapes=shapes,
            height=360,
        ),
    }
