"""Monitoring reads: endpoints, their spec for the serving runtime, deployment history."""

import hashlib
import json
from itertools import groupby

from django.conf import settings
from django.urls import reverse

from common.errors import BerthError, NotFound
from jobs import selectors as job_selectors
from jobs.models import Job
from registry.models import ReferenceProfile

from .endpoint_reads import EndpointReads
from .models import Deployment, Endpoint

# Serving profiles the endpoint page offers to apply (the serving versions' first).
SERVING_PROFILES_SHOWN = 5


def endpoint_get(name):
    endpoint = Endpoint.objects.select_related("model", "target", "created_by").filter(name=name).first()
    if endpoint is None:
        raise NotFound(f"There is no endpoint named {name!r}.")
    return endpoint


def deployed_version(endpoint, version):
    """A version of the endpoint's model that has been deployed on it (now or before)."""
    from registry.selectors import version_get

    found = version_get(endpoint.model.name, version)
    if not found.deployments.filter(endpoint=endpoint).exists():
        raise NotFound(f"{found.ref} has never been deployed on {endpoint.name}.", field="version")
    return found


def endpoint_list():
    return Endpoint.objects.select_related("model", "target").prefetch_related("deployments__version")


def active_deployments(endpoint):
    return list(
        Deployment.objects.filter(endpoint=endpoint, state=Deployment.State.ACTIVE)
        .select_related("version__model")
        .order_by("-weight", "version_id")
    )


def serving_profiles(endpoint, deployments):
    """The newest serving profile (jobs.selectors.serving_profile_summary) of each version of the
    endpoint's model on the endpoint's target that recommends a configuration: the versions
    serving now first, then the newest; each with ``serving`` (whether it serves here now)."""
    serving = {d.version_id for d in deployments}
    found = [
        {**profile, "serving": profile["version"].pk in serving}
        for profile in job_selectors.serving_profiles(
            versions=endpoint.model.versions.all(), targets=[endpoint.target]
        ).values()
        if profile["recommended"] is not None
    ]
    found.sort(key=lambda p: (not p["serving"], -(p["job"].finished or p["job"].created).timestamp(), -p["job"].pk))
    return found[:SERVING_PROFILES_SHOWN]


def serving_profile_for(endpoint, job_id):
    """The serving profile of job ``job_id`` if its recommendation can be applied on ``endpoint``
    (a succeeded serve_profile of a version of the endpoint's model, on the endpoint's target,
    that recommends a configuration); a BerthError (400) saying why not otherwise."""
    try:
        job_id = int(job_id)
    except (TypeError, ValueError):
        raise BerthError("Say which serving profile to apply: the id of its serve_profile job.", field="job") from None
    job = Job.objects.select_related("version__model", "target").filter(pk=job_id).first()
    if job is None:
        raise BerthError(f"There is no job {job_id}; pick a serving profile shown on this page.", field="job")
    if job.kind != Job.Kind.SERVE_PROFILE:
        raise BerthError(f"Job {job_id} is a {job.get_kind_display()} job, not a serving profile.", field="job")
    if job.status != Job.Status.SUCCEEDED:
        raise BerthError(f"Job {job_id} has not succeeded ({job.status}); it has no recommendation.", field="job")
    if job.version.model_id != endpoint.model_id:
        raise BerthError(
            f"Job {job_id} profiled {job.version.ref}, but {endpoint.name} serves {endpoint.model.name}: "
            f"run a serving profile of a {endpoint.model.name} version.",
            field="job",
        )
    if job.target_id != endpoint.target_id:
        raise BerthError(
            f"Job {job_id} measured on {job.target.slug}, but {endpoint.name} serves on {endpoint.target.slug}: "
            f"batching that suits one target can be wrong on another; profile on {endpoint.target.slug}.",
            field="job",
        )
    profile = job_selectors.serving_profile_summary(job)
    if profile["recommended"] is None:
        raise BerthError(
            f"Job {job_id} found no configuration whose p99 stayed within its {profile['budget_ms']} ms budget, "
            "so there is nothing to apply: profile again with a larger budget.",
            field="job",
        )
    return profile


def endpoint_spec(endpoint, *, artifact_url=None):
    """What the serving runtime serves, and its ETag: the current split with each version's
    artifact, signature and reference features. ``artifact_url(deployment)`` overrides where
    artifacts are fetched from (a bundle points at its own files)."""
    deployments = active_deployments(endpoint)
    profiles = {}
    for profile in ReferenceProfile.objects.filter(version__in=[d.version_id for d in deployments]).order_by("id"):
        profiles.setdefault(profile.version_id, []).append(profile.spec())
    spec = {
        "endpoint": endpoint.name,
        "model": endpoint.model.name,
        "generation": deployments[0].generation if deployments else 0,
        "target": {
            "slug": endpoint.target.slug,
            "execution_provider": endpoint.target.execution_provider,
            "provider_options": endpoint.target.provider_options,
        },
        "deployments": [
            {
                "version": d.version.version,
                "weight": d.weight,
                "sha256": d.version.sha256,
                "size_bytes": d.version.size_bytes,
                "format": d.version.format,
                "artifact_url": artifact_url(d)
                if artifact_url
                else reverse("api:endpoint-artifact", args=[endpoint.name, d.version.version]),
                "io_signature": d.version.io_signature,
                "features": profiles.get(d.version_id, []),
            }
            for d in deployments
        ],
        "telemetry": {
            "url": reverse("api:telemetry"),
            "flush_seconds": settings.BERTH_TELEMETRY_FLUSH_SECONDS,
            "flush_requests": settings.BERTH_TELEMETRY_FLUSH_REQUESTS,
        },
        "limits": {"max_request_bytes": settings.BERTH_SERVING_MAX_REQUEST_BYTES},
        "batching": {
            "max_batch_size": endpoint.max_batch_size,
            "max_queue_delay_us": endpoint.max_queue_delay_us,
            "threads": endpoint.inference_threads,
        },
    }
    etag = '"' + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32] + '"'
    return spec, etag


def deployment_history(endpoint, limit=50, *, reads=None):
    """[(generation, action, who, when, [(version, weight), ...])], newest first. ``reads``: the
    page's EndpointReads of ``endpoint``, whose deployments it shares."""
    rows = (reads or EndpointReads(endpoint)).deployments
    generations = []
    for generation, group in groupby(rows, key=lambda d: d.generation):
        group = list(group)
        generations.append(
            {
                "generation": generation,
                "action": group[0].action,
                "by": group[0].deployed_by,
                "when": group[0].deployed,
                "active": group[0].state == Deployment.State.ACTIVE,
                "split": [(d.version, d.weight) for d in group],
            }
        )
        if len(generations) >= limit:
            break
    return generations


def version_deployments(version):
    """Where a version serves now: [(endpoint, weight)]."""
    return [
        (d.endpoint, d.weight)
        for d in Deployment.objects.filter(version=version, state=Deployment.State.ACTIVE).select_related("endpoint")
    ]
