"""Drift as a reader needs it, in real Chromium: the alerts page and the endpoint page name the
worst feature, its test, its figure in the test's own terms and its threshold (KS and chi-square
p-values, a PSI alert stored before the current tests), never "N × threshold"."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from monitoring import alerts
from monitoring.models import Alert, AlertRule
from registry.models import ModelVersion
from tests.monitoring.conftest import profiled  # noqa: F401  (the fixture, on test_alerts.endpoint)
from tests.monitoring.test_alerts import endpoint, traffic  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

P_VALUE = r"p-value \d(\.\d)?e-\d+"  # below 0.001: compact scientific notation
KS = rf"x\.mean: KS {P_VALUE} \(threshold 0\.05\), Wasserstein [\d.]+ sd \(threshold 0\.1 sd\)"
CHI_SQUARE = rf"prediction: chi-square {P_VALUE} \(threshold 0\.05\), total variation 0\.7 \(threshold 0\.1\)"


@pytest.fixture
def drifting(profiled):  # noqa: F811
    """digits-prod v1 whose predictions moved (chi-square) in two windows, and x.mean too in the
    newest (KS), with its drift rule firing; and an alert of another rule stored when numeric
    features were judged by PSI."""
    now = timezone.now().replace(second=30, microsecond=0)
    steady, classes_moved = [100, 100, 100, 100], [400, 0, 0]
    traffic(profiled, now, minutes_ago=6, requests=400, features={"x.mean": steady, "prediction": classes_moved})
    alerts.rule_create(endpoint=profiled, metric="drift", window_minutes=5, min_requests=20)
    alerts.evaluate_rules(now=now - timedelta(minutes=5))
    traffic(profiled, now, minutes_ago=1, requests=400, features={"x.mean": steady, "prediction": classes_moved})
    alerts.evaluate_rules(now=now)
    old_rule = alerts.rule_create(endpoint=profiled, metric="drift", window_minutes=15)
    Alert.objects.create(
        rule=old_rule,
        endpoint=profiled,
        version=ModelVersion.objects.get(version="1"),
        value=1.55,
        last_value=1.55,
        threshold=1.0,
        message="digits-prod v1: drift on 1 of 2 features (x.mean PSI 0.31)",
        details={"features": [{"feature": "x.mean", "test": "psi", "score": 0.31, "threshold": 0.2}]},
        started=now,
        last_evaluated=now,
    )
    assert Alert.objects.filter(state="firing").count() == 2
    return profiled


def test_the_alerts_page_states_each_drift_in_its_tests_terms(logged_in_page, viewer, drifting):
    page = logged_in_page(viewer)
    page.goto("/alerts/")
    now = page.locator("#firing-alerts td.alert-now")
    expect(now).to_have_count(2)
    texts = now.all_inner_texts()
    assert any(re.fullmatch(CHI_SQUARE, t) for t in texts), texts
    assert "x.mean: PSI 0.31 (threshold 0.2)" in texts, texts
    expect(page.locator("#firing-alerts")).not_to_contain_text("× threshold")


def test_the_endpoint_page_states_the_drift_figures(logged_in_page, viewer, drifting):
    page = logged_in_page(viewer)
    page.set_viewport_size({"width": 1024, "height": 900})
    page.goto("/endpoints/digits-prod/?range=15m")
    expect(page.locator(".endpoint-alerts .alert-now").first).to_be_visible()
    alert_figures = page.locator(".endpoint-alerts .alert-now").all_inner_texts()
    assert any(re.fullmatch(rf"Now: {CHI_SQUARE}", t) for t in alert_figures), alert_figures
    expect(page.locator("#live .kpis .worst-drift")).to_have_text(re.compile(CHI_SQUARE + "$"))
    prediction = page.locator('.drift-verdicts tr[data-feature="prediction"] td.drift-figures')
    expect(prediction).to_have_text(re.compile(CHI_SQUARE.removeprefix("prediction: ") + "$"))
    x_mean = page.locator('.drift-verdicts tr[data-feature="x.mean"] td.drift-figures')
    expect(x_mean).to_have_text(re.compile(r"^KS p-value [\d.e-]+ \(threshold 0\.05\), Wasserstein [\d.]+ sd"))
    # The drift-now chart labels its threshold line with each test's rule; the y axis is not "× threshold".
    chart = page.locator('[data-chart="drift_now"]')
    expect(chart.locator(".annotation-text").first).to_contain_text("drifts above: ")
    expect(chart.locator(".annotation-text").first).to_contain_text("KS p-value < 0.05 and Wasserstein ≥ 0.1 sd")
    expect(chart.locator(".ytitle")).to_have_text("past the thresholds (1: drifts)")
    assert AlertRule.objects.filter(endpoint=drifting).count() == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 1024  # the longer words still fit
