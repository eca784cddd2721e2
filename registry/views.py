from django.conf import settings
from django.contrib import messages
from django.http import FileResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from common.access import access_required
from common.errors import BerthError, NotFound
from jobs import charts as job_charts
from jobs import gates as job_gates
from jobs import selectors as job_selectors
from jobs import services as job_services
from jobs.forms import BenchmarkForm, CompressForm, ConvertForm, ServeProfileForm
from monitoring.selectors import version_deployments

from . import selectors, services
from .forms import AliasForm, GateForm, ModelCreateForm, TargetForm
from .models import GATED_ALIASES, HardwareTarget, Model

# Alias log entries on the model page; the API has them all.
ALIAS_EVENTS_SHOWN = 50


def _form_error(form, exc):
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _render_model_list(request, form):
    query = request.GET.get("q", "").strip()
    return render(
        request,
        "registry/model_list.html",
        {
            "models": selectors.model_list(query=query),
            "query": query,
            "form": form,
        },
    )


@access_required("model")
def model_list(request):
    return _render_model_list(request, ModelCreateForm())


@access_required("model", "write")
@require_POST
def model_create(request):
    form = ModelCreateForm(request.POST)
    if form.is_valid():
        try:
            model = services.model_create(owner=request.user, **form.cleaned_data)
        except BerthError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Model {model.name} created.")
            return redirect(model)
    return _render_model_list(request, form)


@access_required("model")
def model_detail(request, name):
    model = selectors.model_get(name)
    versions = list(selectors.model_versions(model))
    deltas = job_selectors.accuracy_deltas(versions)
    for version in versions:
        version.accuracy_delta = deltas.get(version.pk)
    aliases = list(model.aliases.select_related("version__model", "updated_by"))
    gates = selectors.model_gates(model)
    production = next((a for a in aliases if a.name in GATED_ALIASES), None)
    if production is not None:
        # Each gate as the current production version meets it now.
        for gate, result in zip(gates, job_gates.gate_results(production.version, gates=gates), strict=True):
            gate.production_result = result
    return render(
        request,
        "registry/model_detail.html",
        {
            "model": model,
            "tree": selectors.lineage_tree(versions),
            "versions": versions,
            "aliases": aliases,
            "datasets": model.datasets.select_related("version"),
            "alias_form": AliasForm(versions=versions),
            "gates": gates,
            "gated_aliases": GATED_ALIASES,
            "production": production,
            "gate_form": GateForm(),
            "events": list(selectors.alias_events(model)[:ALIAS_EVENTS_SHOWN]),
            "events_shown": ALIAS_EVENTS_SHOWN,
        },
    )


def _form_problems(form):
    """A form's errors as one line for a flash message: "threshold: Enter a number."."""
    return " ".join(
        (f"{field.replace('_', ' ')}: " if field in form.fields else "") + " ".join(errors)
        for field, errors in form.errors.items()
    )


@access_required("alias", "write")
@require_POST
def alias_set(request, name):
    model = selectors.model_get(name)
    form = AliasForm(request.POST, versions=selectors.model_versions(model))
    if not form.is_valid():
        messages.error(request, _form_problems(form))
        return redirect(model)
    data = form.cleaned_data
    version = selectors.version_get(model.name, data["version"])
    try:
        _, event = services.alias_set(
            model=model,
            name=data["name"],
            version=version,
            user=request.user,
            override=data["override"],
            justification=data["justification"],
        )
    except BerthError as exc:
        messages.error(request, exc.message)
    else:
        if event is None:
            messages.info(request, f"{data['name']} already points at {version.version}.")
        elif event.overridden:
            messages.warning(request, f"{data['name']} now points at {version.version}; failing gates overridden.")
        else:
            messages.success(request, f"{data['name']} now points at {version.version}.")
    return redirect(model)


@access_required("alias", "write")
@require_POST
def alias_remove(request, name, alias):
    model = selectors.model_get(name)
    try:
        services.alias_remove(model=model, name=alias, user=request.user)
    except BerthError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Alias {alias} removed.")
    return redirect(model)


@access_required("gate", "write")
@require_POST
def gate_create(request, name):
    model = selectors.model_get(name)
    form = GateForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_problems(form))
        return redirect(model)
    try:
        gate = services.gate_create(model=model, created_by=request.user, **form.cleaned_data)
    except BerthError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Gate added: {gate.description}.")
    return redirect(model)


