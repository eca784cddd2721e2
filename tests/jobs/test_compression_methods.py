"""The one declaration of compression methods (berth.compression) drives the README's table,
the engines' calls, the version page's form, the CLI and the API schema."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

from berth import compression

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_declarations_output():
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- compression-methods:start -->\n(.*?)<!-- compression-methods:end -->", readme, re.S)
    assert found, "README.md lost its compression-methods markers"
    assert found.group(1) == compression.readme_table(), "run: python -m berth.compression, and paste it in README.md"


@pytest.mark.parametrize("method", compression.METHODS, ids=lambda m: m.name)
def test_every_engine_takes_the_declared_arguments(method):
    module, _, function = method.engine.partition(":")
    engine = getattr(importlib.import_module(module), function)
    signature = inspect.signature(engine)
    for param in method.params:
        assert param.engine_arg in signature.parameters, f"{method.engine} has no argument {param.engine_arg}"
    assert "progress" in signature.parameters
    assert ("device" in signature.parameters) == method.takes_device
    if method.check:
        module, _, function = method.check.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
    names = [p.name for p in method.params]
    assert len(names) == len(set(names))
    assert method.child_suffix({})  # the default name's suffix fills in from the defaults


def test_a_name_shared_by_methods_means_the_same_thing():
    seen = {}
    for method in compression.METHODS:
        for param in method.params:
            shape = (param.kind, param.default, param.low, param.high, param.choices)
            assert seen.setdefault(param.name, shape) == shape, f"{param.name} is declared two ways"


def test_the_cli_offers_the_declared_methods():
    from berth.cli import _parser

    args = _parser().parse_args(["compress", "--version", "m:1", "--target", "cpu", "--method", "prune"])
    assert args.method == "prune"
    with pytest.raises(SystemExit):
        _parser().parse_args(["compress", "--version", "m:1", "--target", "cpu", "--method", "int4-magic"])


@pytest.mark.django_db
def test_the_version_page_shows_each_field_for_its_methods_only(digits_version, engineer):
    from django.test import Client

    client = Client()
    client.force_login(engineer)
    html = client.get("/models/digits/versions/1/").content.decode()
    assert 'data-show-when="compress-method" data-show-values="prune"><label for="id_compress-sparsity"' in html
    assert 'data-show-values="static_int8 dynamic_int8"><label class="check" for="id_compress-per_channel"' in html


@pytest.mark.django_db
def test_the_api_schema_lists_each_methods_params(viewer_api):
    schema = viewer_api.get("/api/schema/?format=json").json()
    params = schema["components"]["schemas"]["JobCreateRequest"]["properties"]["params"]
    titles = {branch.get("title") for branch in params["anyOf"]}
    assert {f"compress: {name}" for name in compression.NAMES} <= titles


def test_the_declared_students_are_the_ones_the_engine_builds():
    from jobs.engine.distill import STUDENTS

    assert set(compression.STUDENTS) == set(STUDENTS)
    assert compression.BY_NAME["distill"].param("student").choices == compression.STUDENTS
