"""The overview page: recent work, the best variant per target, failing gates."""

import pytest
from django.test import Client

from registry import services

pytestmark = pytest.mark.django_db


def test_the_overview_shows_best_variants_and_failing_gates(world, viewer, engineer):
    fp32 = world.version("1", size=4000)
    int8 = world.version("1-int8", parent=fp32, size=1000)
    world.result(fp32, world.cpu, p95=10.0, accuracy=0.980)
    world.result(int8, world.cpu, p95=4.0, accuracy=0.979)
    world.result(fp32, world.gpu, p95=2.0, accuracy=0.980)
    services.alias_set(model=world.model, name="production", version=fp32, user=engineer)
    services.gate_create(
        model=world.model, kind="max_p95_ms", threshold=5, target=world.cpu, batch_size=1, created_by=engineer
    )
    client = Client()
    client.force_login(viewer)
    html = client.get("/").content.decode()
    best = html.split("Best variant per target")[1]
    assert "1-int8" in best.split("<td>gpu</td>")[0]  # cpu: the int8 variant, 0.1 pt less accurate
    assert ">1</a>" in best.split("<td>gpu</td>")[1]  # gpu: only fp32 was measured there
    gates = html.split("Failing promotion gates")[1].split("Best variant")[0]
    assert "digits" in gates and "exceeds 5 ms" in gates


def test_an_empty_overview_says_so(viewer):
    client = Client()
    client.force_login(viewer)
    html = client.get("/").content.decode()
    assert "Nothing benchmarked yet." in html and "Failing promotion gates" not in html
