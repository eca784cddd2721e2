"""The demo endpoint's drift alert in a time-lapse: an hour of the traffic generator's steady
images at the demo's 10 requests/s raises no drift alert, and its brighter-images phase raises
one, which resolves once the phase is over.

Each minute window is what berth-serve would report: the loadgen's images in its order, the real
digits model run by onnxruntime, features counted by serving.features on the profile the real
profile job built from the demo's reference set; the demo's own alert rules are evaluated every
minute of the time-lapse."""

from datetime import timedelta

import numpy as np
import onnxruntime as ort
import pytest
from django.db import transaction
from django.utils import timezone

from berth.core.stats import LogSketch
from dashboard.demo import _demo_alert_rules
from jobs import services as job_services
from jobs.models import Job
from monitoring import alerts, services
from monitoring.models import Alert
from registry.models import HardwareTarget, ReferenceProfile
from serving.features import FeatureSet
from serving.loadgen import digits_images

pytestmark = pytest.mark.django_db

ROWS_PER_MINUTE = 600  # the demo's traffic: --rate 10


@pytest.fixture
def demo(digits_version, digits_reference, engineer):
    """digits:1 with the demo's reference set, profiled by a real profile job and deployed on an
    endpoint with the demo's alert rules."""
    endpoint, _ = services.endpoint_create(
        name="digits-demo", model=digits_version.model, target=HardwareTarget.objects.get(slug="cpu")
    )
    services.deploy(endpoint=endpoint, version=digits_version, weight=100, user=engineer)
    job = Job.objects.get(kind="profile", version=digits_version)
    job_services.job_run(job_id=job.id, worker_host="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    _demo_alert_rules(endpoint, engineer)
    return endpoint, digits_version


class Traffic:
    """Minute windows of the loadgen's requests, binned as berth-serve bins them."""

    def __init__(self, endpoint, version, model_path):
        self.endpoint, self.version = endpoint, version
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.features = FeatureSet([p.spec() for p in ReferenceProfile.objects.filter(version=version)])
        self.images, self.bright, _ = digits_images(seed=0)
        self.sent = 0
        latency = LogSketch()
        latency.add(4.0, ROWS_PER_MINUTE)
        self.latency = latency.to_dict()

    def minute(self, start, *, bright=False):
        rows = np.arange(self.sent, self.sent + ROWS_PER_MINUTE) % len(self.images)
        self.sent += ROWS_PER_MINUTE
        x = (self.bright if bright else self.images)[rows]
        (scores,) = self.session.run([self.output], {self.input: x})
        counts = self.features.split(self.features.counts({self.input: x}, {self.output: scores}))
        with transaction.atomic():
            services.window_add(
                endpoint=self.endpoint,
                version=self.version,
                start=start,
                requests=ROWS_PER_MINUTE,
                latency=self.latency,
                features={k: [int(c) for c in v] for k, v in counts.items()},
            )


def drift_alerts():
    return Alert.objects.filter(rule__metric="drift")


def test_an_hour_of_steady_demo_traffic_raises_no_drift_alert_and_brighter_images_do(demo, digits_files):
    endpoint, version = demo
    traffic = Traffic(endpoint, version, digits_files["onnx"])
    assert set(traffic.features.names) == {"x.mean", "x.std", "prediction"}
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    minute = 0

    def run(minutes, *, bright=False):
        nonlocal minute
        for _ in range(minutes):
            traffic.minute(start + timedelta(minutes=minute), bright=bright)
            minute += 1
            alerts.evaluate_rules(now=start + timedelta(minutes=minute, seconds=5))

    run(60)
    assert not drift_alerts().exists(), [a.message for a in drift_alerts()]
    recent = next(iter(alerts.series.recent(endpoint, minutes=2, now=start + timedelta(minutes=60)).values()))["drift"]
    assert all(not v["drifted"] for v in recent.values() if v), {k: v and v["explanation"] for k, v in recent.items()}

    run(2, bright=True)  # the brighter-images phase: 2 minutes
    run(3)
    (alert,) = drift_alerts()
    assert alert.state == "firing" and start + timedelta(minutes=61) <= alert.started <= start + timedelta(minutes=64)
    assert "x.mean higher than the reference" in alert.message or "x.std" in alert.message, alert.message
    features = {f["feature"] for f in alert.details["features"]}
    assert len(features) >= 2 and alert.details["windows_drifted"] >= 2

    run(6)
    alert.refresh_from_db()
    assert alert.state == "resolved" and drift_alerts().count() == 1