@access_required("gate", "write")
@require_POST
def gate_delete(request, name, gate_id):
    model = selectors.model_get(name)
    try:
        gate = selectors.gate_get(model, gate_id)
    except NotFound as exc:  # removed already (a second click, another engineer)
        messages.error(request, exc.message)
        return redirect(model)
    services.gate_delete(gate=gate)
    messages.success(request, f"Gate removed: {gate.description}.")
    return redirect(model)


@access_required("version")
def version_detail(request, name, version):
    return version_page(request, selectors.version_get(name, version))


def version_page(request, found, *, bound_form=None, kind=None):
    """The version page; with ``bound_form`` (a job form that did not validate, for ``kind``) it
    shows that form with its errors beside its fields and the values typed (status 400). Its live
    parts (status, jobs, benchmarks, the job forms once the version is ready) are polled by htmx,
    which picks them out of this same page."""
    ancestors, children = selectors.version_lineage(found)
    default_target = HardwareTarget.objects.filter(active=True).order_by("slug").first()
    jobs = job_selectors.version_jobs(found)
    job_forms = {
        "convert_form": ConvertForm(prefix="convert", initial={"target": default_target}),
        "compress_form": CompressForm(prefix="compress", initial={"target": default_target}),
        "benchmark_form": BenchmarkForm(
            prefix="benchmark", initial={"targets": [default_target] if default_target else []}
        ),
        "serve_profile_form": ServeProfileForm(prefix="serve_profile", initial={"target": default_target}),
    }
    if bound_form is not None:
        job_forms[f"{kind}_form"] = bound_form
    return render(
        request,
        "registry/version_detail.html",
        {
            "version": found,
            "ancestors": ancestors,
            "children": children,
            "jobs": jobs,
            "jobs_active": any(not job.is_finished for job in jobs),
            "aliases": found.aliases.all(),
            "datasets": found.model.datasets.all(),
            "benchmarks": job_selectors.latest_benchmarks(found),
            "request_benchmarks": job_selectors.latest_request_benchmarks(found),
            "serving_profiles": _serving_profiles(found),
            "deployed_on": version_deployments(found),
            **job_forms,
        },
        status=400 if bound_form is not None else 200,
    )


def _serving_profiles(version):
    """The version's newest serving profile on each target, with its sweep's figure (JSON)."""
    profiles = sorted(job_selectors.serving_profiles(versions=[version]).values(), key=lambda p: p["target"].slug)
    for profile in profiles:
        profile["chart"] = job_charts.to_json(job_charts.serving_profile(profile))
    return profiles


@access_required("version")
def version_download(request, name, version):
    found = selectors.version_get(name, version)
    extension = found.artifact.name.rsplit(".", 1)[-1]
    return FileResponse(
        found.artifact.open("rb"), as_attachment=True, filename=f"{found.model.name}-{found.version}.{extension}"
    )


@access_required("job", "write")
@require_POST
def version_validate(request, name, version):
    found = selectors.version_get(name, version)
    job = job_services.job_create(kind="validate", version=found, created_by=request.user)
    messages.success(request, f"Validation queued (job {job.id}).")
    return redirect(found)


@access_required("upload", "register")
def upload(request):
    return render(
        request,
        "registry/upload.html",
        {
            "models": Model.objects.order_by("name").values_list("name", flat=True),
            "chunk_bytes": min(8 * 1024**2, settings.BERTH_MAX_CHUNK_BYTES),
            "max_bytes": settings.BERTH_MAX_UPLOAD_BYTES,
            "initial_model": request.GET.get("model", ""),
        },
    )


def _render_target_list(request, form):
    return render(request, "registry/target_list.html", {"targets": HardwareTarget.objects.all(), "form": form})


@access_required("target")
def target_list(request):
    return _render_target_list(request, TargetForm())


@access_required("target", "write")
@require_POST
def target_create(request):
    form = TargetForm(request.POST)
    if form.is_valid():
        try:
            target = services.target_create(**form.cleaned_data)
        except BerthError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Target {target.slug} created; its jobs go to the queue {target.queue}.")
            return redirect("registry:targets")
    return _render_target_list(request, form)
