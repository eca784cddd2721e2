"""Scrape mode: read the Prometheus /metrics of an external Triton or MLServer server and count
what it served since the previous read into the endpoint's minute windows.

Those servers expose cumulative counters, not windows. Each scrape keeps the counters it read
in ``Endpoint.scrape_state`` and counts their increase since the previous scrape into the window
of the scrape's minute (the first scrape only records them). The windows are marked
``source=scrape`` and ``coarse``: Triton gives only a latency sum (the mean comes from
``latency_sum_ms / requests``), MLServer a histogram with wide buckets, turned into a sketch whose
quantiles are the buckets' upper bounds.

What is read, for the endpoint's model only:

- Triton: ``nv_inference_request_success``, ``nv_inference_request_failure`` (summed over its
  ``reason`` label) and ``nv_inference_request_duration_us`` (a counter of summed microseconds),
  labelled ``model`` and ``version``.
- MLServer: ``model_infer_request_success`` / ``_failure`` and the summary
  ``model_infer_request_duration`` (seconds), labelled ``model`` and ``version`` (``model_name`` /
  ``model_version`` accepted too); the version is "None" when a request named none. Latency
  buckets come from the REST histogram ``rest_server_request_duration_seconds`` (the MLServer docs
  spell it ``rest_server_requests_duration_seconds``; both are read), restricted to the infer
  routes.

A missing, empty or "None" version label means the endpoint's active version (the one with the
largest share of its traffic).
"""

import http.client
import logging
import math
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from berth.core.stats import LogSketch
from registry.models import ModelVersion

from .models import Endpoint, MetricWindow
from .services import current_generation, window_add

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024**2
# Version key of latency buckets that belong to the whole server rather than to one version.
WHOLE_SERVER = "*"

# The parser strips "_total" from counter family names, so both servers' counters match these.
TRITON = {
    "nv_inference_request_success": "success",
    "nv_inference_request_failure": "failure",
    "nv_inference_request_duration_us": "duration_us",
}
MLSERVER_COUNTERS = {"model_infer_request_success": "success", "model_infer_request_failure": "failure"}
MLSERVER_DURATION = "model_infer_request_duration"
MLSERVER_REST_HISTOGRAMS = ("rest_server_request_duration_seconds", "rest_server_requests_duration_seconds")
INFER_ROUTE = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


class ScrapeError(Exception):
    """The server could not be read, or what it answered is not Triton or MLServer metrics."""


@dataclass
class Counters:
    """Cumulative counters of one model version as the server reports them, or their increase
    between two scrapes. Latencies in ms."""

    success: float = 0.0
    failure: float = 0.0
    latency_sum_ms: float = 0.0
    # Upper bound in ms (as text, "inf" for +Inf) -> cumulative count of requests at most that long.
    buckets: dict = field(default_factory=dict)


@dataclass
class Sample:
    """What one scrape read: the server's kind and {version label: Counters}; the label "" is the
    endpoint's active version, WHOLE_SERVER holds latency buckets no version can be told from."""

    server: str
    versions: dict


# --- reading the text (no database) ----------------------------------------------------------


def parse_metrics(text, model_name):
    """The counters of ``model_name`` in a Prometheus text exposition of Triton or MLServer, as a
    Sample. Raises ScrapeError when the text is not Prometheus text or holds neither server's
    inference metrics."""
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError mostly, but IndexError and others on some garbage
        raise ScrapeError(f"the response is not Prometheus text ({exc})") from exc
    names = {family.name for family in families}
    if names & TRITON.keys():
        server = "triton"
    elif names & (MLSERVER_COUNTERS.keys() | {MLSERVER_DURATION}):
        server = "mlserver"
    else:
        raise ScrapeError(
            "no Triton (nv_inference_request_success) or MLServer (model_infer_request_success) "
            "metrics in the response; is this the server's /metrics URL?"
        )

    versions = {}
    duration_ms, rest_sum_ms = {}, {}
    for family in families:
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if family.name in TRITON:
                if labels.get("model") != model_name:
                    continue
                counters = versions.setdefault(_version(labels.get("version")), Counters())
                kind = TRITON[family.name]
                if kind == "duration_us":
                    counters.latency_sum_ms += value / 1000
                else:
                    setattr(counters, kind, getattr(counters, kind) + value)
            elif family.name in MLSERVER_COUNTERS:
                if _mlserver_model(labels) != model_name:
                    continue
                counters = versions.setdefault(_mlserver_version(labels), Counters())
                kind = MLSERVER_COUNTERS[family.name]
                setattr(counters, kind, getattr(counters, kind) + value)
            elif family.name == MLSERVER_DURATION and sample.name.endswith("_sum"):
                if _mlserver_model(labels) == model_name:
                    version = _mlserver_version(labels)
                    duration_ms[version] = duration_ms.get(version, 0.0) + value * 1000
            elif family.name in MLSERVER_REST_HISTOGRAMS:
                version = _rest_route_version(labels.get("path", ""), model_name)
                if version is None:
                    continue
                if sample.name.endswith("_bucket"):
                    try:
                        key = _bound_key(float(labels["le"]) * 1000)
                    except (KeyError, ValueError) as exc:
                        raise ScrapeError(f"a {family.name} bucket has no valid le label") from exc
                    buckets = versions.setdefault(version, Counters()).buckets
                    # Summed over methods and status codes: still cumulative per bound.
                    buckets[key] = buckets.get(key, 0.0) + value
                elif sample.name.endswith("_sum"):
                    rest_sum_ms[version] = rest_sum_ms.get(version, 0.0) + value * 1000

    # MLServer's per-model summary is the latency sum; the REST histogram's sum stands in only
    # where a route names this model (and never for the whole server's routes).
    for version, counters in versions.items():
        if version in duration_ms:
            counters.latency_sum_ms = duration_ms[version]
        elif version in rest_sum_ms and version != WHOLE_SERVER:
            counters.latency_sum_ms = rest_sum_ms[version]
    return Sample(server=server, versions=versions)


