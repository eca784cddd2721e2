"""The one decision rule: which version to ship on a target, and whether a version's quality
passes a limit. The compare page, the compare API, the overview's "Best variant per target"
and the promotion gates all call it. Plain Python: no Django.

Quality is judged against a reference the user sees and may change (``pick_reference``): by
default, for a measure on labels, the most accurate measured version on the same evaluation
set, whatever its lineage; for a fidelity measure, the version the fidelity was measured
against. Versions measured on another evaluation set, or not at all, do not compete on quality
and the decision says so. A drop smaller than the measured noise (the 95 % confidence interval
from the number of evaluated samples) is called "within noise" but still counted against the
limit. Among versions within latency noise of the fastest, the better quality wins, then the
smaller file: a latency tie never promotes a less accurate version.
"""

import math
from collections import Counter
from dataclasses import dataclass, field

from .quality import MEASURES, interval_half, task_measures


@dataclass
class Candidate:
    name: str  # the version string, "1-int8"
    ref: str  # "model:version", as fidelity names what it was measured against
    latency: float | None = None  # ms at the compared percentile; None: not measured
    spread: float = 0.0  # ms the latency may be off by (its confidence interval or run-to-run noise)
    size: int = 0  # bytes
    quality: dict = field(default_factory=dict)  # quality.read_quality's form
    item: object = None  # the caller's own row, handed back untouched


@dataclass
class Reference:
    name: str | None  # version string; None when there is nothing to judge against
    ref: str | None
    candidate: Candidate | None
    value: float | None = None
    evaluation_set: dict | None = None
    samples: int = 0
    chosen: bool = False  # chosen by the user rather than by the rule
    note: str = ""

    def describe(self, measure):
        if self.name is None:
            return self.note
        how = (
            "chosen by you"
            if self.chosen
            else (
                "the most accurate measured version on this evaluation set"
                if measure.basis == "labels"
                else f"what the {measure.label} of the variants was measured against"
            )
        )
        value = f", {measure.show(self.value)}" if measure.basis == "labels" and self.value is not None else ""
        return f"reference {self.name} ({how}{value})" + (f"; {self.note}" if self.note else "")


@dataclass
class Judgement:
    known: bool
    qualifies: bool
    text: str
    value: float | None = None
    delta: float | None = None  # value minus the reference's (labels) or the exact value (parent)
    noise: float | None = None  # half-width of the delta's 95 % confidence interval

    @property
    def within_noise(self):
        return self.delta is not None and self.noise is not None and abs(self.delta) <= self.noise


@dataclass
class Decision:
    choice: Candidate | None
    runner_up: Candidate | None
    measure: object  # quality.Measure, or None when no quality was measured at all
    limit: float | None
    reference: Reference | None
    judgements: dict  # candidate name → Judgement
    excluded: list  # [(candidate name, reason)]
    reason: str  # the whole reason, excluded versions included
    considered: int = 0
    summary: str = ""  # the reason without the list of excluded versions

    @property
    def limit_text(self):
        return self.measure.limit_text(self.limit) if self.measure else ""

    @property
    def evaluation_set(self):
        return self.reference.evaluation_set if self.reference else None


def choose_measure(task, candidates):
    """The first of the task's measures that any candidate has, or None."""
    for measure in task_measures(task):
        if any(_figure(c, measure) is not None for c in candidates):
            return measure
    return None


def _figure(candidate, measure):
    return (candidate.quality.get("metrics") or {}).get(measure.key)


def _value(candidate, measure):
    figure = _figure(candidate, measure)
    return figure.get("value") if figure else None


def _set_key(evaluation_set):
    return (evaluation_set.get("name"), evaluation_set.get("sha256")) if evaluation_set else None


def describe_set(evaluation_set, samples=None):
    if not evaluation_set:
        return "an unnamed evaluation set" + (f" ({samples} samples)" if samples else "")
    count = evaluation_set.get("samples") or samples
    return f"evaluation set {evaluation_set.get('name')}" + (f" ({count} samples)" if count else "")


def pick_reference(candidates, measure, requested=None):
    """The version quality is judged against (see the module docstring). ``requested``: a
    version string the user chose."""
    if measure is None:
        return None
    by_name = {c.name: c for c in candidates}
    if measure.basis == "labels":
        if requested:
            chosen = by_name.get(requested)
            if chosen is None or _value(chosen, measure) is None:
                return Reference(
                    requested,
                    chosen.ref if chosen else None,
                    chosen,
                    chosen=True,
                    note=f"{requested} has no measured {measure.label} here, so none can be judged",
                )
            return _labels_reference(chosen, measure, chosen=True)
        measured = [c for c in candidates if _value(c, measure) is not None]
        if not measured:
            return Reference(None, None, None, note=f"no version has a measured {measure.label}")
        groups = {}
        for c in measured:
            groups.setdefault(_set_key(c.quality.get("evaluation_set")), []).append(c)
        # The evaluation set most versions were measured on (then the larger one) is the one
        # they compete on; its most accurate version is the reference.
        members = max(groups.values(), key=lambda group: (len(group), max(_samples(c, measure) for c in group)))
        sign = 1 if measure.higher_is_better else -1
        best = max(members, key=lambda c: (sign * _value(c, measure), _samples(c, measure)))
        return _labels_reference(best, measure, chosen=False)
    measured_against = Counter(
        c.quality.get("reference") for c in candidates if _value(c, measure) is not None and c.quality.get("reference")
    )
    if requested:
        chosen = by_name.get(requested)
        ref = chosen.ref if chosen else None
        return Reference(
            requested,
            ref,
            chosen,
            value=measure.exact,
            chosen=True,
            note="" if ref in measured_against else f"no {measure.label} was measured against it",
        )
    if not measured_against:
        return Reference(None, None, None, note=f"no version has a measured {measure.label}")
    by_ref = {c.ref: c for c in candidates}
    ref = max(measured_against, key=lambda r: (measured_against[r], r in by_ref))
    candidate = by_ref.get(ref)
    return Reference(candidate.name if candidate else ref.split(":", 1)[-1], ref, candidate, value=measure.exact)


