"""Alert pages: every alert (firing first, then history) and an endpoint's rules."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from common.access import access_required
from common.errors import BerthError, NotFound

from . import alerts as services
from . import impact, selectors
from .alerts_api import masked_webhook
from .forms import AlertRuleForm, SilenceForm
from .models import Alert, AlertRule, Endpoint
from .views import confirmed, render_confirm

HISTORY_LIMIT = 200


@access_required("alert")
def alerts(request):
    state = request.GET.get("state", "")
    if state not in Alert.State.values:
        state = ""
    name = request.GET.get("endpoint", "")
    endpoint = selectors.endpoint_get(name) if name else None
    firing = (
        list(services.alert_list(state=Alert.State.FIRING, endpoint=endpoint)) if state != Alert.State.RESOLVED else []
    )
    history = (
        list(services.alert_list(state=Alert.State.RESOLVED, endpoint=endpoint)[:HISTORY_LIMIT])
        if state != Alert.State.FIRING
        else []
    )
    return render(
        request,
        "monitoring/alerts.html",
        {
            "firing": firing,
            "history": history,
            "history_limit": HISTORY_LIMIT,
            "state": state,
            "endpoint": endpoint,
            "endpoint_name": name,
            "endpoints": Endpoint.objects.order_by("name"),
            "states": Alert.State.values,
            "now": timezone.now(),
        },
    )


def _render_rules(request, endpoint, form=None, status=200):
    rules = services.rule_list(endpoint)
    for rule in rules:
        rule.webhook_shown = masked_webhook(rule.webhook_url, request.user)
        rule.email_addresses = services.email_list(rule.emails)
    return render(
        request,
        "monitoring/alert_rules.html",
        {
            "endpoint": endpoint,
            "rules": rules,
            "form": form or AlertRuleForm(),
            "silence_choices": [choice for choice in SilenceForm.base_fields["minutes"].choices if choice[0]],
            "endpoint_alerts": services.endpoint_alert_context(endpoint),
            "public_url": settings.BERTH_PUBLIC_URL,
            "now": timezone.now(),
        },
        status=status,
    )


def _rule_get(endpoint, rule_id):
    rule = AlertRule.objects.filter(endpoint=endpoint, pk=rule_id).first()
    if rule is None:
        raise NotFound(f"{endpoint.name} has no alert rule {rule_id}.")
    return rule


@access_required("alert")
def alert_rules(request, name):
    return _render_rules(request, selectors.endpoint_get(name))


@access_required("alert", "write")
@require_POST
def alert_rule_create(request, name):
    endpoint = selectors.endpoint_get(name)
    form = AlertRuleForm(request.POST)
    if not form.is_valid():
        return _render_rules(request, endpoint, form, status=400)
    try:
        rule = services.rule_create(endpoint=endpoint, user=request.user, **form.cleaned_data)
    except BerthError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _render_rules(request, endpoint, form, status=400)
    messages.success(request, f"Rule added: {rule.describe()}. It is evaluated every minute.")
    return redirect("monitoring:alert-rules", endpoint.name)


@access_required("alert", "write")
@require_POST
def alert_rule_delete(request, name, rule_id):
    endpoint = selectors.endpoint_get(name)
    rule = _rule_get(endpoint, rule_id)
    if not confirmed(request):
        return render_confirm(request, endpoint, impact.rule_delete_impact(rule))
    services.rule_delete(rule=rule, user=request.user)
    messages.success(request, f"Rule deleted: {rule.describe()}.")
    return redirect("monitoring:alert-rules", endpoint.name)


@access_required("alert", "write")
@require_POST
def alert_rule_silence(request, name, rule_id):
    endpoint = selectors.endpoint_get(name)
    rule = _rule_get(endpoint, rule_id)
    form = SilenceForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long to silence the rule.")
        return redirect("monitoring:alert-rules", endpoint.name)
    rule = services.rule_silence(rule=rule, minutes=form.cleaned_data["minutes"], user=request.user)
    if rule.silenced_until:
        messages.success(request, f"Silenced until {rule.silenced_until:%Y-%m-%d %H:%M} UTC: {rule.describe()}.")
    else:
        messages.success(request, f"Notifications resumed: {rule.describe()}.")
    return redirect("monitoring:alert-rules", endpoint.name)
