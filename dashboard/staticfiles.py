"""Static files: hashed names (cached for a year) with gzip and brotli copies beside them,
served by WhiteNoise. ``collectstatic`` builds them (``make run`` does it)."""

import os

from django.core.checks import Warning, register
from whitenoise.storage import CompressedManifestStaticFilesStorage


class BerthStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's compressed manifest storage that compresses only what changed, and that
    names a file not collected yet by its plain name (served from the source folders) rather
    than failing the page: `manage.py check` warns about that."""

    def stored_name(self, name):
        try:
            return super().stored_name(name)
        except ValueError:  # not in the manifest (collectstatic not run since the file appeared)
            return name

    def compress_files(self, paths):
        # Only hashed names are kept (WHITENOISE_KEEP_ONLY_HASHED_FILES), and a hashed name is the
        # address of its content: a compressed copy already beside one is up to date, so a second
        # collectstatic skips plotly.js (brotli takes seconds on it).
        stale = [
            path for path in paths if not any(os.path.exists(self.path(path) + suffix) for suffix in (".br", ".gz"))
        ]
        yield from super().compress_files(stale)


@register(deploy=True)
def static_files_collected(app_configs, **kwargs):
    from django.conf import settings

    ours = settings.STORAGES["staticfiles"]["BACKEND"] == f"{__name__}.{BerthStaticFilesStorage.__name__}"
    if (
        ours
        and not settings.DEBUG
        and not os.path.exists(os.path.join(settings.STATIC_ROOT, BerthStaticFilesStorage.manifest_name))
    ):
        return [
            Warning(
                "Static files are not collected: pages load them uncompressed and cached for 60 s only.",
                hint="Run `manage.py collectstatic --noinput` (make run does it) after every upgrade.",
                id="berth.W001",
            )
        ]
    return []
