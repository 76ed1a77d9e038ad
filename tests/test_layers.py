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
