from django.db import migrations, models


def evaluation_sets(apps, schema_editor):
    """Name the evaluation set of each stored accuracy (its job's parameter), so that
    decisions compare accuracies only on the same set."""
    BenchmarkResult = apps.get_model("jobs", "BenchmarkResult")
    Dataset = apps.get_model("registry", "Dataset")
    for result in BenchmarkResult.objects.filter(accuracy__isnull=False).select_related("job", "version"):
        name = (result.job.params or {}).get("evaluation_dataset")
        if not name:
            continue
        dataset = Dataset.objects.filter(model_id=result.version.model_id, name=name).first()
        result.quality = {"evaluation_set": {"name": name, "sha256": dataset.sha256 if dataset else None,
                                             "samples": dataset.rows if dataset else None}}
        result.save(update_fields=["quality"])


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0005_gpu_measurements'),
        ('registry', '0003_referenceprofile'),
    ]

    operations = [
        migrations.AddField(
            model_name='benchmarkresult',
            name='quality',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(evaluation_sets, migrations.RunPython.noop),
    ]
