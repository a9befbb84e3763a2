"""The house rules, checked: one import namespace, and imports that flow one way.

Layers, top to bottom (a module imports its own group and the groups its group lists, never upwards):
cli -> fleet -> execute / reports -> analysis -> plan / results / costmodel -> plugin / measure / machine / models
(analysis sits below execute and reports, which both summarise with it).
Backends import only the plugin API and the model matrices."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]

# group -> the groups it may import (besides itself)
BOTTOM = {"errors", "machine", "plugin", "measure", "models"}
ALLOWED = {
    "cli": {"execute", "fleet", "reports", "analysis", "plan", "results", "costmodel", *BOTTOM},
    "fleet": {"execute", "plan", "results", *BOTTOM},  # the agent runs a session on the device
    "execute": {"analysis", "plan", "results", *BOTTOM},
    "reports": {"analysis", "results", "costmodel", "plugin", "errors"},
    "analysis": {"plan", "results", "measure", "plugin", "errors"},
    "plan": {"plugin", "machine", "models", "errors", "measure"},
    "results": {"errors"},
    "costmodel": {"models", "plugin"},
    "measure": {"machine", "errors"},
    "plugin": {"errors"},
    "machine": set(),
    "errors": set(),
    "models": set(),
    "backends": {"plugin", "models.matrices"},
    "api": {"results"},  # tritbench/__init__: the lazy `tritbench.load_results`
}


def _modules() -> dict[str, Path]:
    """Every module of the installed namespace, by dotted name, from pyproject's package-dir mapping."""
    out = {}
    for pkg, folder in PACKAGE_DIR.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if not any(other != pkg and name.startswith(other + ".") or name == other
                       for other in PACKAGE_DIR if other.startswith(pkg + ".")):
                out[name] = path
    return out


def _group(module: str) -> str:
    parts = module.split(".")
    if parts == ["tritbench"]:
        return "api"
    return parts[1]


def _imports(path: Path, module: str) -> set[str]:
    """tritbench modules imported anywhere in the file, lazy imports inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                base = ".".join(pkg + [node.module])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("tritbench.")}


def _allowed(group: str, target: str) -> bool:
    tgroup = _group(target)
    if tgroup == group:
        return True
    rest = ".".join(target.split(".")[1:])
    return any(rest == a or rest.startswith(a + ".") or tgroup == a for a in ALLOWED[group])


def test_every_package_folder_is_installed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert found == listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_no_generic_top_level_names():
    assert all(pkg == "tritbench" or pkg.startswith("tritbench.") for pkg in PACKAGE_DIR)
    assert all(p.startswith("tritbench") for p in PYPROJECT["tool"]["setuptools"]["packages"])


def test_imports_flow_one_way():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        group = _group(name)
        for target in _imports(path, name):
            if target not in modules and target.rpartition(".")[0] not in modules:
                bad.append(f"{name} imports {target}, which does not exist")
            elif not _allowed(group, target):
                bad.append(f"{name} ({group}) imports {target} ({_group(target)})")
    assert not bad, "\n".join(sorted(bad))


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself: a plan module importing the runner is flagged."""
    f = tmp_path / "bad.py"
    f.write_text("def f():\n    from tritbench.execute.runner import Runner\n")
    assert _imports(f, "tritbench.plan.bad") == {"tritbench.execute.runner", "tritbench.execute.runner.Runner"}
    assert not _allowed("plan", "tritbench.execute.runner")
    assert _allowed("execute", "tritbench.plan.cases")