def _version(label):
    """A version label as Berth's key: "" for "the active version"."""
    return "" if label in (None, "", "None") else label


def _mlserver_model(labels):
    return labels.get("model", labels.get("model_name"))


def _mlserver_version(labels):
    return _version(labels.get("version", labels.get("model_version")))


def _rest_route_version(path, model_name):
    """The version key a REST route's latencies belong to, or None when they are not this model's.

    MLServer's REST metrics are per route, not per model. With grouped paths (starlette_exporter's
    default, what MLServer prints) the route is the template ``/v2/models/{model_name}/infer``, so
    the buckets cover every model the server serves: they are kept for the whole server and
    counted for this model only when it is the one version with traffic (see _write_windows).
    With ungrouped paths the route names the model (and maybe the version) and is filtered."""
    match = INFER_ROUTE.match(path)
    if match is None:
        return None
    if match["model"] == model_name:
        return _version(match["version"])
    if match["model"].startswith("{"):
        return WHOLE_SERVER
    return None


def _bound_key(ms):
    return "inf" if math.isinf(ms) else str(round(ms, 6))


# --- counters to increases (no database) -----------------------------------------------------


def deltas(previous_state, sample):
    """``(per_version_deltas, new_state)``: the increase of every counter of ``sample`` since
    ``previous_state`` (Counters per version label, only versions that changed), and the state to
    keep for the next scrape (JSON-serialisable).

    The first scrape (no previous state, or one of another kind of server) only records the
    counters. A counter that went down means the server restarted: all of that version's counters
    then count from zero (Prometheus ``increase()`` semantics). A version seen for the first time
    after the first scrape started from zero since the previous one."""
    new_state = {"server": sample.server, "versions": {key: asdict(c) for key, c in sample.versions.items()}}
    previous = previous_state or {}
    if previous.get("server") != sample.server or not isinstance(previous.get("versions"), dict):
        return {}, new_state
    changes = {}
    for key, now in sample.versions.items():
        before = _counters(previous["versions"].get(key))
        if _went_down(before, now):
            before = Counters()
        change = Counters(
            success=now.success - before.success,
            failure=now.failure - before.failure,
            latency_sum_ms=now.latency_sum_ms - before.latency_sum_ms,
            buckets={bound: count - before.buckets.get(bound, 0.0) for bound, count in now.buckets.items()},
        )
        if change.success or change.failure or change.latency_sum_ms or any(change.buckets.values()):
            changes[key] = change
    return changes, new_state


def _counters(data):
    try:
        return Counters(**data) if data else Counters()
    except TypeError:  # a state from an older layout: start over for this version
        return Counters()


def _went_down(before, now):
    return (
        now.success < before.success
        or now.failure < before.failure
        or now.latency_sum_ms < before.latency_sum_ms
        or any(now.buckets.get(bound, 0.0) < count for bound, count in before.buckets.items())
    )


def sketch_from_buckets(buckets):
    """A latency sketch (wire format) from the per-bound increases of a cumulative histogram, or
    None: each bucket's requests are counted at its upper bound (so quantiles lean high, as coarse
    as the buckets), those of the +Inf bucket at the largest finite bound."""
    bounds = sorted((float(bound), count) for bound, count in buckets.items())
    finite = [bound for bound, _ in bounds if math.isfinite(bound)]
    if not finite:
        return None
    sketch, below = LogSketch(), 0.0
    for bound, cumulative in bounds:
        count = round(cumulative - below)
        below = max(below, cumulative)
        if count > 0:
            sketch.add(bound if math.isfinite(bound) else finite[-1], count)
    return sketch.to_dict() if sketch.count else None


# --- reading the server and writing the windows ----------------------------------------------


