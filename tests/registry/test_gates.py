"""Promotion gates on the production alias, admin overrides, and the alias log."""

import pytest
from django.test import Client

from jobs import gates
from jobs.models import BenchmarkResult, Job
from registry import services
from registry.models import Alias, AliasEvent, HardwareTarget, Model, ModelVersion, PromotionGate
from tests.conftest import register

pytestmark = pytest.mark.django_db

PRODUCTION = "/api/v1/models/digits/aliases/production/"
CANDIDATE = "/api/v1/models/digits/aliases/candidate/"
GATES = "/api/v1/models/digits/gates/"
EVENTS = "/api/v1/models/digits/alias-events/"


@pytest.fixture
def world(engineer_api, engineer, onnx_file, other_onnx_file):
    """digits:1 and digits:2 (2's parent is 1) and the cpu target, with no benchmarks yet."""
    assert register(engineer_api, onnx_file, version="1").status_code == 201
    assert register(engineer_api, other_onnx_file, version="2", parent="1").status_code == 201
    cpu = HardwareTarget.objects.create(slug="cpu", name="CPU")
    model = Model.objects.get(name="digits")
    return {
        "model": model,
        "v1": model.versions.get(version="1"),
        "v2": model.versions.get(version="2"),
        "cpu": cpu,
        "engineer": engineer,
    }


def bench(
    version,
    target,
    *,
    p95=4.0,
    batch_sizes=(1,),
    threads=None,
    accuracy_delta=None,
    stable=True,
    accuracy=None,
    evaluation_set="eval",
    samples=1000,
    fidelity=None,
):
    """One finished benchmark job of ``version`` on ``target`` with a row per batch size;
    ``accuracy`` on ``evaluation_set`` of ``samples`` samples."""
    job = Job.objects.create(kind="benchmark", version=version, target=target, status="succeeded", queue=target.queue)
    quality = (
        {
            "evaluation_set": {"name": evaluation_set, "sha256": evaluation_set.ljust(64, "0"), "samples": samples},
            "samples": samples,
        }
        if accuracy is not None
        else {}
    )
    for batch_size in batch_sizes:
        BenchmarkResult.objects.create(
            job=job,
            version=version,
            target=target,
            batch_size=batch_size,
            threads=threads,
            iterations=30,
            warmup=5,
            p50_ms=p95 * 0.8,
            p90_ms=p95 * 0.95,
            p95_ms=p95,
            p99_ms=p95 * 1.1,
            mean_ms=p95 * 0.85,
            std_ms=0.1,
            throughput=1000 * batch_size / p95,
            stable=stable,
            accuracy=accuracy if accuracy is not None else None if accuracy_delta is None else 0.95,
            accuracy_delta=accuracy_delta,
            quality=quality,
            fidelity=fidelity or {"samples": samples},
            samples=b"",
            environment={},
        )
    return job


def gate(world, kind="max_p95_ms", threshold=5.0, target="cpu", batch_size=1):
    return services.gate_create(
        model=world["model"],
        kind=kind,
        threshold=threshold,
        target=HardwareTarget.objects.get(slug=target) if target else None,
        batch_size=batch_size,
        created_by=world["engineer"],
    )


def production():
    alias = Alias.objects.filter(model__name="digits", name="production").first()
    return alias.version.version if alias else None


def browser(user):
    client = Client()
    client.force_login(user)
    return client


# --- moving production -----------------------------------------------------------------------


