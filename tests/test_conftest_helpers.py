"""The test suite's own machinery: a missing tool skips on a developer's machine but fails under CI, and
every test module sits in exactly one layer (unit, integration, system) of tests/conftest.py's table."""

import sys

import pytest

from .conftest import LAYER_NAMES, LAYERS, REPO, import_or_skip, layer_of, skip_or_fail, under_ci

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MISSING = "tritbench_no_such_module_for_the_test"


@pytest.mark.parametrize("value", ["true", "True", "1", "yes"])
def test_under_ci_a_missing_tool_fails(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert under_ci()
    with pytest.raises(pytest.fail.Exception, match="objdump is not installed, and CI requires it"):
        skip_or_fail("objdump is not installed")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        import_or_skip(MISSING)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_elsewhere_a_missing_tool_skips(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not under_ci()
    with pytest.raises(pytest.skip.Exception, match="objdump is not installed") as skipped:
        skip_or_fail("objdump is not installed")
    assert not skipped.value.allow_module_level
    with pytest.raises(pytest.skip.Exception, match=MISSING) as skipped:
        import_or_skip(MISSING)
    assert skipped.value.allow_module_level  # usable at module level, like pytest.importorskip


@pytest.mark.parametrize("ci", [None, "true"])
def test_an_installed_module_is_returned(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert import_or_skip("json") is sys.modules["json"]
    assert import_or_skip("os.path") is sys.modules["os.path"]


def test_a_module_that_is_installed_but_broken_is_an_error_not_a_skip(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "tb_broken_module.py").write_text(f"import {MISSING}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match=MISSING):
        import_or_skip("tb_broken_module")


def test_every_test_module_has_a_layer():
    modules = {p.name for p in (REPO / "tests").glob("test_*.py")}
    assert modules - LAYERS.keys() == set(), "add the new test module to LAYERS in tests/conftest.py"
    assert LAYERS.keys() - modules == set(), "LAYERS names a test module that no longer exists"
    assert set(LAYERS.values()) == set(LAYER_NAMES)
    assert layer_of(REPO / "tests/test_not_listed.py") == "unit"


def test_the_layers_are_registered_markers():
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    registered = {m.split(":")[0].strip() for m in ini["markers"]}
    assert set(LAYER_NAMES) <= registered
    assert "--strict-markers" in ini["addopts"].split()


def test_each_collected_test_carries_its_modules_layer(request):
    assert request.node.get_closest_marker("unit") is not None  # this module is unit
    for item in request.session.items:  # whatever `-m` or `-k` selected
        layers = [name for name in LAYER_NAMES if item.get_closest_marker(name) is not None]
        assert layers == [layer_of(item.path)], item.nodeid
