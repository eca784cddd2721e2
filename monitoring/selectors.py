"""Monitoring reads: endpoints, their spec for the serving runtime, deployment history."""

import hashlib
import json
from itertools import groupby

from django.conf import settings
from django.urls import reverse

from dashboard.errors import NotFound
from registry.models import ReferenceProfile

from .models import Deployment, Endpoint


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


def serving_profile(endpoint, deployments):
    """The newest succeeded serving profile job (serve_profile) of a version deployed on the
    endpoint, on the endpoint's target, that recommends a configuration; None when there is none."""
    from jobs.models import Job

    job = (
        Job.objects.filter(
            kind=Job.Kind.SERVE_PROFILE,
            status=Job.Status.SUCCEEDED,
            target=endpoint.target,
            version__in=[d.version_id for d in deployments],
        )
        .exclude(result__recommended=None)
        .select_related("version")
        .order_by("-finished", "-id")
        .first()
    )
    return job and {"job": job, "version": job.version, **job.result["recommended"]}


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
        "batching": {"max_batch_size": endpoint.max_batch_size, "max_queue_delay_us": endpoint.max_queue_delay_us},
    }
    etag = '"' + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32] + '"'
    return spec, etag


def deployment_history(endpoint, limit=50):
    """[(generation, action, who, when, [(version, weight), ...])], newest first."""
    rows = (
        Deployment.objects.filter(endpoint=endpoint)
        .select_related("version", "deployed_by")
        .order_by("-generation", "-weight")
    )
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
