"""The Compress form shows only the chosen method's fields (berth.compression's declarations,
static/js/forms.js)."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_compress_form_shows_the_chosen_methods_fields(logged_in_page, engineer, world):
    page = logged_in_page(engineer)
    page.goto(world.version("1").get_absolute_url())
    method = page.locator("#id_compress-method")
    expect(page.locator("#id_compress-calibration_method")).to_be_visible()  # static_int8 first
    expect(page.locator("#id_compress-student")).to_be_hidden()
    method.select_option("distill")
    for field in ("student", "student_width", "temperature", "alpha", "epochs", "learning_rate"):
        expect(page.locator(f"#id_compress-{field}")).to_be_visible()
    expect(page.locator("#id_compress-calibration_method")).to_be_hidden()
    expect(page.locator("#id_compress-sparsity")).to_be_hidden()
    method.select_option("prune_structured")
    expect(page.locator("#id_compress-channel_sparsity")).to_be_visible()
    expect(page.locator("#id_compress-learning_rate")).to_be_visible()  # shared with distill
    expect(page.locator("#id_compress-student")).to_be_hidden()
    expect(page.locator("#id_compress-output_version")).to_be_visible()  # every method's
