"""`pip install .` gives a Berth that renders pages: the wheel carries templates/ and static/,
and an installed copy (not this checkout) finds them."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RENDER_LOGIN = """
import django, dashboard
from django.conf import settings
django.setup()
from django.contrib.staticfiles import finders
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
print("module", dashboard.__file__)
print("plotly", finders.find("vendor/plotly-berth.min.js"))
response = Client().get("/accounts/login/")
print("status", response.status_code)
print("page", "Log in" in response.content.decode() and "css/berth" in response.content.decode())
"""


def test_the_wheel_installs_and_renders_the_log_in_page(tmp_path):
    source = tmp_path / "source"  # a copy of the tracked files: the build leaves the checkout alone
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("berth-*.whl"))

    packed = {
        name.split(".data/data/share/berth/", 1)[1]
        for name in zipfile.ZipFile(wheel).namelist()
        if ".data/data/share/berth/" in name
    }
    wanted = {name for name in tracked.decode().split("\0") if name.startswith(("templates/", "static/"))}
    assert wanted - packed == set(), "files the wheel leaves out (add their folder to pyproject's data-files)"

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    # Berth's dependencies from this environment (no network), Berth itself from the wheel.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "DATABASE_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings", SECRET_KEY="packaging-test", BERTH_VAR_DIR=str(tmp_path / "var")
    )
    result = subprocess.run([str(python), "-c", RENDER_LOGIN], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["module"].startswith(str(fresh)), lines["module"]
    assert lines["plotly"].startswith(str(fresh / "share" / "berth" / "static")), lines["plotly"]
    assert lines["status"] == "200" and lines["page"] == "True", result.stdout
    # Without BERTH_VAR_DIR an installed Berth refuses to start rather than write into site-packages.
    del env["BERTH_VAR_DIR"]
    refused = subprocess.run([str(python), "-c", RENDER_LOGIN], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "BERTH_VAR_DIR is not set" in refused.stderr, refused.stderr[-3000:]
    assert not any(Path(site).glob("var")) and not (Path(site).parent / "var").exists()
