"""Aliases and the promotion gates that guard moving them, with the audit log of every move."""

import math

from django.db import IntegrityError, transaction
from rest_framework import status

from common import audit
from common.access import OVERRIDE, permits
from common.errors import BerthError, Conflict, NotFound

from .. import signals
from ..models import (
    GATED_ALIASES,
    Alias,
    AliasEvent,
    ModelVersion,
    PromotionGate,
)
from .base import full_clean

# --- aliases ---------------------------------------------------------------------------------


def alias_set(*, model, name, version, user, override=False, justification=""):
    """Point alias ``name`` of ``model`` at ``version`` (creating or moving it) and record the
    change in the alias log. Returns ``(alias, event)``; event is None when the alias already
    pointed at ``version`` (nothing changes, nothing is checked or recorded).

    A gated alias (GATED_ALIASES: production) moves only when every promotion gate of the
    model passes on ``version``; otherwise Conflict (409) names the failing gates (their
    results in ``extra["gates"]``) and nothing is written. An admin may move it anyway with
    ``override=True`` and a ``justification``; others get 403, and a missing justification 400.
    """
    if version.model_id != model.id:
        raise BerthError(f"Version {version.ref} does not belong to model {model.name}.", field="version")
    if version.status == ModelVersion.Status.INVALID:
        raise BerthError(
            f"Version {version.version} is invalid ({version.status_detail}); an alias cannot point at it.",
            field="version",
        )
    candidate = Alias(model=model, name=name, version=version, updated_by=user)
    full_clean(candidate, exclude=["updated_by"])
    current = Alias.objects.filter(model=model, name=name).first()
    if current is not None and current.version_id == version.id:
        return current, None
    justification = (justification or "").strip()
    results = signals.gate_results(version) if name in GATED_ALIASES else []
    failed = [result for result in results if not result["passed"]]
    if failed:
        _check_override(
            model=model,
            name=name,
            version=version,
            user=user,
            failed=failed,
            total=len(results),
            override=override,
            justification=justification,
        )

    with transaction.atomic():
        # No join in the locking query: PostgreSQL re-checks a join against the row a concurrent
        # move just changed, and the row would drop out.
        current = Alias.objects.select_for_update().filter(model=model, name=name).first()
        if current is not None and current.version_id == version.id:
            return current, None
        alias = current or candidate
        from_version = current.version if current is not None else None
        alias.version = version
        alias.updated_by = user
        try:
            with transaction.atomic():
                alias.save()
        except IntegrityError as exc:
            raise Conflict(
                f"Someone else set {name} on {model.name} at the same moment; try again.", field="name"
            ) from exc
        event = AliasEvent.objects.create(
            model=model,
            alias=name,
            action=AliasEvent.Action.MOVE if current else AliasEvent.Action.SET,
            from_version=from_version,
            from_label=from_version.version if from_version else "",
            to_version=version,
            to_label=version.version,
            user=user,
            gate_results=results,
            overridden=bool(failed),
            justification=justification,
        )
        audit.record(
            audit.Action.GATE_OVERRIDE if failed else audit.Action.ALIAS_SET,
            f"{model.name}@{name}",
            user=user,
            details={
                "from": event.from_label or None,
                "to": version.version,
                "justification": justification,
                "failed_gates": [r.get("reason") for r in failed],
            },
        )
    return alias, event


def _check_override(*, model, name, version, user, failed, total, override, justification):
    """Raise unless an admin overrides the failing gates with a justification."""
    if not override:
        # Each reason names its gate's target, batch size and threshold (gates are unique by those).
        reasons = "; ".join(result["reason"] for result in failed)
        raise Conflict(
            f"{name} cannot move to {version.version}: it fails {len(failed)} of the {total} promotion gates of "
            f"{model.name}: {reasons}. Meet the gates, or an admin may override them with a justification.",
            field="version",
            extra={"gates": failed},
        )
    if not permits(user, "alias", OVERRIDE):
        raise BerthError(
            "Only admins may override promotion gates.",
            field="override",
            status=status.HTTP_403_FORBIDDEN,
            extra={"gates": failed},
        )
    if not justification:
        raise BerthError(
            "Overriding a failing promotion gate needs a justification: say why this version may "
            f"become {name} anyway.",
            field="justification",
            extra={"gates": failed},
        )


