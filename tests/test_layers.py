"""Layers import downward only: ``commands/`` (and ``cli``) on top, and no module below them
imports either, at module level or inside a function (issue 23, item 3)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "synthface_ray"
TOP = ("synthface_ray.commands", "synthface_ray.cli")


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def test_nothing_below_commands_imports_commands_or_cli():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.startswith(TOP):
            continue
        offenders += [f"{rel}.py:{line} imports {mod}" for line, mod in _imports(path)
                      if mod == "synthface_ray.cli" or mod.startswith(TOP[0]) or mod == "synthface_ray.commands"]
    assert not offenders, "\n".join(offenders)


def test_models_do_not_import_the_sampler():
    """The parameterisation lives in models/ and serves training and sampling: models/ imports nothing
    from sampling/ (the import cycle objectives <-> denoisers is gone; issue 23, item 1)."""
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {mod}"
                 for path in sorted((PACKAGE / "models").rglob("*.py"))
                 for line, mod in _imports(path) if mod.startswith("synthface_ray.sampling")]
    assert not offenders, "\n".join(offenders)


#: the package's layers, bottom first (docs/ARCHITECTURE.md): a module imports only from layers below
#: its own (and from its own subpackage)
LAYERS = [("config",), ("storage", "limits", "progress", "ops"), ("errors",), ("data",), ("models",),
          ("sampling",), ("mining",), ("evaluate",), ("generate", "train"), ("benchmark", "tune"),
          ("commands",), ("cli",)]


def _part(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if parts[0] == "synthface_ray" and len(parts) > 1 else None


def test_every_import_goes_down_the_layers():
    level = {name: i for i, group in enumerate(LAYERS) for name in group}
    found = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert found == set(level), f"place every part of the package in LAYERS: {sorted(found ^ set(level))}"
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for line, mod in _imports(path):
            target = _part(mod)
            if target in level and target != own and level[target] >= level[own]:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {mod} ({target})")
    assert not offenders, "\n".join(sorted(set(offenders)))
