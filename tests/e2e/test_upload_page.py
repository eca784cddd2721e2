"""The upload page in a real browser: chunked, resumable upload through /api/v1/uploads/,
registration, and the version page that htmx refreshes until the validate job is done."""

import contextlib
import hashlib
import math
import re
import threading

import pytest
from playwright.sync_api import expect

from registry import uploads
from registry.models import Model, ModelVersion, Upload

from .conftest import record_upload_ui, recorded

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHUNK_BYTES = 1024 * 1024
# The chunk PUTs (and the resume GET) go to /api/v1/uploads/<id>/; start and complete do not.
UPLOAD_URL = "**/api/v1/uploads/*/"
# The validate job runs on the test's Celery worker; htmx polls every 2 s.
VALIDATE_TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def small_chunks(settings):
    """1 MiB chunks, so the ~4 MiB model goes up in several."""
    settings.BERTH_MAX_CHUNK_BYTES = CHUNK_BYTES


@pytest.fixture
def validation_gate(celery_worker, monkeypatch):
    """Holds the worker's validate job until the test calls ``.set()``, so the version page is
    first seen "validating" and htmx must bring the result. Set before the worker stops."""
    from jobs.engine import validate

    gate = threading.Event()
    inspect_model = validate.inspect_model

    def held(*args, **kwargs):
        gate.wait(timeout=60)
        return inspect_model(*args, **kwargs)

    monkeypatch.setattr(validate, "inspect_model", held)
    yield gate
    gate.set()


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chunk_count(path):
    return math.ceil(path.stat().st_size / CHUNK_BYTES)


def chunk_ranges(path):
    """The Content-Range of each chunk of ``path``, in order."""
    size = path.stat().st_size
    return [f"bytes {first}-{min(first + CHUNK_BYTES, size) - 1}/{size}" for first in range(0, size, CHUNK_BYTES)]


def fill_upload_form(page, *, model, version, path):
    page.get_by_label("Model", exact=True).fill(model)
    expect(page.get_by_label("Create the model if it does not exist")).to_be_checked()
    page.get_by_label("Version", exact=True).fill(version)
    page.locator("#file-input").set_input_files(path)
    expect(page.locator("#file-name")).to_contain_text(path.name)


def open_upload_page(page):
    page.goto("/upload/")
    expect(page.locator("#upload-form")).to_have_attribute("data-chunk-bytes", str(CHUNK_BYTES))
    record_upload_ui(page)


def route_chunks(page, decide):
    """Route the chunk PUTs through ``decide(route, ranges)``, where ``ranges`` (also returned)
    lists the Content-Range of every PUT the page sent so far, this one last."""
    ranges = []

    def handle(route):
        if route.request.method != "PUT":
            route.continue_()
            return
        ranges.append(route.request.header_value("content-range"))
        decide(route, ranges)

    page.route(UPLOAD_URL, handle)
    return ranges


def expect_version_page(page, *, model, version):
    expect(page).to_have_url(re.compile(rf"/models/{model}/versions/{re.escape(version)}/$"))
    expect(page.locator("#version-status .badge")).to_have_text("ready", timeout=VALIDATE_TIMEOUT_MS)
    inputs = page.locator("table.signature tbody tr").filter(has=page.get_by_role("cell", name="input", exact=True))
    expect(inputs.locator("code")).to_have_text(["x"])