def alias_remove(*, model, name, user=None):
    """Remove alias ``name`` of ``model`` and record it in the alias log; NotFound if absent."""
    with transaction.atomic():
        alias = Alias.objects.select_for_update().filter(model=model, name=name).first()
        if alias is None:
            raise NotFound(f"Model {model.name} has no alias {name!r}.")
        from_version = alias.version
        alias.delete()
        audit.record(
            audit.Action.ALIAS_REMOVE, f"{model.name}@{name}", user=user, details={"from": from_version.version}
        )
        return AliasEvent.objects.create(
            model=model,
            alias=name,
            action=AliasEvent.Action.REMOVE,
            from_version=from_version,
            from_label=from_version.version,
            user=user,
        )


# --- promotion gates -------------------------------------------------------------------------


def gate_create(*, model, kind, threshold, target=None, batch_size=1, created_by=None):
    """Add a promotion gate to ``model``. ``threshold`` is a fraction for max_accuracy_drop
    (0.005 = 0.5 pt) and max_relative_error (0.01 = 1 %), a cosine for min_cosine (0.99), and
    milliseconds for max_p95_ms, which also needs a ``target`` (a HardwareTarget) and measures
    at ``batch_size``. Quality gates are judged by jobs.engine.decision against the model's
    reference version (the most accurate on the same evaluation set, any lineage)."""
    if kind not in PromotionGate.Kind.values:
        raise BerthError(
            f"Unknown gate kind {kind!r}; use one of {', '.join(PromotionGate.Kind.values)}.", field="kind"
        )
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise BerthError("threshold must be a number.", field="threshold") from None
    if not math.isfinite(threshold) or threshold <= 0:
        raise BerthError(
            "threshold must be a positive number (a fraction such as 0.005 for max_accuracy_drop or "
            "0.01 for max_relative_error, a cosine such as 0.99 for min_cosine, milliseconds for "
            "max_p95_ms).",
            field="threshold",
        )
    if kind == PromotionGate.Kind.MAX_P95_MS and target is None:
        raise BerthError("A max_p95_ms gate needs the target whose latency it checks.", field="target")
    if kind == PromotionGate.Kind.MAX_ACCURACY_DROP and threshold >= 1:
        raise BerthError(
            "max_accuracy_drop is a fraction: 0.005 allows a drop of 0.5 percentage points.", field="threshold"
        )
    if kind == PromotionGate.Kind.MIN_COSINE and threshold > 1:
        raise BerthError("min_cosine is a cosine similarity of at most 1, such as 0.99.", field="threshold")
    if kind == PromotionGate.Kind.MAX_RELATIVE_ERROR and threshold >= 1:
        raise BerthError("max_relative_error is a fraction: 0.01 allows 1 % relative error.", field="threshold")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BerthError("batch_size must be a whole number of at least 1.", field="batch_size")
    if kind in PromotionGate.QUALITY_KINDS:
        batch_size = 1  # quality does not depend on the batch size
    if model.gates.filter(kind=kind, target=target, batch_size=batch_size).exists():
        raise Conflict(
            f"Model {model.name} already has this gate; delete it first to change its threshold.", field="kind"
        )
    gate = PromotionGate(
        model=model, kind=kind, threshold=threshold, target=target, batch_size=batch_size, created_by=created_by
    )
    full_clean(gate, exclude=["created_by"])
    with transaction.atomic():
        gate.save()
    return gate


def gate_delete(*, gate):
    gate.delete()
