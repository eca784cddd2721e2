"""gunicorn settings for the dashboard: ``gunicorn -c python:dashboard.gunicorn_conf dashboard.wsgi``
(command-line options override them; ``manage.py serve`` uses this file too)."""

import os

bind = os.environ.get("BERTH_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads: a slow client sending an upload chunk holds one; the others keep serving pages.
threads = int(os.environ.get("BERTH_WEB_THREADS", "4"))
timeout = 300
accesslog = "-"
