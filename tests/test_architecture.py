"""The layers contract of pyproject.toml covers every module of the Django apps: a module that is
in no layer would be free to import anything (import-linter checks only what a layer names)."""

import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
APPS = ("dashboard", "common", "registry", "jobs", "monitoring")


def test_every_module_of_the_apps_is_in_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    listed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    graph = grimp.build_graph(*APPS)
    # a layer may name a whole package (common is one layer), which covers each of its modules
    unlisted = sorted(
        child for app in APPS for child in graph.find_children(app) if child not in listed and app not in listed
    )
    assert not unlisted, f"add these to a layer of [tool.importlinter] in pyproject.toml: {unlisted}"