def test_it_moves_production_when_every_gate_passes(world, engineer_api):
    gate(world, threshold=5.0, batch_size=8)
    gate(world, kind="max_accuracy_drop", threshold=0.005, target=None)
    bench(world["v2"], world["cpu"], p95=4.2, batch_sizes=(1, 8), accuracy_delta=-0.004)

    response = engineer_api.put(PRODUCTION, {"version": "2"}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == "2" and body["overridden"] is False
    assert [g["passed"] for g in body["gates"]] == [True, True]
    assert production() == "2"
    event = AliasEvent.objects.get()
    assert (event.alias, event.action, event.from_version, event.to_version, event.user.username) == (
        "production",
        "set",
        None,
        world["v2"],
        "ed",
    )
    assert not event.overridden and len(event.gate_results) == 2
    p95 = next(r for r in event.gate_results if r["kind"] == "max_p95_ms")
    assert p95["measured"] == 4.2 and p95["description"] == "p95 ≤ 5 ms on cpu at batch 8"
    assert p95["reason"] == f"p95 4.20 ms on cpu at batch 8 within 5 ms (benchmark job #{p95['job']})"


def test_it_blocks_a_move_that_fails_a_gate_and_writes_nothing(world, engineer_api):
    gate(world, threshold=5.0, batch_size=8)
    assert engineer_api.put(PRODUCTION, {"version": "1"}, format="json").status_code == 409  # not measured yet
    bench(world["v1"], world["cpu"], p95=3.0, batch_sizes=(8,))
    assert engineer_api.put(PRODUCTION, {"version": "1"}, format="json").status_code == 200
    bench(world["v2"], world["cpu"], p95=7.31, batch_sizes=(1, 8))
    events = AliasEvent.objects.count()

    response = engineer_api.put(PRODUCTION, {"version": "2"}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert "fails 1 of the 1 promotion gates" in body["detail"]
    assert "p95 7.31 ms on cpu at batch 8 exceeds 5 ms" in body["detail"]
    assert "an admin may override" in body["detail"]
    assert body["errors"] == {"version": [body["detail"]]}
    [failed] = body["gates"]
    assert failed["passed"] is False and failed["measured"] == 7.31 and failed["batch_size"] == 8
    assert production() == "1"
    assert AliasEvent.objects.count() == events
    assert Alias.objects.get().updated_by.username == "ed"


def test_it_blocks_a_version_without_a_benchmark(world, engineer_api):
    gate(world, threshold=5.0, batch_size=8)
    bench(world["v2"], world["cpu"], p95=1.0, batch_sizes=(1,))  # measured, but not at batch 8

    response = engineer_api.put(PRODUCTION, {"version": "2"}, format="json")

    assert response.status_code == 409
    [failed] = response.json()["gates"]
    assert failed["measured"] == "no benchmark"
    assert failed["reason"] == "no benchmark of 2 on cpu at batch 8; run one first"
    assert "run one first" in response.json()["detail"]
    assert production() is None and not AliasEvent.objects.exists()


def test_it_counts_an_unstable_result_but_says_so(world):
    gate(world, threshold=5.0)
    bench(world["v2"], world["cpu"], p95=4.0, stable=False)
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is True and result["stable"] is False
    assert "unstable" in result["reason"]


def test_it_judges_the_newest_result_of_the_gated_configuration(world):
    gate(world, threshold=5.0, batch_size=8)
    bench(world["v2"], world["cpu"], p95=3.0, batch_sizes=(8,))
    bench(world["v2"], world["cpu"], p95=9.0, batch_sizes=(8,))  # slower, newer
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and result["measured"] == 9.0
    # A newer benchmark that did not measure batch 8 leaves the batch-8 figure as it was.
    bench(world["v2"], world["cpu"], p95=1.0, batch_sizes=(1,))
    assert gates.gate_results(world["v2"])[0]["measured"] == 9.0
    # Another target's figures never count.
    gpu = HardwareTarget.objects.create(
        slug="gpu", name="GPU", device="cuda", execution_provider="CUDAExecutionProvider"
    )
    bench(world["v2"], gpu, p95=0.5, batch_sizes=(8,))
    assert gates.gate_results(world["v2"])[0]["measured"] == 9.0


def test_it_prefers_the_default_thread_count_else_the_fastest(world):
    gate(world, threshold=5.0)
    job = bench(world["v2"], world["cpu"], p95=6.0, threads=1)
    BenchmarkResult.objects.create(
        job=job,
        version=world["v2"],
        target=world["cpu"],
        batch_size=1,
        threads=4,
        iterations=30,
        warmup=5,
        p50_ms=3,
        p90_ms=3,
        p95_ms=3.5,
        p99_ms=4,
        mean_ms=3,
        std_ms=0.1,
        throughput=300,
        stable=True,
        samples=b"",
        environment={},
    )
    [result] = gates.gate_results(world["v2"])
    assert result["measured"] == 3.5 and "with 4 threads" in result["reason"]


def test_it_checks_the_accuracy_drop_against_the_most_accurate_version(world):
    gate(world, kind="max_accuracy_drop", threshold=0.005, target=None)
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and result["measured"] == "no benchmark" and "run a benchmark" in result["reason"]

    bench(world["v2"], world["cpu"])  # measured, but without a labelled evaluation set
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and result["measured"] == "no accuracy delta"

    bench(world["v1"], world["cpu"], accuracy=0.950)
    bench(world["v2"], world["cpu"], accuracy=0.946)
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is True and result["measured"] == pytest.approx(-0.004) and result["measured_on"] == "cpu"
    assert result["reference"] == "1" and result["evaluation_set"] == "eval"
    assert "-0.40 pt against the reference 1, within noise" in result["reason"]
    assert "evaluation set eval (1000 samples)" in result["reason"] and "0.50 pt" in result["reason"]

    bench(world["v2"], world["cpu"], accuracy=0.9439)
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and "-0.61 pt against the reference 1" in result["reason"]
    assert "fails accuracy drop ≤ 0.50 pt" in result["reason"]


def test_an_original_is_judged_like_any_version_whatever_its_lineage(world, engineer_api):
    """An untrained upload (its own root) has no parent to lose accuracy against: it is still
    judged against the most accurate version on the same evaluation set."""
    gate(world, kind="max_accuracy_drop", threshold=0.005, target=None)
    untrained = ModelVersion.objects.create(
        model=world["model"],
        version="3",
        format="onnx",
        artifact="artifacts/3.onnx",
        sha256="0" * 64,
        size_bytes=10,
        status="ready",
    )
    bench(world["v1"], world["cpu"], accuracy=0.992)
    bench(untrained, world["cpu"], accuracy=0.108)
    [result] = gates.gate_results(untrained)
    assert result["passed"] is False and result["reference"] == "1"
    assert "-88.40 pt against the reference 1" in result["reason"]
    assert engineer_api.put(PRODUCTION, {"version": "3"}, format="json").status_code == 409
    [result] = gates.gate_results(world["v1"])
    assert result["passed"] is True and "the reference" in result["reason"]


def test_accuracy_on_another_evaluation_set_does_not_compete(world):
    gate(world, kind="max_accuracy_drop", threshold=0.005, target=None)
    bench(world["v1"], world["cpu"], accuracy=0.95, evaluation_set="eval")
    bench(world["v2"], world["cpu"], accuracy=0.99, evaluation_set="easy", samples=50)
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and result["measured"] == "no accuracy delta"
    assert (
        "measured on evaluation set easy (50 samples), not on the reference's evaluation set eval" in result["reason"]
    )


def test_an_accuracy_gate_on_a_target_reads_only_that_target(world):
    gpu = HardwareTarget.objects.create(
        slug="gpu", name="GPU", device="cuda", execution_provider="CUDAExecutionProvider"
    )
    gate(world, kind="max_accuracy_drop", threshold=0.01, target="gpu")
    bench(world["v1"], world["cpu"], accuracy=0.95)
    bench(world["v2"], world["cpu"], accuracy=0.95)
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and "on gpu" in result["reason"]
    bench(world["v1"], gpu, accuracy=0.95)
    bench(world["v2"], gpu, accuracy=0.941)
    assert gates.gate_results(world["v2"])[0]["passed"] is True


def test_a_cosine_gate_reads_fidelity_against_the_parent(world):
    gate(world, kind="min_cosine", threshold=0.99, target=None)
    assert PromotionGate.objects.get(kind="min_cosine").description == "cosine ≥ 0.99"
    bench(
        world["v2"],
        world["cpu"],
        fidelity={"samples": 64, "reference": "digits:1", "cosine_mean": 0.995, "cosine_min": 0.97},
    )
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is True and result["measured"] == 0.995 and result["reference"] == "1"
    bench(world["v2"], world["cpu"], fidelity={"samples": 64, "reference": "digits:1", "cosine_mean": 0.98})
    [result] = gates.gate_results(world["v2"])
    assert result["passed"] is False and "cosine 0.98 against 1" in result["reason"]


def test_gate_evaluation_takes_three_queries(world, django_assert_num_queries):
    for batch_size in (1, 8, 32):
        gate(world, threshold=5.0, batch_size=batch_size)
    gate(world, kind="max_accuracy_drop", threshold=0.005, target=None)
    for _ in range(3):
        bench(world["v2"], world["cpu"], p95=4.0, batch_sizes=(1, 8, 32), accuracy_delta=-0.001)
    version = ModelVersion.objects.select_related("model").get(pk=world["v2"].pk)
    with django_assert_num_queries(3):
        results = gates.gate_results(version)
    assert len(results) == 4 and all(r["passed"] for r in results)


def test_moving_an_alias_to_where_it_points_changes_nothing(world, engineer_api):
    engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
    gate(world, threshold=5.0)  # 1 has no benchmark: it would fail now
    again = engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
    assert again.status_code == 200 and again.json()["gates"] == []
    assert AliasEvent.objects.count() == 1


def test_registering_straight_into_a_gated_production_is_refused(world, engineer_api, tmp_path):
    from tests.conftest import tiny_onnx_bytes

    gate(world, threshold=5.0)
    path = tmp_path / "three.onnx"
    path.write_bytes(tiny_onnx_bytes(seed=3))
    response = register(engineer_api, path, version="3", alias="production")
    assert response.status_code == 409 and "run one first" in response.json()["detail"]
    assert not ModelVersion.objects.filter(version="3").exists() and production() is None


# --- overrides -------------------------------------------------------------------------------


def test_admins_override_failing_gates_with_a_justification(world, admin_api, engineer_api):
    gate(world, threshold=5.0)
    bench(world["v1"], world["cpu"], p95=3.0)
    engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
    bench(world["v2"], world["cpu"], p95=6.5)

    response = admin_api.put(
        PRODUCTION,
        {"version": "2", "override": True, "justification": "  Hotfix for the outage; latency fix follows.  "},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["overridden"] is True and response.json()["gates"][0]["passed"] is False
    assert production() == "2"
    event = AliasEvent.objects.first()
    assert (event.action, event.from_version, event.to_version, event.user.username) == (
        "move",
        world["v1"],
        world["v2"],
        "ada",
    )
    assert event.overridden and event.justification == "Hotfix for the outage; latency fix follows."
    assert event.gate_results[0]["measured"] == 6.5
    from common.models import AuditEvent

    audited = AuditEvent.objects.get(action="gate_override")
    assert (audited.actor_name, audited.target, audited.details["from"], audited.details["to"]) == (
        "ada",
        "digits@production",
        "1",
        "2",
    )
    assert audited.details["justification"] == "Hotfix for the outage; latency fix follows."


def test_an_override_needs_a_justification(world, admin_api):
    gate(world, threshold=5.0)
    for justification in ("", "   "):
        response = admin_api.put(
            PRODUCTION, {"version": "2", "override": True, "justification": justification}, format="json"
        )
        assert response.status_code == 400
        assert "justification" in response.json()["errors"]
        assert response.json()["gates"][0]["reason"].endswith("run one first")
    assert production() is None and not AliasEvent.objects.exists()


def test_engineers_cannot_override(world, engineer_api):
    gate(world, threshold=5.0)
    response = engineer_api.put(
        PRODUCTION, {"version": "2", "override": True, "justification": "please"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "Only admins may override promotion gates."
    assert production() is None and not AliasEvent.objects.exists()


def test_an_override_is_not_recorded_when_no_gate_fails(world, admin_api):
    gate(world, threshold=5.0)
    bench(world["v2"], world["cpu"], p95=1.0)
    response = admin_api.put(PRODUCTION, {"version": "2", "override": True, "justification": "habit"}, format="json")
    assert response.status_code == 200 and response.json()["overridden"] is False
    assert not AliasEvent.objects.get().overridden


# --- who may do what -------------------------------------------------------------------------


def test_viewers_cannot_move_aliases_or_change_gates(world, viewer_api, viewer, engineer_api):
    existing = gate(world, threshold=5.0)
    bench(world["v1"], world["cpu"], p95=1.0)
    engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
    before = (AliasEvent.objects.count(), PromotionGate.objects.count(), production())

    assert viewer_api.put(PRODUCTION, {"version": "2"}, format="json").status_code == 403
    assert viewer_api.put(CANDIDATE, {"version": "2"}, format="json").status_code == 403
    assert viewer_api.delete(PRODUCTION).status_code == 403
    assert (
        viewer_api.post(GATES, {"kind": "max_p95_ms", "threshold": 1, "target": "cpu"}, format="json").status_code
        == 403
    )
    assert viewer_api.delete(f"{GATES}{existing.id}/").status_code == 403
    client = browser(viewer)
    assert client.post("/models/digits/aliases/", {"name": "production", "version": "2"}).status_code == 403
    assert client.post("/models/digits/aliases/production/remove/").status_code == 403
    assert (
        client.post(
            "/models/digits/gates/", {"kind": "max_p95_ms", "threshold": 1, "target": "cpu", "batch_size": 1}
        ).status_code
        == 403
    )
    assert client.post(f"/models/digits/gates/{existing.id}/delete/").status_code == 403

    assert (AliasEvent.objects.count(), PromotionGate.objects.count(), production()) == before
    assert viewer_api.get(GATES).status_code == 200 and viewer_api.get(EVENTS).status_code == 200
    html = client.get("/models/digits/").content.decode()
    assert 'id="gate-form"' not in html and 'id="alias-form"' not in html and "Remove</button>" not in html


def test_the_new_routes_need_a_token_and_a_role(world, anon_api, nobody):
    from tests.conftest import api_client

    for url in (GATES, EVENTS):
        assert anon_api.get(url).status_code == 401
        assert api_client(nobody).get(url).status_code == 403
    assert anon_api.post(GATES, {"kind": "max_p95_ms"}, format="json").status_code == 401
    assert not PromotionGate.objects.exists()


# --- managing gates --------------------------------------------------------------------------


def test_engineers_add_list_and_remove_gates(world, engineer_api, viewer_api):
    created = engineer_api.post(
        GATES, {"kind": "max_p95_ms", "threshold": 12.5, "target": "cpu", "batch_size": 8}, format="json"
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["kind"], body["threshold"], body["target"], body["batch_size"], body["created_by"]) == (
        "max_p95_ms",
        12.5,
        "cpu",
        8,
        "ed",
    )
    assert body["description"] == "p95 ≤ 12.5 ms on cpu at batch 8"
    accuracy = engineer_api.post(GATES, {"kind": "max_accuracy_drop", "threshold": 0.005}, format="json")
    assert accuracy.status_code == 201 and accuracy.json()["target"] is None
    assert accuracy.json()["description"] == "accuracy drop ≤ 0.50 pt"

    listed = viewer_api.get(GATES).json()
    assert [g["kind"] for g in listed] == ["max_accuracy_drop", "max_p95_ms"]
    assert engineer_api.delete(body["url"]).status_code == 204
    assert engineer_api.delete(body["url"]).status_code == 404
    assert list(PromotionGate.objects.values_list("kind", flat=True)) == ["max_accuracy_drop"]


@pytest.mark.parametrize(
    "data,status,field",
    [
        ({"kind": "max_p95_ms", "threshold": 0, "target": "cpu"}, 400, "threshold"),
        ({"kind": "max_p95_ms", "threshold": -3, "target": "cpu"}, 400, "threshold"),
        ({"kind": "max_p95_ms", "threshold": 5}, 400, "target"),
        ({"kind": "max_accuracy_drop", "threshold": 1.5}, 400, "threshold"),
        ({"kind": "max_speedup", "threshold": 5}, 400, "kind"),
        ({"threshold": 5}, 400, "kind"),
        ({"kind": "max_p95_ms", "threshold": "fast", "target": "cpu"}, 400, "threshold"),
        ({"kind": "max_p95_ms", "threshold": 5, "target": "cpu", "batch_size": 0}, 400, "batch_size"),
        ({"kind": "max_p95_ms", "threshold": 5, "target": "tpu"}, 404, "target"),
    ],
)
def test_it_refuses_bad_gates(world, engineer_api, data, status, field):
    response = engineer_api.post(GATES, data, format="json")
    assert response.status_code == status, response.json()
    assert field in response.json()["errors"]
    assert not PromotionGate.objects.exists()


def test_it_refuses_a_duplicate_gate_and_unknown_models(world, engineer_api):
    gate(world, threshold=5.0)
    again = engineer_api.post(GATES, {"kind": "max_p95_ms", "threshold": 9, "target": "cpu"}, format="json")
    assert again.status_code == 409 and "delete it first" in again.json()["detail"]
    assert (
        engineer_api.post(
            "/api/v1/models/nope/gates/", {"kind": "max_p95_ms", "threshold": 9, "target": "cpu"}, format="json"
        ).status_code
        == 404
    )
    assert PromotionGate.objects.count() == 1


def test_the_gate_service_names_the_bad_field(world):
    from common.errors import BerthError

    with pytest.raises(BerthError) as caught:
        services.gate_create(model=world["model"], kind="fastest", threshold=1)
    assert caught.value.field == "kind" and caught.value.status == 400
    with pytest.raises(BerthError) as caught:
        services.gate_create(model=world["model"], kind="max_accuracy_drop", threshold=float("nan"))
    assert caught.value.field == "threshold"


def test_engineers_manage_gates_on_the_model_page(world, engineer):
    client = browser(engineer)
    added = client.post(
        "/models/digits/gates/",
        {"kind": "max_p95_ms", "threshold": "5", "target": "cpu", "batch_size": "8"},
        follow=True,
    )
    assert "Gate added: p95 ≤ 5 ms on cpu at batch 8." in added.content.decode()
    created = PromotionGate.objects.get()
    bad = client.post("/models/digits/gates/", {"kind": "max_p95_ms", "threshold": "5", "batch_size": "1"}, follow=True)
    assert "needs the target" in bad.content.decode() and PromotionGate.objects.count() == 1
    removed = client.post(f"/models/digits/gates/{created.id}/delete/", follow=True)
    assert "Gate removed" in removed.content.decode() and not PromotionGate.objects.exists()
    twice = client.post(f"/models/digits/gates/{created.id}/delete/", follow=True)
    assert twice.status_code == 200 and "has no promotion gate" in twice.content.decode()


# --- the alias log ---------------------------------------------------------------------------


def test_every_alias_change_is_logged(world, engineer_api, viewer_api):
    gate(world, threshold=5.0)  # production is gated; candidate is not
    assert engineer_api.put(CANDIDATE, {"version": "1"}, format="json").status_code == 200
    assert engineer_api.put(CANDIDATE, {"version": "2"}, format="json").status_code == 200  # fails the gate: no matter
    assert engineer_api.delete(CANDIDATE).status_code == 204
    assert engineer_api.delete(CANDIDATE).status_code == 404

    body = viewer_api.get(EVENTS).json()
    assert body["count"] == 3
    assert [(e["action"], e["alias"], e["from_version"], e["to_version"], e["user"]) for e in body["results"]] == [
        ("remove", "candidate", "2", None, "ed"),
        ("move", "candidate", "1", "2", "ed"),
        ("set", "candidate", None, "1", "ed"),
    ]
    assert all(e["gate_results"] == [] and e["overridden"] is False for e in body["results"])
    assert viewer_api.get(EVENTS + "?alias=production").json()["count"] == 0
    assert viewer_api.get("/api/v1/models/nope/alias-events/").status_code == 404


def test_the_log_keeps_version_names_when_a_version_is_deleted(world, engineer_api):
    engineer_api.put(CANDIDATE, {"version": "2"}, format="json")
    world["v2"].delete()
    event = AliasEvent.objects.get()
    assert event.to_version is None and event.to_label == "2"


def test_the_model_page_shows_gates_and_the_alias_history_escaped(world, admin_api, engineer_api, viewer):
    gate(world, threshold=5.0)
    bench(world["v1"], world["cpu"], p95=2.0)
    engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
    engineer_api.put(CANDIDATE, {"version": "2"}, format="json")
    admin_api.put(
        PRODUCTION, {"version": "2", "override": True, "justification": "<script>alert(1)</script>"}, format="json"
    )
    engineer_api.delete(CANDIDATE)

    html = browser(viewer).get("/models/digits/").content.decode()

    assert "Promotion gates" in html and "p95 ≤ 5 ms on cpu at batch 1" in html
    assert "no benchmark of 2 on cpu at batch 1; run one first" in html  # how production (2) meets it now
    history = html.split("<h2>Alias history</h2>")[1]
    assert history.count("<tr><td>") == 4
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in history
    assert "overridden" in history and "ada" in history and "ed" in history
    assert "failed: p95 ≤ 5 ms on cpu at batch 1" in history and "passed: p95 ≤ 5 ms on cpu at batch 1" in history
    assert "remove: " in history and "move: " in history and "set: " in history


def test_the_model_page_queries_do_not_grow_with_the_log(world, engineer_api, viewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    gate(world, threshold=5.0)
    gate(world, kind="max_accuracy_drop", threshold=0.005, target=None)
    bench(world["v1"], world["cpu"], p95=1.0, accuracy_delta=0.0)
    bench(world["v2"], world["cpu"], p95=1.0, accuracy_delta=0.0)
    client = browser(viewer)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/models/digits/").status_code == 200
        return len(captured)

    engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
    few = queries()
    for _ in range(10):
        engineer_api.put(PRODUCTION, {"version": "2"}, format="json")
        engineer_api.put(CANDIDATE, {"version": "1"}, format="json")
        engineer_api.put(PRODUCTION, {"version": "1"}, format="json")
        engineer_api.delete(CANDIDATE)
    assert AliasEvent.objects.count() == 41
    assert queries() == few


def test_the_alias_form_shows_gate_failures_and_offers_admins_an_override(world, engineer, admin_user):
    gate(world, threshold=5.0)
    bench(world["v2"], world["cpu"], p95=8.0)
    client = browser(engineer)
    assert 'name="override"' not in client.get("/models/digits/").content.decode()

    blocked = client.post("/models/digits/aliases/", {"name": "production", "version": "2"}, follow=True)
    assert "p95 8.00 ms on cpu at batch 1 exceeds 5 ms" in blocked.content.decode()
    refused = client.post(
        "/models/digits/aliases/",
        {"name": "production", "version": "2", "override": "on", "justification": "trust me"},
        follow=True,
    )
    assert "Only admins may override" in refused.content.decode()
    assert production() is None and not AliasEvent.objects.exists()

    admin = browser(admin_user)
    page = admin.get("/models/digits/").content.decode()
    assert 'name="override"' in page and 'name="justification"' in page
    missing = admin.post(
        "/models/digits/aliases/", {"name": "production", "version": "2", "override": "on"}, follow=True
    )
    assert "needs a justification" in missing.content.decode() and production() is None
    done = admin.post(
        "/models/digits/aliases/",
        {"name": "production", "version": "2", "override": "on", "justification": "Accepted by the on-call lead"},
        follow=True,
    )
    assert "failing gates overridden" in done.content.decode() and production() == "2"
    assert AliasEvent.objects.get().justification == "Accepted by the on-call lead"


def test_engineers_remove_aliases_on_the_model_page(world, engineer, engineer_api):
    engineer_api.put(CANDIDATE, {"version": "1"}, format="json")
    response = browser(engineer).post("/models/digits/aliases/candidate/remove/", follow=True)
    assert "Alias candidate removed." in response.content.decode()
    assert not Alias.objects.exists()
    assert AliasEvent.objects.first().action == "remove"


@pytest.mark.django_db(transaction=True)
def test_concurrent_moves_form_one_unbroken_chain_in_the_log(world):
    """Each move locks the alias row, so its "from" is what the previous move left."""
    import itertools
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; SQLite runs one writer at a time")
    services.alias_set(model=world["model"], name="candidate", version=world["v1"], user=world["engineer"])
    barrier = threading.Barrier(8)
    errors = []

    def move(version):
        try:
            barrier.wait(timeout=30)
            services.alias_set(model=world["model"], name="candidate", version=version, user=world["engineer"])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=move, args=(world["v2"] if i % 2 else world["v1"],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, [repr(e.__cause__) for e in errors]
    events = list(AliasEvent.objects.order_by("id"))
    assert events[0].action == "set" and all(e.action == "move" for e in events[1:])
    for previous, event in itertools.pairwise(events):
        assert event.from_version_id == previous.to_version_id != event.to_version_id
    assert Alias.objects.get().version_id == events[-1].to_version_id


# --- the overview ----------------------------------------------------------------------------


def test_failing_gates_finds_a_production_version_after_a_slower_benchmark(
    world, engineer_api, onnx_file, django_assert_num_queries
):
    gate(world, threshold=5.0)
    bench(world["v1"], world["cpu"], p95=3.0)
    assert engineer_api.put(PRODUCTION, {"version": "1"}, format="json").status_code == 200
    register(engineer_api, onnx_file, model="other", version="1")  # no gates: never listed
    assert gates.failing_gates() == []

    bench(world["v1"], world["cpu"], p95=6.0)  # the host got slower, or the runtime did
    with django_assert_num_queries(3):
        failing = gates.failing_gates()

    [(model, version, results)] = failing
    assert model == world["model"] and version == world["v1"]
    [result] = results
    assert result["passed"] is False and result["measured"] == 6.0
    assert failing[0].results[0]["description"] == "p95 ≤ 5 ms on cpu at batch 1"


def test_failing_gates_ignores_models_without_production(world):
    gate(world, threshold=5.0)
    assert gates.failing_gates() == []


# --- with a real benchmark -------------------------------------------------------------------


def test_it_gates_production_on_real_benchmark_results(digits_version, engineer_api, admin_api):
    from jobs import services as job_services

    cpu = HardwareTarget.objects.get(slug="cpu")
    compress = job_services.job_create(
        kind="compress", version=digits_version, target=cpu, params={"method": "dynamic_int8"}
    )
    job_services.job_run(job_id=compress.id, worker_host="test")
    child = Job.objects.get(pk=compress.pk).output_version
    quick = {"batch_sizes": [1], "min_runs": 10, "min_seconds": 0.05, "max_seconds": 5, "measure_memory": False}
    job = job_services.job_create(kind="benchmark", version=child, target=cpu, params=quick)
    job_services.job_run(job_id=job.id, worker_host="test")
    assert Job.objects.get(pk=job.pk).status == "succeeded", Job.objects.get(pk=job.pk).error
    measured = BenchmarkResult.objects.get(job=job)
    assert measured.accuracy_delta is not None  # int8 against its fp32 parent on the labelled evaluation set
    model = digits_version.model
    services.gate_create(model=model, kind="max_accuracy_drop", threshold=0.05)
    services.gate_create(model=model, kind="max_p95_ms", threshold=10_000, target=cpu)
    url = PRODUCTION

    moved = engineer_api.put(url, {"version": child.version}, format="json")

    assert moved.status_code == 200, moved.json()
    results = {r["kind"]: r for r in moved.json()["gates"]}
    assert results["max_p95_ms"]["measured"] == measured.p95_ms and results["max_p95_ms"]["job"] == job.id
    # Against the more accurate of the child and its parent (whose accuracy the child's benchmark measured).
    assert results["max_accuracy_drop"]["measured"] == pytest.approx(min(measured.accuracy_delta, 0.0))
    # digits:1 was never benchmarked itself.
    back = engineer_api.put(url, {"version": "1"}, format="json")
    assert back.status_code == 409
    reasons = [g["reason"] for g in back.json()["gates"]]
    assert any("no benchmark of 1 on cpu at batch 1; run one first" in r for r in reasons)
    # A gate tighter than the real p95 blocks, naming what was measured.
    PromotionGate.objects.filter(kind="max_p95_ms").update(threshold=measured.p95_ms / 1000)
    engineer_api.delete(url)
    blocked = engineer_api.put(url, {"version": child.version}, format="json")
    assert blocked.status_code == 409
    [failed] = blocked.json()["gates"]
    assert failed["measured"] == measured.p95_ms and "exceeds" in failed["reason"]
    assert [e.action for e in AliasEvent.objects.all()] == ["remove", "set"]
