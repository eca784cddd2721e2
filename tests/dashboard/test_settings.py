"""Settings come from the environment, with defaults that need no configuration."""

import os
import shutil
import subprocess
import sys


def settings_in_subprocess(env, expression):
    code = f"import dashboard.settings as s; print({expression})"
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "SECRET_KEY_FILE", "DEBUG")
    }
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)


def test_it_runs_on_sqlite_and_the_file_broker_by_default(tmp_path):
    result = settings_in_subprocess(
        {"SECRET_KEY": "x", "BERTH_VAR_DIR": str(tmp_path)},
        "s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DATABASES['default']['OPTIONS']['init_command']",
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout and "filesystem://" in result.stdout and "WAL" in result.stdout
    assert (tmp_path / "broker" / "queue").is_dir()


def test_it_uses_postgresql_and_redis_when_configured(tmp_path):
    result = settings_in_subprocess(
        {
            "SECRET_KEY": "x",
            "BERTH_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u@db:5432/berth",
            "CELERY_BROKER_URL": "redis://cache:6379/0",
        },
        "s.DATABASES['default']['ENGINE'], s.DATABASES['default']['HOST'], s.CELERY_BROKER_URL",
    )
    assert "postgresql" in result.stdout and "db" in result.stdout and "redis://cache" in result.stdout


def test_it_refuses_to_start_without_a_secret_key_unless_debug(tmp_path):
    refused = settings_in_subprocess({"BERTH_VAR_DIR": str(tmp_path)}, "1")
    assert refused.returncode != 0 and "SECRET_KEY is not set" in refused.stderr
    assert settings_in_subprocess({"BERTH_VAR_DIR": str(tmp_path), "DEBUG": "1"}, "1").returncode == 0


def test_it_reads_the_secret_key_from_a_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("from-a-file\n")
    result = settings_in_subprocess({"SECRET_KEY_FILE": str(key), "BERTH_VAR_DIR": str(tmp_path)}, "s.SECRET_KEY")
    assert result.stdout.strip() == "from-a-file"


def deploy_check(env, tmp_path):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "SECRET_KEY_FILE", "DEBUG")
    }
    key = tmp_path / "secret"
    key.write_text("k" * 64 + "-production-secret-" + "q" * 20)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env={
            **clean,
            "SECRET_KEY_FILE": str(key),
            "BERTH_VAR_DIR": str(tmp_path),
            "ALLOWED_HOSTS": "berth.example",
            **env,
        },
        capture_output=True,
        text=True,
    )


def test_the_deploy_check_is_clean_with_the_production_variables(tmp_path, settings):
    uncollected = deploy_check({"BERTH_HTTPS": "1"}, tmp_path)
    assert "berth.W001" in uncollected.stderr and "collectstatic" in uncollected.stderr
    shutil.copytree(settings.STATIC_ROOT, tmp_path / "static", dirs_exist_ok=True)  # collected by tests/conftest
    production = deploy_check({"BERTH_HTTPS": "1"}, tmp_path)
    assert production.returncode == 0, production.stdout + production.stderr
    assert "no issues" in production.stdout
    plain_http = deploy_check({}, tmp_path)
    assert plain_http.returncode != 0
    assert "SESSION_COOKIE_SECURE" in plain_http.stderr and "SECURE_HSTS_SECONDS" in plain_http.stderr


def test_artifacts_go_to_a_bucket_when_one_is_named(tmp_path):
    result = settings_in_subprocess(
        {
            "SECRET_KEY": "x",
            "BERTH_VAR_DIR": str(tmp_path),
            "BERTH_S3_BUCKET": "berth-artifacts",
            "BERTH_S3_ENDPOINT_URL": "https://s3.example.internal",
            "BERTH_S3_PREFIX": "prod",
        },
        "s.STORAGES['default']['BACKEND'], s.STORAGES['default']['OPTIONS']['bucket_name'], "
        "s.STORAGES['default']['OPTIONS']['endpoint_url'], s.STORAGES['default']['OPTIONS']['location']",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "storages.backends.s3.S3Storage",
        "berth-artifacts",
        "https://s3.example.internal",
        "prod",
    ]
    default = settings_in_subprocess(
        {"SECRET_KEY": "x", "BERTH_VAR_DIR": str(tmp_path)}, "s.STORAGES['default']['BACKEND']"
    )
    assert "FileSystemStorage" in default.stdout


def test_a_bad_trusted_proxy_setting_is_named(tmp_path):
    result = settings_in_subprocess(
        {"SECRET_KEY": "x", "BERTH_VAR_DIR": str(tmp_path), "BERTH_TRUSTED_PROXIES": "10.0.0.0/8, nginx"},
        "s.BERTH_TRUSTED_PROXIES",
    )
    assert result.returncode != 0 and "BERTH_TRUSTED_PROXIES: 'nginx' is not an IP address" in result.stderr


def test_the_health_check_needs_no_login_and_no_https(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "database": "ok"}
    assert client.get("/").status_code == 301  # everything else goes to https


def test_manage_py_finds_the_secret_key_make_created(tmp_path):
    """The README's `.venv/bin/python manage.py api_token …` works in a `make run` checkout
    without SECRET_KEY_FILE in the environment."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert (root / "var" / "secret_key").is_file(), "make test and make run create var/secret_key"
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE", "DEBUG")}
    result = subprocess.run(
        [sys.executable, "manage.py", "api_token", "--help"],
        cwd=root,
        env={**clean, "BERTH_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SECRET_KEY is not set" not in result.stderr
