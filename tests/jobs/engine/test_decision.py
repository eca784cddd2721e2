"""The decision rule (jobs.engine.decision), without a database: lineages, noise, missing and
different evaluation sets, latency ties, the reference, fidelity measures and gates."""

import pytest

from jobs.engine.decision import Candidate, decide, judge_quality, pick_reference, quality_gate
from jobs.engine.quality import MEASURES, binomial_half_width


def labelled(name, *, latency, accuracy, size=1000, spread=0.1, evaluation_set="eval", samples=360):
    half = binomial_half_width(accuracy, samples)
    quality = {
        "evaluation_set": {"name": evaluation_set, "sha256": evaluation_set * 8, "samples": samples},
        "samples": samples,
        "metrics": {
            "accuracy": {"value": accuracy, "samples": samples, "interval": [accuracy - half, accuracy + half]}
        },
    }
    return Candidate(name=name, ref=f"digits:{name}", latency=latency, spread=spread, size=size, quality=quality)


def unevaluated(name, *, latency, size=1000, spread=0.1):
    return Candidate(name=name, ref=f"digits:{name}", latency=latency, spread=spread, size=size, quality={})


def fidelity(name, *, latency, against, cosine=None, size=1000, spread=0.1, samples=64, model="minilm"):
    metrics = (
        {"cosine": {"value": cosine, "samples": samples, "interval": [cosine - 0.001, cosine + 0.001]}}
        if cosine is not None
        else {}
    )
    quality = {
        "evaluation_set": None,
        "reference": f"{model}:{against}" if against else None,
        "samples": samples,
        "metrics": metrics,
    }
    return Candidate(name=name, ref=f"{model}:{name}", latency=latency, spread=spread, size=size, quality=quality)


def test_an_untrained_version_of_another_lineage_is_never_picked():
    trained = labelled("1", latency=4.0, accuracy=0.992, size=4000)
    untrained = labelled("3", latency=2.0, accuracy=0.108, size=4000)  # its own root: no parent to lose against
    small = labelled("3-ux-small", latency=1.0, accuracy=0.105, size=500)
    decision = decide([trained, untrained, small], task="classification", limits={"max_drop_pt": 0.005})
    assert decision.choice is trained
    assert decision.reference.name == "1" and decision.reference.evaluation_set["name"] == "eval"
    assert dict(decision.excluded)["3"].startswith(
        "accuracy 10.80 % on evaluation set eval (360 samples): -88.40 pt against the reference 1"
    )
    assert "3-ux-small" in dict(decision.excluded)
    # Without a limit given, the default (0.5 pt) applies: still never the untrained one.
    assert decide([trained, untrained, small], task="classification").choice is trained


def test_a_drop_within_noise_is_called_so_and_still_counts_against_the_limit():
    reference = labelled("1", latency=10.0, accuracy=0.980)
    close = labelled("1-int8", latency=4.0, accuracy=0.975)  # −0.5 pt, noise ±2 pt on 360 samples
    far = labelled("1-int4", latency=3.0, accuracy=0.970)  # −1.0 pt: within noise but over the limit
    decision = decide([reference, close, far], task="classification", limits={"max_drop_pt": 0.005})
    assert decision.choice is close
    judgement = decision.judgements["1-int8"]
    assert judgement.within_noise and judgement.delta == pytest.approx(-0.005)
    assert "within noise (±" in judgement.text and "limit at most 0.50 pt accuracy drop" in judgement.text
    assert decision.judgements["1-int4"].within_noise and not decision.judgements["1-int4"].qualifies
    # With many more samples the same drop is beyond noise.
    big = [
        labelled(c.name, latency=c.latency, accuracy=a, samples=1_000_000)
        for c, a in ((reference, 0.980), (close, 0.975))
    ]
    assert not decide(big, task="classification").judgements["1-int8"].within_noise


def test_missing_evaluation_does_not_compete_on_accuracy():
    reference = labelled("1", latency=10.0, accuracy=0.98)
    unmeasured = unevaluated("1-int8", latency=2.0)
    decision = decide([reference, unmeasured], task="classification")
    assert decision.choice is reference
    assert dict(decision.excluded)["1-int8"] == "accuracy unknown — not measured on a labelled evaluation set"
    assert "Excluded: 1-int8: accuracy unknown" in decision.reason


def test_with_no_quality_measured_at_all_it_says_latency_alone():
    decision = decide([unevaluated("1", latency=10.0), unevaluated("2", latency=5.0)], task="classification")
    assert decision.choice.name == "2" and decision.measure is None
    assert "chosen on latency alone, quality not judged" in decision.reason


def test_different_evaluation_sets_do_not_compete():
    main = labelled("1", latency=10.0, accuracy=0.95, samples=1000)
    also = labelled("2", latency=9.0, accuracy=0.949, samples=1000)
    easy = labelled("1-int8", latency=2.0, accuracy=1.0, evaluation_set="easy", samples=20)
    decision = decide([main, also, easy], task="classification")
    # The set most versions were measured on is the one they compete on, whatever the accuracy on another.
    assert decision.reference.name == "1" and decision.reference.evaluation_set["name"] == "eval"
    assert decision.choice is also
    assert dict(decision.excluded)["1-int8"] == (
        "measured on evaluation set easy (20 samples), not on the "
        "reference's evaluation set eval (1000 samples): does not compete "
        "on accuracy"
    )


