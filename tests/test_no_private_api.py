"""No module under agent/, controller/ or shared/ uses a private attribute of a third-party library.

A private name (``_name``, not ``__dunder__``) of typer, click, gpiozero, paho, SQLAlchemy,
Starlette... can change in any release; using one is what pinned typer below 0.30. The
checker reads each module's syntax tree and reports, as ``path:line: what``:

- an import of a private module or name of a third-party package (``from typer._click ...``);
- a private attribute reached from a third-party import (``Device._default_pin_factory``);
- in a class with a third-party base: a private method it overrides (one the base has),
  and a private attribute of ``self`` or ``super()`` that the class does not make itself;
- elsewhere, ``x._name`` where no module of the project defines ``_name``: it can only be
  someone else's (``self._client._packet_queue``).

Only the uses in :data:`ALLOWED` pass, each with the reason it is there.
"""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO

PROJECT = ("agent", "controller", "shared")

#: (module path, private name): the only third-party privates the project may use.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # paho's gated fast path for the collector's stream (controller/transport.py's
        # docstring): only on the paho release it was written against and only when the
        # client has these hooks (fast_path_available()); else the public API, tested.
        ("controller/transport.py", "_sock_recv"),
        ("controller/transport.py", "_sock"),
        ("controller/transport.py", "_packet_queue"),
        # Subclassing gpiozero's mock pins: the hook on every change of a pin's state,
        # which gpiozero's own mock pins override (MockConnectedPin, MockChargingPin).
        ("agent/hardware.py", "_change_state"),
    }
)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_third_party(dotted: str) -> bool:
    top = dotted.split(".")[0]
    return bool(top) and top not in PROJECT and top not in sys.stdlib_module_names


@dataclass(frozen=True)
class Use:
    """One use of a third-party private name."""

    path: str
    line: int
    name: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Each name an import binds (anywhere in the module) -> the dotted thing it stands for."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def defined_names(tree: ast.AST) -> set[str]:
    """Every name the code defines: functions, classes, assignment targets, attributes set."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def chain_root(node: ast.expr) -> tuple[ast.expr, list[str]]:
    """``a.b.c`` -> (``a``, ["b", "c"])."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return node, attrs[::-1]


