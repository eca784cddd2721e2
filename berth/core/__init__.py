"""Berth's pure core: what needs no Django and is shared by the serving runtime, the job engine,
the ``berth`` CLI and the Django apps.

Everything here imports only the standard library and numpy (``onnx`` lazily, in ``sniff``), and
nothing of ours outside ``berth.core``; import-linter enforces it (pyproject.toml). A deployment
bundle ships this package next to ``serving/``.
"""