def _samples(candidate, measure):
    figure = _figure(candidate, measure) or {}
    return figure.get("samples") or candidate.quality.get("samples") or 0


def _labels_reference(candidate, measure, *, chosen):
    evaluation_set = candidate.quality.get("evaluation_set")
    return Reference(
        candidate.name,
        candidate.ref,
        candidate,
        value=_value(candidate, measure),
        evaluation_set=evaluation_set,
        samples=_samples(candidate, measure),
        chosen=chosen,
    )


def judge_quality(candidate, reference, measure, limit):
    """Whether ``candidate``'s quality is known against ``reference`` and within ``limit``
    (in the measure's terms: see quality.Measure.limit_kind)."""
    if measure is None:
        return Judgement(False, True, "quality not measured")
    figure = _figure(candidate, measure)
    if measure.basis == "labels":
        return _judge_on_labels(candidate, figure, reference, measure, limit)
    return _judge_fidelity(candidate, figure, reference, measure, limit)


def _judge_on_labels(candidate, figure, reference, measure, limit):
    if reference is None or reference.value is None:
        return Judgement(False, False, f"{measure.label} cannot be judged: {reference.note if reference else ''}")
    if figure is None or figure.get("value") is None:
        return Judgement(False, False, f"{measure.label} unknown — not measured on a labelled evaluation set")
    mine = candidate.quality.get("evaluation_set")
    if _set_key(mine) != _set_key(reference.evaluation_set):
        return Judgement(
            False,
            False,
            f"measured on {describe_set(mine, _samples(candidate, measure))}, not on the "
            f"reference's {describe_set(reference.evaluation_set, reference.samples)}: "
            f"does not compete on {measure.label}",
        )
    value = figure["value"]
    where = describe_set(mine, _samples(candidate, measure))
    if candidate is reference.candidate:
        return Judgement(
            True,
            True,
            f"{measure.label} {measure.show(value)} on {where}, the reference",
            value,
            0.0,
            interval_half(figure),
        )
    delta = value - reference.value
    noise = math.hypot(interval_half(figure), interval_half(_figure(reference.candidate, measure)))
    if measure.limit_kind == "rise":
        rise = delta / abs(reference.value) if reference.value else (0.0 if delta <= 0 else math.inf)
        qualifies = rise <= limit + 1e-12
        change = f"{rise * 100:+.2f} %"
    else:
        drop = -delta if measure.higher_is_better else delta
        qualifies = drop <= limit + 1e-12
        change = f"{delta * 100:+.2f} pt"
    noise_text = (
        f", within noise (±{_in_units(noise, measure)})"
        if abs(delta) <= noise and delta
        else f" (noise ±{_in_units(noise, measure)})"
        if noise
        else ""
    )
    text = (
        f"{measure.label} {measure.show(value)} on {where}: {change} against the reference {reference.name}"
        f"{noise_text}; limit {measure.limit_text(limit)}"
    )
    return Judgement(True, qualifies, text, value, delta, noise)


def _judge_fidelity(candidate, figure, reference, measure, limit):
    if reference is None or reference.ref is None:
        return Judgement(False, False, f"{measure.label} cannot be judged: {reference.note if reference else ''}")
    if candidate.ref == reference.ref:
        return Judgement(
            True, True, f"the reference itself ({measure.label} {measure.show(measure.exact)})", measure.exact, 0.0, 0.0
        )
    if figure is None or figure.get("value") is None:
        return Judgement(False, False, f"quality unknown — no labels and no {measure.label} measured")
    against = candidate.quality.get("reference")
    if against != reference.ref:
        return Judgement(
            False,
            False,
            f"{measure.label} measured against {against}, not against the reference "
            f"{reference.ref}: does not compete on {measure.label}",
        )
    value = figure["value"]
    if measure.limit_kind == "min":
        qualifies = value >= limit - 1e-12
    elif measure.limit_kind == "max":
        qualifies = value <= limit + 1e-12
    else:  # drop from the exact value
        qualifies = measure.exact - value <= limit + 1e-12
    noise = interval_half(figure)
    samples = _samples(candidate, measure)
    worst = f", worst {measure.show(figure['worst'])}" if figure.get("worst") is not None else ""
    mark = "✓" if qualifies else "✗"
    near = " (within noise of the limit)" if noise and abs(value - _limit_value(measure, limit)) <= noise else ""
    text = (
        f"{measure.label} {measure.show(value)}{worst} against {reference.name}"
        f"{f' on {samples} samples' if samples else ''}: {measure.limit_text(limit)} {mark}{near}"
    )
    return Judgement(True, qualifies, text, value, value - measure.exact, noise)


