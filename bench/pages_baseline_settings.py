"""bench/pages.py's baseline: static files served as Berth served them before issue 14 (plain
names straight from the source folders, uncompressed, max-age 60 s) with the full plotly.js
bundle it shipped then (the same file as the plotly package's plotly.min.js, 4.8 MB) where
the pages now load Berth's own (make plotly), and the charts.js of then (bench/pages_baseline/js:
it drew every chart in one go)."""

import os
from pathlib import Path

import plotly

from dashboard.settings import *  # noqa: F403

_FULL_BUNDLE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
_OVERRIDE = VAR_DIR / "bench-pages-baseline" / "static"  # noqa: F405
(_OVERRIDE / "vendor").mkdir(parents=True, exist_ok=True)
if not (_OVERRIDE / "vendor" / "plotly-berth.min.js").exists():
    os.symlink(_FULL_BUNDLE, _OVERRIDE / "vendor" / "plotly-berth.min.js")

STATICFILES_DIRS = [_OVERRIDE, Path(__file__).parent / "pages_baseline", *STATICFILES_DIRS]  # noqa: F405
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True
WHITENOISE_KEEP_ONLY_HASHED_FILES = False
