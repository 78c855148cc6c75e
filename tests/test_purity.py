"""The pure layers (protocol/, rooms/) import nothing that does I/O, reads clocks or randomness."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("protocol", "rooms")
FORBIDDEN = frozenset(
    (
        "twisted", "autobahn", "sqlalchemy", "asyncio", "socket", "time", "random", "os", "secrets",
        "subprocess", "threading", "aiosqlite", "asyncpg", "urllib", "http", "requests",
    )
)  # fmt: skip


def _modules() -> List[Path]:
    """Every Python file under the pure packages, recursively."""
    return sorted(p for pkg in PURE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    """(line, dotted module name) for every absolute import anywhere in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def forbidden_imports(source: str, filename: str) -> List[str]:
    """Human-readable ``file:line imports name`` for each forbidden import in ``source``."""
    tree = ast.parse(source, filename=filename)
    return [
        f"{filename}:{line} imports {name}"
        for line, name in _imports(tree)
        if name.split(".", 1)[0] in FORBIDDEN
    ]


def test_reports_line_numbers() -> None:
    assert forbidden_imports("import json\n\nimport threading\n", "rooms/x.py") == ["rooms/x.py:3 imports threading"]


def test_pure_packages_exist() -> None:
    assert [p for p in _modules() if p.parent.name == "protocol"], "protocol/ has no modules?"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_pure(path: Path) -> None:
    problems = forbidden_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not problems, "pure layer imports I/O: " + "; ".join(problems)


@pytest.mark.parametrize(
    "source, name",
    [
        ("import os", "os"),
        ("import os.path", "os.path"),
        ("from time import monotonic", "time"),
        ("from twisted.internet import reactor", "twisted.internet"),
        ("import json, random", "random"),
        ("def f():\n    import socket\n", "socket"),
        ("\n\nimport subprocess", "subprocess"),
        ("try:\n    import asyncio\nexcept ImportError:\n    pass\n", "asyncio"),
        ("from urllib.parse import quote", "urllib.parse"),
        ("import http.client as h", "http.client"),
        ("__import__('secrets')", "secrets"),
    ],
)
def test_checker_catches(source: str, name: str) -> None:
    [problem] = forbidden_imports(source, "x.py")
    assert problem.startswith("x.py:") and problem.endswith(f" imports {name}")


@pytest.mark.parametrize(
    "source",
    ["import json", "from . import time", "from .os import x", "import timeit_like", "from hashlib import sha256",
     "import ostrich", "from protocol.time_utils import x", "import attr"],
)  # fmt: skip
def test_checker_allows(source: str) -> None:
    assert forbidden_imports(source, "x.py") == []