def test_it_uploads_in_chunks_and_shows_the_validated_version(logged_in_page, engineer, big_onnx_file, validation_gate):
    page = logged_in_page(engineer)
    ranges = route_chunks(page, lambda route, ranges: route.continue_())
    page.locator("header nav").get_by_role("link", name="Upload", exact=True).click()
    expect(page).to_have_url(re.compile(r"/upload/$"))
    open_upload_page(page)
    fill_upload_form(page, model="resnet", version="1.0", path=big_onnx_file)
    page.locator("#upload-button").click()

    expect(page).to_have_url(re.compile(r"/models/resnet/versions/1\.0/$"))
    progress = recorded(page)["progress"]
    assert progress[-1] == 100
    assert progress == sorted(progress), "the progress bar went backwards"
    assert len(ranges) == chunk_count(big_onnx_file) > 2
    version = ModelVersion.objects.get(model__name="resnet", version="1.0")
    assert version.sha256 == sha256_of(big_onnx_file)
    assert version.created_by == engineer

    expect(page.locator("#version-status .badge")).to_have_text("validating")
    expect(page.locator("#version-status")).to_contain_text("Read by the validate job")
    page.evaluate("window.berthSamePage = true")
    validation_gate.set()
    expect_version_page(page, model="resnet", version="1.0")
    # The rest of the page followed: the job forms appeared, the jobs table shows the finished job,
    # and the Compress form (swapped in) shows only the chosen method's fields.
    expect(page.locator("#version-actions")).to_contain_text("Run a job")
    expect(page.locator("#version-jobs tbody tr").first).to_contain_text("succeeded")
    expect(page.locator("#version-jobs tbody tr").first).to_contain_text("100 %")
    page.locator("#id_compress-method").select_option("prune")
    expect(page.locator("#id_compress-sparsity")).to_be_visible()
    page.locator("#id_compress-method").select_option("fp16")
    expect(page.locator("#id_compress-sparsity")).to_be_hidden()
    assert page.evaluate("window.berthSamePage") is True, "the page was reloaded instead of updated by htmx"


def test_it_resends_chunks_after_lost_connections(logged_in_page, engineer, big_onnx_file, celery_worker):
    page = logged_in_page(engineer)

    def lose_two_connections(route, ranges):
        if len(ranges) == 2:
            route.abort("connectionreset")  # lost before the server saw the chunk
        elif len(ranges) == 4:
            route.fetch()  # the server stores the chunk...
            route.abort("connectionreset")  # ...but its answer is lost
        else:
            route.continue_()

    ranges = route_chunks(page, lose_two_connections)
    open_upload_page(page)
    fill_upload_form(page, model="resnet", version="2", path=big_onnx_file)
    page.locator("#upload-button").click()

    expect_version_page(page, model="resnet", version="2")
    assert any("retrying" in line for line in recorded(page)["status"]), recorded(page)["status"]
    chunk = chunk_ranges(big_onnx_file)
    # The third chunk's second PUT gets 409 with the server's offset, and the page goes on from there.
    assert ranges == [chunk[0], chunk[1], chunk[1], chunk[2], chunk[2], *chunk[3:]]
    assert ModelVersion.objects.get(model__name="resnet", version="2").sha256 == sha256_of(big_onnx_file)


def test_it_waits_while_the_server_still_holds_a_lost_chunk(logged_in_page, engineer, big_onnx_file, celery_worker):
    """After a lost connection the server may still be reading the abandoned chunk (and hold the
    upload's lock) when the page sends it again; the page waits instead of giving up."""
    page = logged_in_page(engineer)
    server_busy = contextlib.ExitStack()

    def hold_the_upload_during_the_second_chunk(route, ranges):
        if len(ranges) == 2:
            server_busy.enter_context(uploads.locked_part(Upload.objects.get().id))
        else:
            server_busy.close()
        route.continue_()

    ranges = route_chunks(page, hold_the_upload_during_the_second_chunk)
    open_upload_page(page)
    fill_upload_form(page, model="resnet", version="4", path=big_onnx_file)
    with server_busy:
        page.locator("#upload-button").click()
        expect_version_page(page, model="resnet", version="4")

    assert any("right now" in line and "retrying" in line for line in recorded(page)["status"]), recorded(page)[
        "status"
    ]
    chunk = chunk_ranges(big_onnx_file)
    assert ranges == [chunk[0], chunk[1], chunk[1], *chunk[2:]]
    assert ModelVersion.objects.get(model__name="resnet", version="4").sha256 == sha256_of(big_onnx_file)