def _limit_value(measure, limit):
    return measure.exact - limit if measure.limit_kind == "drop" else limit


def _in_units(amount, measure):
    return f"{amount * 100:.2f} pt" if measure.percent else f"{amount:.3g}"


def decide(candidates, *, task, limits=None, budget_ms=None, reference=None, percentile="p95"):
    """Pick the fastest candidate within the latency budget and the quality limit.

    ``limits``: {parameter: limit in the measure's terms} (quality.LIMIT_PARAMS: already
    converted, e.g. max_drop_pt → 0.005); a measure without one gets its default.
    ``reference``: a version string, or None for the rule's own choice.
    """
    measured = [c for c in candidates if c.latency is not None]
    measure = choose_measure(task, measured)
    limit = None
    if measure is not None:
        given = (limits or {}).get(measure.param)
        limit = measure.default_limit if given is None else given
    ref = pick_reference(measured, measure, reference)
    if not measured:
        nothing = "Nothing is measured at this batch size."
        return Decision(None, None, measure, limit, ref, {}, [], nothing, 0, nothing)
    judgements, excluded, qualifying = {}, [], []
    for c in measured:
        judgement = judgements[c.name] = judge_quality(c, ref, measure, limit)
        if budget_ms is not None and c.latency > budget_ms:
            excluded.append((c.name, f"{percentile} {_ms(c.latency)} > {_ms(budget_ms)}"))
        elif not judgement.qualifies:
            excluded.append((c.name, judgement.text))
        else:
            qualifying.append(c)
    if not qualifying:
        return Decision(
            None,
            None,
            measure,
            limit,
            ref,
            judgements,
            excluded,
            "None qualifies: " + "; ".join(f"{name}: {why}" for name, why in excluded) + ".",
            len(measured),
            "None qualifies.",
        )
    qualifying.sort(key=lambda c: (c.latency, c.size))
    fastest = qualifying[0]
    tied = [c for c in qualifying if c.latency - fastest.latency <= fastest.spread + c.spread]
    sign = 1 if measure is None or measure.higher_is_better else -1

    def better(c):
        value = judgements[c.name].value
        return (-sign * value if value is not None else math.inf, c.size, c.latency)

    choice = min(tied, key=better)
    rest = [c for c in qualifying if c is not choice]
    runner_up = rest[0] if rest else None
    parts = [_reason(choice, judgements[choice.name], measure, ref, budget_ms, percentile)]
    if len(tied) > 1:
        names = " and ".join([choice.name, ", ".join(c.name for c in tied if c is not choice)])
        by_quality = any(better(c)[0] > better(choice)[0] for c in tied)
        parts.append(
            f"{names} are within noise of each other on {percentile}; "
            + (
                f"the better {measure.label} wins (a tie never promotes a less accurate version)"
                if by_quality
                else "the smaller file wins" + (f" (equal {measure.label})" if measure else "")
            )
        )
    if measure is None:
        parts.append(
            "No version has a measured quality (no labelled evaluation set and no fidelity against a "
            "parent): chosen on latency alone, quality not judged"
        )
    summary = ". ".join(parts) + "."
    if excluded:
        parts.append("Excluded: " + "; ".join(f"{name}: {why}" for name, why in excluded))
    return Decision(
        choice, runner_up, measure, limit, ref, judgements, excluded, ". ".join(parts) + ".", len(measured), summary
    )


def _reason(choice, judgement, measure, reference, budget_ms, percentile):
    text = f"{percentile} {_ms(choice.latency)}" + (f" within the {_ms(budget_ms)} budget" if budget_ms else "")
    if measure is not None:
        text += f"; {judgement.text}"
        if reference is not None and reference.name and reference.candidate is not choice:
            text += f"; {reference.describe(measure)}"
            if reference.candidate is not None and reference.candidate.size:
                text += f"; {choice.size / reference.candidate.size:.2f}× its size"
    return text


def quality_gate(candidates, *, version, measure_key, limit):
    """A promotion gate on quality: (passed, judgement, reference) of the candidate named
    ``version`` among ``candidates`` (the model's measured versions), judged by the rule."""
    measure = MEASURES[measure_key]
    reference = pick_reference(candidates, measure)
    candidate = next((c for c in candidates if c.name == version), None)
    if candidate is None:
        return False, Judgement(False, False, f"no {measure.label} measured for {version}"), reference
    judgement = judge_quality(candidate, reference, measure, limit)
    return judgement.qualifies, judgement, reference


def format_ms(value):
    """Milliseconds with four significant figures or so: 0.016, 4.000, 10.00, 120.5."""
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _ms(value):
    return f"{format_ms(value)} ms"