def fetch(url, *, timeout=5):
    """The text at ``url`` (at most MAX_BODY_BYTES); ScrapeError saying why otherwise."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ScrapeError("only http:// and https:// URLs are scraped")
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4", "User-Agent": "berth"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BODY_BYTES + 1)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as exc:
        raise ScrapeError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise ScrapeError(_describe(exc.reason, timeout)) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise ScrapeError(_describe(exc, timeout)) from exc
    if len(body) > MAX_BODY_BYTES:
        raise ScrapeError(f"the response is larger than {MAX_BODY_BYTES // 1024**2} MiB; is this a /metrics URL?")
    return body.decode(charset, errors="replace")


def _describe(reason, timeout):
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason) or type(reason).__name__


def scrape_endpoint(endpoint, *, now=None, timeout=5):
    """Read the endpoint's scrape URL once and count what its server served since the last read.

    Returns True when it was read and understood (versions Berth does not know are then noted in
    ``scrape_error``); False when it could not be, with ``scrape_error`` saying why, e.g.
    "http://triton:8002/metrics: connection refused", and no window written."""
    at = now or timezone.now()
    try:
        sample = parse_metrics(fetch(endpoint.scrape_url, timeout=timeout), endpoint.model.name)
    except ScrapeError as exc:
        endpoint.scrape_error = f"{endpoint.scrape_url}: {exc}"
        Endpoint.objects.filter(pk=endpoint.pk).update(scrape_error=endpoint.scrape_error)
        return False
    scrape_record(endpoint=endpoint, sample=sample, at=at)
    return True


def scrape_record(*, endpoint, sample, at):
    """Count a scrape's increases into the windows of minute ``at`` and keep its counters, in one
    transaction with the endpoint row locked. Returns the notes stored in ``scrape_error``."""
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        if _newer_than(locked.scrape_state, at):
            return []  # an overlapping scrape read the server later and has counted up to there already
        changes, state = deltas(locked.scrape_state, sample)
        state["at"] = at.isoformat()
        notes = _write_windows(locked, changes, at)
        Endpoint.objects.filter(pk=endpoint.pk).update(scrape_state=state, scraped=at, scrape_error="\n".join(notes))
    endpoint.scrape_state, endpoint.scraped, endpoint.scrape_error = state, at, "\n".join(notes)
    return notes


def _newer_than(state, at):
    try:
        return datetime.fromisoformat(state["at"]) >= at
    except (KeyError, TypeError, ValueError):
        return False


def _write_windows(endpoint, changes, at):
    notes = []
    server_wide = changes.pop(WHOLE_SERVER, None)
    busy = [key for key, change in changes.items() if change.success + change.failure > 0]
    # The whole server's latency buckets describe this model's version only when it is the one
    # with traffic (other models on the same server would still be in them: coarse indeed).
    # Otherwise they cannot be split: no quantiles this time, the mean still comes from the sums.
    if server_wide is not None and len(busy) == 1 and not changes[busy[0]].buckets:
        changes[busy[0]].buckets = server_wide.buckets
    known = {
        v.version: v
        for v in ModelVersion.objects.filter(model_id=endpoint.model_id, version__in=[key for key in changes if key])
    }
    active = current_generation(endpoint)
    for key, change in changes.items():
        errors = max(round(change.failure), 0)
        requests = max(round(change.success), 0) + errors
        if not requests:
            continue
        version = known.get(key) if key else (active[0].version if active else None)
        if version is None:
            notes.append(_not_counted(endpoint, key, requests))
            continue
        window_add(
            endpoint=endpoint,
            version=version,
            start=at,
            rolled=endpoint.rollups,
            requests=requests,
            errors=errors,
            error_kinds={"server_error": errors} if errors else None,
            latency=sketch_from_buckets(change.buckets),
            features=None,
            source=MetricWindow.Source.SCRAPE,
            coarse=True,
            latency_sum_ms=max(change.latency_sum_ms, 0.0),
        )
    return notes


def _not_counted(endpoint, key, requests):
    if key:
        return (
            f"{requests} requests for version {key!r} were not counted: {endpoint.model.name} has no such "
            "version in Berth. Register it to see its traffic."
        )
    return (
        f"{requests} requests without a version were not counted: nothing is deployed on {endpoint.name} "
        "to count them for."
    )


def scrape_due_endpoints():
    """Scrape every endpoint that has a scrape URL (the beat runs this every
    BERTH_SCRAPE_SECONDS); returns how many were read."""
    read = 0
    for endpoint in Endpoint.objects.exclude(scrape_url="").select_related("model"):
        try:
            read += scrape_endpoint(endpoint)
        except Exception:  # one endpoint's failure (a bug, a database error) must not starve the others
            logger.exception("Scraping %s failed", endpoint.name)
    return read


def scrape_status(endpoint):
    """What the endpoint page shows about scrape mode, from the endpoint row alone: its URL, the
    kind of server last read, when it was last read (None if never) and the last problem."""
    return {
        "url": endpoint.scrape_url,
        "server": (endpoint.scrape_state or {}).get("server", ""),
        "scraped": endpoint.scraped,
        "error": endpoint.scrape_error,
        "ok": bool(endpoint.scrape_url and endpoint.scraped and not endpoint.scrape_error),
    }