def test_it_resumes_from_the_servers_offset_after_a_reload(logged_in_page, engineer, big_onnx_file, celery_worker):
    page = logged_in_page(engineer)
    network = {"flaky": True}

    def lose_the_connection_after_two_chunks(route, ranges):
        if network["flaky"] and len(ranges) > 2:
            route.abort("connectionreset")
        else:
            route.continue_()

    ranges = route_chunks(page, lose_the_connection_after_two_chunks)
    open_upload_page(page)
    fill_upload_form(page, model="resnet", version="3", path=big_onnx_file)
    page.locator("#upload-button").click()
    expect(page.locator("#upload-status")).to_contain_text("retrying")
    assert Upload.objects.get().offset == 2 * CHUNK_BYTES

    page.reload()
    network["flaky"] = False
    sent_before_reload = len(ranges)
    open_upload_page(page)
    fill_upload_form(page, model="resnet", version="3", path=big_onnx_file)
    page.locator("#upload-button").click()

    expect_version_page(page, model="resnet", version="3")
    after_reload = ranges[sent_before_reload:]
    assert after_reload[0].startswith(f"bytes {2 * CHUNK_BYTES}-"), after_reload
    assert len(after_reload) == chunk_count(big_onnx_file) - 2
    upload = Upload.objects.get()
    assert upload.status == Upload.Status.COMPLETED
    assert ModelVersion.objects.get(model__name="resnet", version="3").sha256 == sha256_of(big_onnx_file)


def test_it_shows_why_a_pickled_checkpoint_is_refused(logged_in_page, engineer, pickle_bomb):
    path, marker = pickle_bomb
    page = logged_in_page(engineer)
    open_upload_page(page)
    fill_upload_form(page, model="ckpt", version="1", path=path)
    with page.expect_response(re.compile(r"/api/v1/uploads/[^/]+/complete/$")) as completing:
        page.locator("#upload-button").click()

    assert completing.value.status == 422
    status = page.locator("#upload-status")
    expect(status).to_contain_text("pickled checkpoint")
    expect(status).to_have_class("error")
    expect(page).to_have_url(re.compile(r"/upload/$"))
    expect(page.locator("#upload-button")).to_be_enabled()
    assert not ModelVersion.objects.exists()
    assert not Model.objects.exists()
    assert not marker.exists()


def test_a_viewer_gets_no_upload_page(logged_in_page, viewer):
    page = logged_in_page(viewer)
    nav = page.locator("header nav")
    expect(nav.get_by_role("link", name="Models", exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Upload", exact=True)).to_have_count(0)

    response = page.goto("/upload/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("This needs the engineer role; yours is viewer.")
    expect(page.locator("#upload-form")).to_have_count(0)


def test_a_taken_version_name_is_reported_before_any_byte_is_sent(logged_in_page, engineer, world, big_onnx_file):
    world.version("1")  # digits:1, other bytes
    page = logged_in_page(engineer)
    puts = route_chunks(page, lambda route, ranges: route.continue_())
    starts = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/api/v1/uploads/") and starts.append(r.url))
    open_upload_page(page)
    fill_upload_form(page, model="digits", version="1", path=big_onnx_file)
    page.get_by_label("Version", exact=True).dispatch_event("change")
    expect(page.locator("#version-check")).to_contain_text("Version 1 of digits already exists")
    page.locator("#upload-button").click()
    expect(page.locator("#upload-status")).to_contain_text(f"yours {sha256_of(big_onnx_file)[:12]}")
    expect(page.locator("#upload-status")).to_have_class("error")
    assert puts == [] and starts == [] and not Upload.objects.exists()
    # A free name goes through the check.
    page.get_by_label("Version", exact=True).fill("2")
    page.get_by_label("Version", exact=True).dispatch_event("change")
    expect(page.locator("#version-check")).to_contain_text("digits:2 is free")
