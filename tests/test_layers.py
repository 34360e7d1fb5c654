"""The layering docs/architecture.md describes, held by the imports themselves.

Each package or top-level module of `automlops` belongs to a layer; a layer may import only the
layers the table allows (third-party libraries are not checked). Imports inside functions count:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "automlops"

# Layer of each top-level name under automlops (a module file or a package).
LAYER = {
    **dict.fromkeys(
        [
            "errors",
            "names",
            "keys",
            "config",
            "events",
            "routing",
            "ports",
            "manifests",
            "registry",
            "dispatch",
        ],
        "core",
    ),
    "tabular": "ml",
    "ml": "ml",
    "reports": "reports",
    "stages": "stages",
    "serving": "serving",
    "usecases": "usecases",
    "local": "adapters",
    "aws": "adapters",
    **dict.fromkeys(["cli", "command_line", "ui", "demo", "progress"], "front"),
    # `automlops aws …`: the operator CLI for a deployed stage, beside the adapters it drives.
    **dict.fromkeys(["aws.ops", "aws.__main__"], "front"),
}


def _layer_of(dotted: str) -> str | None:
    """The layer of a module named from below automlops (`aws.ops`, `stages.train`)."""
    parts = dotted.split(".")
    return LAYER.get(".".join(parts[:2])) or LAYER.get(parts[0])


# What each layer may import. `serving.wire` (the invocation client, no web framework) and
# `local.runlog` (runs exist only in the local run log) are the two named exceptions.
ALLOWED = {
    "core": {"core"},
    "ml": {"core", "ml"},
    "reports": {"core", "ml", "reports"},
    "serving": {"core", "ml", "serving"},
    "stages": {"core", "ml", "reports", "stages", "serving.wire"},
    # A use case may run a stage (the loop turn runs the monitor); no stage imports a use case.
    "usecases": {"core", "ml", "stages", "usecases", "local.runlog"},
    "adapters": {"core", "ml", "reports", "stages", "serving", "usecases", "adapters"},
    "front": {"core", "ml", "reports", "stages", "serving", "usecases", "adapters", "front"},
}

# Adapters never import each other's runtime: the local runtime needs no boto3, AWS no SQLite.
FORBIDDEN_PAIRS = {("local", "aws"), ("aws", "local")}


def _imports(path: Path) -> set[str]:
    """Dotted automlops module names a file imports (anywhere in it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "automlops":
                found.update(f"automlops.{alias.name}" for alias in node.names)
            elif node.module.startswith("automlops."):
                for alias in node.names:
                    # `from automlops.serving import wire` imports the module serving.wire.
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if _is_module(sub) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("automlops."))
    return found


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split(".")[1:])
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _allowed(layer: str, module: str) -> bool:
    parts = module.split(".")[1:]
    target = _layer_of(".".join(parts))
    if target is None:  # `from automlops.x import name`: name is not a module
        return True
    allowed = ALLOWED[layer]
    return target in allowed or ".".join(parts[:2]) in allowed


FILES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_a_module_imports_only_the_layers_below_it(path: Path) -> None:
    relative = path.relative_to(SRC).with_suffix("")
    top = relative.parts[0]
    layer = _layer_of(".".join(relative.parts))
    assert layer is not None, f"give {relative} a layer in LAYER"
    bad = sorted(
        module
        for module in _imports(path)
        if not _allowed(layer, module) or (top, module.split(".")[1]) in FORBIDDEN_PAIRS
    )
    assert not bad, f"{path.relative_to(SRC)} ({layer}) imports {bad}"


def test_the_table_names_every_top_level_module() -> None:
    tops = {
        p.stem
        for p in SRC.iterdir()
        if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert tops - {"__init__"} == {name for name in LAYER if "." not in name}


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    # The check itself can fail: a stage importing the local runtime is reported.
    stage = tmp_path / "bad.py"
    stage.write_text("from automlops.local.worker import Worker\n")
    assert not _allowed("stages", "automlops.local.worker")
    assert "automlops.local.worker" in _imports(stage)
