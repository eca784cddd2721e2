"""Malformed model files by mutation: real small ONNX, TorchScript and torch.export (.pt2) files,
cut short at several offsets, with seeded random bit flips and with zeroed ranges, registered
through the API. A damaged file is refused with a 4xx that says why and leaves nothing behind (no
version row, no stored file, no temporary file); one that still parses (a flipped bit in a weight
is still a model) is registered, and a real worker's validate job marks it ready or invalid with a
reason, without dying: the same worker then validates a sound model."""

import os
import random

import pytest

from jobs.models import Job
from registry.models import ModelVersion
from tests.conftest import register, tiny_onnx_bytes, wait_for

FORMATS = ["onnx", "torchscript", "exported_program"]
# make test runs these; make fuzz takes more mutants from another seed.
MUTANTS_PER_FORMAT = int(os.environ.get("BERTH_FUZZ_MUTANTS", 30))
SEED = int(os.environ.get("BERTH_FUZZ_SEED", 20261122))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """One small MLP (64 → 32 → 10, seeded weights) saved by each exporter Berth accepts."""
    import torch

    from dashboard.demo import export_onnx, export_torchscript

    folder = tmp_path_factory.mktemp("mutated")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    program = torch.export.export(module, (torch.zeros(2, 64),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "model.pt2"))
    return {
        "onnx": export_onnx(module, folder / "model.onnx").read_bytes(),
        "torchscript": export_torchscript(module, folder / "model.pt").read_bytes(),
        "exported_program": (folder / "model.pt2").read_bytes(),
    }


def mutants(data, *, seed, count=MUTANTS_PER_FORMAT):
    """``count`` damaged copies of ``data``, as (what was done, bytes): cut at fixed offsets, then
    1 to 16 random bit flips and zeroed ranges of 1 to 512 bytes, from a seeded generator."""
    rng = random.Random(seed)
    size = len(data)
    out = [
        (f"cut at byte {cut}", data[:cut])
        for cut in sorted({0, 1, 16, size // 8, size // 4, size // 2, 3 * size // 4, size - 64, size - 1})
    ]
    while len(out) < count * 2 // 3:
        flips = rng.choice([1, 2, 4, 16])
        damaged = bytearray(data)
        for _ in range(flips):
            damaged[rng.randrange(size)] ^= 1 << rng.randrange(8)
        out.append((f"{flips} bits flipped", bytes(damaged)))
    while len(out) < count:
        length, start = rng.choice([1, 8, 64, 512]), rng.randrange(size)
        damaged = bytearray(data)
        damaged[start : start + length] = bytes(len(damaged[start : start + length]))
        out.append((f"{length} bytes zeroed at {start}", bytes(damaged)))
    return out


def register_mutants(client, fmt, data, tmp_path):
    """Register every mutant of ``data`` as fuzz-<fmt>:<n>; returns [(what, response)]."""
    answers = []
    for number, (what, damaged) in enumerate(mutants(data, seed=SEED)):
        path = tmp_path / f"mutant-{fmt}-{number}"
        path.write_bytes(damaged)
        answers.append((what, register(client, path, model=f"fuzz-{fmt}", version=str(number))))
    return answers


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_damaged_file_is_refused_with_a_reason_and_leaves_nothing(
    fmt, engineer_api, model_files, media_files, settings, tmp_path
):
    uploads = settings.BERTH_UPLOAD_DIR
    refused = accepted = 0
    for number, (what, damaged) in enumerate(mutants(model_files[fmt], seed=SEED)):
        path = tmp_path / f"mutant-{number}"
        path.write_bytes(damaged)
        stored_before = media_files()
        response = register(engineer_api, path, model=f"fuzz-{fmt}", version=str(number))
        assert response.status_code in (201, 400, 422), (what, response.status_code, response.content[:300])
        assert files_under(uploads) == [], (what, files_under(uploads))  # kept (moved) or deleted
        if response.status_code == 201:
            accepted += 1
            version = ModelVersion.objects.get(model__name=f"fuzz-{fmt}", version=str(number))
            assert version.format == fmt and version.status == "validating"
            assert len(media_files()) == len(stored_before) + 1
            continue
        refused += 1
        body = response.json()
        reason = body["errors"]["artifact"][0]
        assert reason in body["detail"] and len(reason) > 15 and "Traceback" not in reason, (what, body)
        assert not ModelVersion.objects.filter(model__name=f"fuzz-{fmt}", version=str(number)).exists(), what
        assert media_files() == stored_before, what
    # Every cut is refused; some flips still leave a model (a weight changed, not the structure).
    assert refused >= 9 and accepted >= 1, (refused, accepted)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_validates_every_accepted_mutant_and_survives(worker_process, engineer_api, model_files, tmp_path):
    worker = worker_process(["default"])
    accepted = {}
    for fmt in FORMATS:
        for what, response in register_mutants(engineer_api, fmt, model_files[fmt], tmp_path):
            assert response.status_code in (201, 400, 422), (fmt, what, response.status_code)
            if response.status_code == 201:
                accepted[response.json()["id"]] = f"{fmt} mutant, {what}"
    assert accepted

    def all_finished():
        assert worker.poll() is None, f"the worker died: {worker.log.read_text()[-3000:]}"
        return (
            not Job.objects.filter(version_id__in=accepted, kind="validate")
            .exclude(status__in=[Job.Status.SUCCEEDED, Job.Status.FAILED])
            .exists()
        )

    wait_for(all_finished, timeout=240, interval=0.5, message="the validate jobs of the accepted mutants")
    for job in Job.objects.filter(version_id__in=accepted, kind="validate").select_related("version"):
        what = accepted[job.version_id]
        if job.status == Job.Status.SUCCEEDED:
            assert job.version.status == "ready", what
            assert job.version.io_signature["inputs"], what
        else:
            # A reason from the loader or the test inference, not a crash of the job's own code.
            assert job.version.status == "invalid", what
            assert job.error and not job.error.startswith("Internal error"), (what, job.error)
            assert job.version.status_detail == job.error, what

    # The worker is alive and takes the next job.
    assert worker.poll() is None
    sound = tmp_path / "sound.onnx"
    sound.write_bytes(tiny_onnx_bytes())
    response = register(engineer_api, sound, model="fuzz-sound", version="1")
    assert response.status_code == 201
    version = wait_for(
        lambda: ModelVersion.objects.exclude(status="validating").filter(pk=response.json()["id"]).first(),
        timeout=60,
        message="the sound model's validate job",
    )
    assert version.status == "ready", version.status_detail
