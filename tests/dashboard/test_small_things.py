"""Admin labels, the API docs' groups and way back, and the alert-rule page's warning about
relative links."""

import pytest
from django.test import Client

from monitoring import services

pytestmark = pytest.mark.django_db


def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_says_aliases(admin_user):
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    html = browser(admin_user).get("/admin/").content.decode()
    assert "Aliases" in html and "Aliass" not in html


def test_the_api_docs_group_operations_by_app_and_lead_back(viewer, viewer_api):
    schema = viewer_api.get("/api/schema/?format=json").json()
    tags = {tag for operations in schema["paths"].values() for op in operations.values() for tag in op["tags"]}
    assert tags == {"registry", "jobs", "comparisons", "endpoints", "monitoring", "alerts", "tokens"}
    assert schema["paths"]["/api/v1/endpoints/{name}/alert-rules/"]["get"]["tags"] == ["alerts"]
    assert schema["paths"]["/api/v1/telemetry/"]["post"]["tags"] == ["monitoring"]
    html = browser(viewer).get("/api/docs/").content.decode()
    assert '<a href="/" id="back-to-dashboard"' in html


def test_creating_a_rule_warns_when_links_would_be_relative(engineer, world, settings):
    endpoint, _ = services.endpoint_create(name="digits-prod", model=world.model, target=world.cpu)
    settings.BERTH_PUBLIC_URL = ""
    html = browser(engineer).get(f"/endpoints/{endpoint.name}/alerts/").content.decode()
    assert 'id="relative-links"' in html and "BERTH_PUBLIC_URL is not set" in html
    settings.BERTH_PUBLIC_URL = "https://berth.example.com"
    assert 'id="relative-links"' not in browser(engineer).get(f"/endpoints/{endpoint.name}/alerts/").content.decode()
