"""The package is layered: no module imports, at its top or inside a function, a module that
imports it back (directly or through others), so each can be read knowing only those below."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nst_jax"


def imports_of(path: Path) -> set[str]:
    """The modules of ``path``'s package that it imports (relative or ``nst_jax.``
    imports, at its top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import a, b
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "nst_jax":  # from nst_jax import a
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nst_jax."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):  # import nst_jax.a
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("nst_jax."))
    modules = {p.stem for p in path.parent.glob("*.py")}
    return found & modules - {path.stem}


def layer_order(package: Path) -> list[str]:
    """The package's modules, each after every module it imports; an AssertionError names a cycle."""
    graph = {p.stem: imports_of(p) for p in package.glob("*.py") if p.stem != "__init__"}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise AssertionError(f"an import climbs back up: {' -> '.join(e.args[1])}") from None


def test_no_module_imports_one_that_imports_it_back():
    order = layer_order(PACKAGE)
    assert order.index("config") < order.index("schedule") < order.index("run") < order.index("batch") < \
        order.index("sweeps") < order.index("cli")


def test_the_check_sees_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("import os\n\ndef f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("from .c import g\n")
    (tmp_path / "c.py").write_text("from nst_jax.a import f\nimport nst_jax.d\nfrom nst_jax import e\n")
    for name in "de":
        (tmp_path / f"{name}.py").write_text("")
    assert imports_of(tmp_path / "a.py") == {"b"} and imports_of(tmp_path / "c.py") == {"a", "d", "e"}
    try:
        layer_order(tmp_path)
    except AssertionError as e:
        assert "climbs back up" in str(e)
    else:
        raise AssertionError("the cycle a -> b -> c -> a was not seen")
