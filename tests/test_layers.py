"""The dependency direction of the layers (house style): the pure core imports no I/O library,
only web/ imports Starlette, every module opens with its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "iiifsrv"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_pure_layer_imports_no_io_libraries() -> None:
    pure = list((PACKAGE / "iiif").rglob("*.py")) + [
        PACKAGE / "conditional.py",
        PACKAGE / "errors.py",
    ]
    forbidden = ("pyvips", "numpy", "tifffile", "starlette", "anyio", "os", "pathlib", "sqlite3")
    for path in pure:
        for name in imports_of(path):
            assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_only_web_imports_starlette() -> None:
    for path in modules():
        if "web" in path.relative_to(PACKAGE).parts:
            continue
        for name in imports_of(path):
            assert not name.startswith("starlette"), f"{path} imports {name}"


def test_every_module_has_a_docstring() -> None:
    for path in modules():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.strip()) > 10, path


def test_no_module_shadows_the_standard_library() -> None:
    shadowing = {"codecs", "http", "types", "io", "json", "logging", "typing", "email"}
    for path in modules():
        assert path.stem not in shadowing, path
