"""A NUL character in an address is refused (400) before any view runs: PostgreSQL cannot compare
text with one, so every lookup by name would otherwise answer 500."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/models/digits%00/",
        "/api/v1/models/?q=a%00",
        "/api/v1/jobs/?version=digits:1%00",
        "/api/v1/endpoints/prod%00/metrics/",
        "/api/v1/alerts/?endpoint=%00",
    ],
)
def test_an_api_address_with_a_nul_is_refused(viewer_api, url):
    response = viewer_api.get(url)
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


def test_a_page_address_with_a_nul_is_refused(client, viewer):
    client.force_login(viewer)
    assert client.get("/models/digits%00/").status_code == 400