def test_a_latency_tie_never_promotes_a_less_accurate_version():
    accurate = labelled("1", latency=4.0, accuracy=0.992, size=4000, spread=0.2)
    smaller = labelled("1-small", latency=3.9, accuracy=0.990, size=500, spread=0.2)  # within the limit too
    decision = decide([accurate, smaller], task="classification")
    assert decision.choice is accurate and decision.runner_up is smaller
    assert "within noise of each other on p95; the better accuracy wins" in decision.reason
    # Equal accuracy: the smaller file wins the tie.
    twin = labelled("1-twin", latency=3.9, accuracy=0.992, size=500, spread=0.2)
    decision = decide([accurate, twin], task="classification")
    assert decision.choice is twin and "the smaller file wins (equal accuracy)" in decision.reason
    # Clearly faster (beyond both spreads): speed wins within the limit.
    fast = labelled("1-fast", latency=2.0, accuracy=0.990, size=4000, spread=0.2)
    assert decide([accurate, fast], task="classification").choice is fast


def test_the_user_may_choose_the_reference():
    best = labelled("1", latency=10.0, accuracy=0.99)
    older = labelled("0", latency=8.0, accuracy=0.97)
    variant = labelled("0-int8", latency=2.0, accuracy=0.968)
    assert decide([best, older, variant], task="classification").choice is best  # 0 and 0-int8: 2 pt below 1
    chosen = decide([best, older, variant], task="classification", reference="0")
    assert chosen.reference.chosen and chosen.reference.name == "0" and chosen.choice is variant
    assert "reference 0 (chosen by you" in chosen.reason
    unmeasured = decide([best, unevaluated("x", latency=1.0)], task="classification", reference="x")
    assert unmeasured.choice is None and "x has no measured accuracy here" in unmeasured.reason


def test_the_budget_excludes_and_says_so():
    decision = decide([labelled("1", latency=10.0, accuracy=0.98)], task="classification", budget_ms=5)
    assert decision.choice is None and decision.reason == "None qualifies: 1: p95 10.00 ms > 5.000 ms."


def test_embeddings_are_judged_on_cosine_to_what_they_were_measured_against():
    fp32 = fidelity("1", latency=33.0, against=None, size=4000)  # the root: no fidelity of its own
    int8 = fidelity("1-int8", latency=14.0, against="1", cosine=0.985, size=1000)
    auto = fidelity("1-auto", latency=14.1, against="1", cosine=0.991, size=1000)
    unknown = fidelity("1-fp16", latency=10.0, against=None, size=2000)
    decision = decide([fp32, int8, auto, unknown], task="embedding", limits={"min_cosine": 0.99})
    assert decision.measure.key == "cosine" and decision.reference.name == "1"
    assert decision.choice is auto
    assert "cosine 0.991 against 1 on 64 samples: cosine ≥ 0.99 ✓" in decision.judgements["1-auto"].text
    assert dict(decision.excluded)["1-fp16"] == "quality unknown — no labels and no cosine measured"
    assert "cosine ≥ 0.99 ✗" in dict(decision.excluded)["1-int8"]
    assert decision.judgements["1"].text.startswith("the reference itself")


def test_fidelity_against_another_lineage_does_not_compete():
    a = fidelity("1", latency=10.0, against=None)
    a_int8 = fidelity("1-int8", latency=5.0, against="1", cosine=0.999)
    a_fp16 = fidelity("1-fp16", latency=6.0, against="1", cosine=0.9999)
    b_small = fidelity("2-small", latency=1.0, against="2", cosine=1.0)  # faithful to another, untrained root
    decision = decide([a, a_int8, a_fp16, b_small], task="embedding")
    assert decision.reference.name == "1" and decision.choice is a_int8
    assert "measured against minilm:2, not against the reference minilm:1" in dict(decision.excluded)["2-small"]


def test_pick_reference_prefers_the_most_accurate_on_the_shared_set():
    candidates = [
        labelled("a", latency=1, accuracy=0.90),
        labelled("b", latency=1, accuracy=0.95),
        labelled("c", latency=1, accuracy=0.99, evaluation_set="other"),
    ]
    reference = pick_reference(candidates, MEASURES["accuracy"])
    assert reference.name == "b" and reference.value == 0.95


def test_a_quality_gate_uses_the_same_rule():
    candidates = [labelled("1", latency=None, accuracy=0.992), labelled("3", latency=None, accuracy=0.108)]
    passed, judgement, reference = quality_gate(candidates, version="3", measure_key="accuracy", limit=0.005)
    assert not passed and reference.name == "1" and judgement.delta == pytest.approx(-0.884)
    passed, judgement, _ = quality_gate(candidates, version="1", measure_key="accuracy", limit=0.005)
    assert passed and judgement.delta == 0.0
    missing = quality_gate(candidates, version="9", measure_key="accuracy", limit=0.005)
    assert missing[0] is False and not missing[1].known


def test_a_judgement_without_a_reference_is_unknown():
    judgement = judge_quality(labelled("1", latency=1, accuracy=0.9), None, MEASURES["accuracy"], 0.005)
    assert not judgement.known and not judgement.qualifies