def resolve(dotted: str) -> Any:
    """The object a dotted name stands for, importing its module; None if that fails."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                value = getattr(value, part)
        except AttributeError:
            return None
        return value
    return None


def third_party_bases(cls: ast.ClassDef, imports: dict[str, str]) -> list[Any]:
    """The classes ``cls`` derives from directly that come from a third-party package."""
    bases = []
    for base in cls.bases:
        root, attrs = chain_root(base)
        if isinstance(root, ast.Name) and root.id in imports:
            dotted = ".".join([imports[root.id], *attrs])
            if is_third_party(dotted):
                found = resolve(dotted)
                bases.append(found if found is not None else object)
    return bases


def is_self_or_super(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def private_uses(source: str, path: str, project_names: set[str]) -> Iterator[Use]:
    """The third-party private names ``source`` uses (``path`` only labels them)."""
    tree = ast.parse(source, filename=path)
    imports = imported_names(tree)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            for module in filter(None, modules):
                parts = module.split(".")
                if is_third_party(module) and any(is_private(p) for p in parts):
                    name = next(p for p in parts if is_private(p))
                    yield Use(path, node.lineno, name, f"imports private module {module}")
            if isinstance(node, ast.ImportFrom) and node.module and is_third_party(node.module):
                for alias in node.names:
                    if is_private(alias.name):
                        yield Use(
                            path,
                            node.lineno,
                            alias.name,
                            f"imports private {alias.name} from {node.module}",
                        )

    # Classes built on a third-party class: what they override and what they reach into.
    inside_subclass: set[int] = set()
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        bases = third_party_bases(cls, imports)
        if not bases:
            continue
        own = defined_names(cls) - {a.arg for a in ast.walk(cls) if isinstance(a, ast.arg)}
        for item in cls.body:
            if (
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and is_private(item.name)
                and any(hasattr(base, item.name) for base in bases)
            ):
                yield Use(path, item.lineno, item.name, f"{cls.name} overrides private {item.name}")
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and is_self_or_super(node.value):
                inside_subclass.add(id(node))
                if is_private(node.attr) and (
                    isinstance(node.value, ast.Call) or node.attr not in own
                ):
                    yield Use(
                        path,
                        node.lineno,
                        node.attr,
                        f"{cls.name} uses its third-party base's private {node.attr}",
                    )

    # A chain (``a.b._c.d``) is judged once, from its outermost attribute.
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inside_subclass:
            continue
        root, attrs = chain_root(node)
        if isinstance(root, ast.Name) and root.id in imports:
            if not is_third_party(imports[root.id]) or id(node) in inner:
                continue
            dotted = ".".join([imports[root.id], *attrs])
            if any(is_private(a) for a in attrs) and isinstance(node.ctx, ast.Load):
                name = next(a for a in attrs if is_private(a))
                yield Use(path, node.lineno, name, f"uses private {dotted}")
        elif (
            is_private(node.attr)
            and node.attr not in project_names
            and not is_self_or_super(node.value)
        ):
            yield Use(
                path,
                node.lineno,
                node.attr,
                f"uses {node.attr}, which no module of the project defines",
            )


def project_sources(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for package in PROJECT
        for p in sorted((root / package).rglob("*.py"))
    }


def uses_in(sources: dict[str, str]) -> list[Use]:
    names: set[str] = set()
    for source in sources.values():
        names |= defined_names(ast.parse(source))
    return [use for path, text in sources.items() for use in private_uses(text, path, names)]


def check(sources: dict[str, str]) -> list[str]:
    """Every use not in :data:`ALLOWED`."""
    return [str(u) for u in uses_in(sources) if (u.path, u.name) not in ALLOWED]


# ---------------------------------------------------------------- the project


def test_no_module_uses_a_private_attribute_of_a_third_party_library() -> None:
    assert check(project_sources(REPO)) == []


def test_every_allowed_private_is_still_used() -> None:
    """An allow-list entry whose use went away must go too, or it would hide a new one."""
    used = {(u.path, u.name) for u in uses_in(project_sources(REPO))}
    assert sorted(ALLOWED - used) == []


# ---------------------------------------------------------------- the checker


def found(source: str) -> list[str]:
    return check({"agent/example.py": textwrap.dedent(source)})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "from typer._click.exceptions import NoArgsIsHelpError, UsageError\n",
            "imports private module typer._click.exceptions",
            id="typer's private click",
        ),
        pytest.param(
            "import typer\nerror = typer._click.exceptions.UsageError\n",
            "uses private typer._click.exceptions.UsageError",
            id="through the module",
        ),
        pytest.param(
            """
            from typer.core import TyperArgument

            class NamedArgument(TyperArgument):
                def _usage_display_name(self) -> str:
                    return "MOUSE"
            """,
            "NamedArgument overrides private _usage_display_name",
            id="an overridden private typer method",
        ),
        pytest.param(
            """
            from gpiozero import Device

            def factory():
                return Device._default_pin_factory()
            """,
            "uses private gpiozero.Device._default_pin_factory",
            id="gpiozero's private default factory",
        ),
        pytest.param(
            """
            def factory():
                from gpiozero.pins.mock import MockPWMPin

                class Watched(MockPWMPin):
                    def on(self):
                        return self._function == "output"
            """,
            "Watched uses its third-party base's private _function",
            id="a mock pin's private state",
        ),
        pytest.param(
            """
            class Link:
                def ack(self, mids):
                    self._client._packet_queue(4, b"", 0, 0)
            """,
            "uses _packet_queue, which no module of the project defines",
            id="a private of an object held",
        ),
    ],
)
def test_the_checker_finds_todays_kinds_of_private_use(source: str, expected: str) -> None:
    assert [line.split(": ", 1)[1] for line in found(source)] == [expected]


def test_the_checker_leaves_the_project_s_own_privates_and_public_api_alone() -> None:
    assert (
        found(
            """
            import typer
            from typer.core import TyperArgument

            class NamedArgument(TyperArgument):
                def __init__(self) -> None:
                    self._shown = "MOUSE"

                def _own_helper(self) -> str:
                    return self._shown

                def get_usage_pieces(self, ctx):
                    return [self._own_helper(), typer.BadParameter.__mro__[1].__name__]

            class Journal:
                def _prepare(self) -> None: ...

            def open_journal(journal: Journal) -> None:
                journal._prepare()
            """
        )
        == []
    )
