"""The direction of imports between orc's rooms, read from the source with `ast`.

In the spirit of trio's `test_exports`: the tree's rules are checked statically, so a change
that breaks one fails here, naming the file, the line and the import, before anyone has to
notice that the pure core started doing I/O or that the HTTP layer reached into a driver.

Only `import` statements are read (also those under `if TYPE_CHECKING:`, which still say where a
module leans); `importlib.import_module` with a computed name is beyond a static check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the pure core must not touch: the I/O libraries of orc's stack and of the standard
# library, and the generic runtimes (the core is called by actors; it never runs as one).
IO_LIBRARIES = (
    "trio",
    "quart",
    "quart_trio",
    "hypercorn",
    "werkzeug",
    "docker",
    "psutil",
    "httpx",
    "socket",
    "subprocess",
    "threading",
    "asyncio",
    "os",
    "pathlib",
    "shutil",
    "logging",
    "time",
    "random",
    "io",
    "tempfile",
    "signal",
    "select",
    "selectors",
    "multiprocessing",
    "concurrent",
    "secrets",
    "sqlite3",
    "urllib",
    "ssl",
    "eventlog",
    "actors",
)

# The packages inside orc/, each a room with its own rule below. A new room must be added
# here, and given a rule, before it can hold code.
ROOMS = frozenset({"core", "shell", "nodes", "drivers", "http", "replay", "cmd", "ui", "ha"})
TOP_LEVEL_MODULES_AT_MOST = 5  # package entry points, configuration, clock


class Rule(NamedTuple):
    """Files under `room` (a folder or a file, relative to the repository) import nothing
    under `forbidden` (module names; a name forbids its submodules too) except what is under
    `allowed`. Files under `exempt` are not bound by it."""

    room: str
    forbidden: tuple[str, ...]
    why: str
    allowed: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()


RULES = (
    Rule(
        "orc/core",
        ("orc", *IO_LIBRARIES),
        "orc/core is pure: nothing of orc outside orc/core, no I/O library",
        allowed=("orc.core",),
    ),
    Rule("actors", ("orc",), "actors/ is a generic runtime and knows nothing of orc"),
    Rule("eventlog", ("orc",), "eventlog/ is a generic log and knows nothing of orc"),
    Rule("orc/http", ("orc.drivers",), "orc/http reaches drivers only through a worker"),
    Rule(
        "orc/drivers",
        ("orc",),
        "orc/drivers stands on orc/core alone",
        allowed=("orc.core", "orc.drivers"),
    ),
    Rule(
        "orc/nodes",
        ("orc.shell", "orc.http", "orc.cmd"),
        "orc/nodes sits below the shell, the HTTP apps and the command",
    ),
    Rule(
        "orc/shell", ("orc.http", "orc.cmd"), "orc/shell sits below the HTTP apps and the command"
    ),
    Rule(
        "orc/ha",
        ("orc.shell", "orc.http", "orc.cmd", "orc.nodes", "orc.drivers", "orc.replay", "orc.ui"),
        "orc/ha keeps the log and the election in etcd on orc/core and eventlog, below the shell",
    ),
    Rule(
        "orc/replay",
        ("orc.shell", "orc.http", "orc.cmd", "orc.nodes", "orc.drivers"),
        "orc/replay reads a log with the core alone",
    ),
    Rule(
        "orc",
        ("orc.cmd",),
        "orc/cmd is the top: only it and orc/__main__.py import it",
        exempt=("orc/cmd", "orc/__main__.py"),
    ),
    Rule(
        "orc/ui",
        ("orc", "actors", "eventlog"),
        "orc/ui is static files and their server: the page knows orc only through its HTTP API",
        allowed=("orc.ui",),
    ),
    Rule("tests/core", ("trio", "pytest_trio"), "tests/core are plain functions, run without trio"),
)


class Violation(NamedTuple):
    path: str
    line: int
    module: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}: {self.why}"


def module_name(path: str) -> str:
    """`orc/core/decide.py` -> `orc.core.decide`; a package's `__init__.py` is the package."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, path: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in `source`, the file at `path`.

    `from a.b import c` yields `a.b.c`, since `c` may be a module (`from orc import cmd`);
    relative imports are resolved against `path`'s package.
    """
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package.pop()
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                yield node.lineno, module if alias.name == "*" else f"{module}.{alias.name}"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _in(path: str, rooms: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in rooms)


def violations(source: str, path: str, rules: tuple[Rule, ...] = RULES) -> list[Violation]:
    """The imports in `source` (the file at `path`, relative to the repository) that break a
    rule binding that file."""
    binding = [r for r in rules if _in(path, (r.room,)) and not _in(path, r.exempt)]
    found = []
    for line, module in imported(source, path):
        for rule in binding:
            if _under(module, rule.forbidden) and not _under(module, rule.allowed):
                found.append(Violation(path, line, module, rule.why))
    return sorted(found)  # by line: `ast.walk` reaches nested imports after the top level


def sources(root: Path, room: str) -> list[str]:
    """The Python files of `room` under `root`, as paths relative to `root`."""
    where = root / room
    files = [where] if where.is_file() else sorted(where.rglob("*.py"))
    return [f.relative_to(root).as_posix() for f in files]


def tree_violations(root: Path, rule: Rule) -> list[Violation]:
    return [
        v
        for path in sources(root, rule.room)
        for v in violations((root / path).read_text(), path, (rule,))
    ]


@pytest.mark.parametrize("rule", RULES, ids=[r.room for r in RULES])
def test_imports_follow_the_layers(rule: Rule) -> None:
    assert sources(ROOT, rule.room), f"no Python files in {rule.room}: moved without its rule?"
    found = tree_violations(ROOT, rule)
    assert not found, "imports against the layers:\n" + "\n".join(map(str, found))


# Fixtures that would mean a pure test is not one: it reads the log, or runs under trio.
IMPURE_FIXTURES = frozenset({"caplog", "nursery", "autojump_clock", "mock_clock", "capsys"})


def impure_tests(source: str, path: str) -> list[str]:
    """The tests in `source` that are async or take a fixture of logging or of trio."""
    found = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            fixtures = {a.arg for a in node.args.args} & IMPURE_FIXTURES
            if isinstance(node, ast.AsyncFunctionDef):
                found.append(f"{path}:{node.lineno}: {node.name} is async (trio)")
            if fixtures:
                found.append(
                    f"{path}:{node.lineno}: {node.name} takes {', '.join(sorted(fixtures))}"
                )
    return found


def test_core_tests_are_plain_functions() -> None:
    """Decisions hand back notes instead of logging, so their tests read values, not logs."""
    found = [
        line
        for path in sources(ROOT, "tests/core")
        for line in impure_tests((ROOT / path).read_text(), path)
    ]
    assert not found, "tests/core must run without trio or captured logs:\n" + "\n".join(found)


def test_the_purity_check_of_tests_finds_async_tests_and_log_fixtures() -> None:
    source = (
        "async def test_a(): pass\n"
        "def test_b(caplog): pass\n"
        "def test_c(tmp_path): pass\n"
        "def helper(caplog): pass\n"
    )
    assert impure_tests(source, "tests/core/x.py") == [
        "tests/core/x.py:1: test_a is async (trio)",
        "tests/core/x.py:2: test_b takes caplog",
    ]


def test_every_package_in_orc_is_a_known_room() -> None:
    packages = {p.parent.name for p in (ROOT / "orc").glob("*/__init__.py")}
    loose = {p.parent.name for p in (ROOT / "orc").glob("*/*.py")} - packages
    assert not loose, f"folders in orc/ with modules but no __init__.py: {sorted(loose)}"
    unknown = packages - ROOMS
    assert not unknown, (
        f"orc/{sorted(unknown)[0]} is not a room tests/layout/test_imports.py knows:"
        " add it to ROOMS and give it a rule for what it may import"
    )


def test_few_modules_at_the_top_of_orc() -> None:
    top = sorted(p.name for p in (ROOT / "orc").glob("*.py"))
    assert len(top) <= TOP_LEVEL_MODULES_AT_MOST, (
        f"{len(top)} modules at the top of orc/ ({', '.join(top)}): each belongs in a room"
    )


# -- the checker itself ---------------------------------------------------------------------------


def test_the_checker_names_file_line_and_import_of_a_planted_violation() -> None:
    source = "import msgspec\n\nimport trio\nfrom orc.shell.manager import Manager\n"
    found = violations(source, "orc/core/planted.py")
    assert [str(v) for v in found] == [
        "orc/core/planted.py:3: imports trio: orc/core is pure:"
        " nothing of orc outside orc/core, no I/O library",
        "orc/core/planted.py:4: imports orc.shell.manager.Manager: orc/core is pure:"
        " nothing of orc outside orc/core, no I/O library",
    ]


def test_the_checker_finds_a_violation_planted_in_a_tree(tmp_path: Path) -> None:
    (tmp_path / "orc" / "core").mkdir(parents=True)
    (tmp_path / "orc" / "core" / "__init__.py").write_text("")
    (tmp_path / "orc" / "core" / "clean.py").write_text("from orc.core import model\n")
    (tmp_path / "orc" / "core" / "bad.py").write_text('"""Doc."""\n\nimport logging\n')
    [core] = [r for r in RULES if r.room == "orc/core"]
    assert [str(v).split(": ")[:2] for v in tree_violations(tmp_path, core)] == [
        ["orc/core/bad.py:3", "imports logging"]
    ]


def test_the_checker_resolves_relative_and_from_package_imports() -> None:
    assert [v.module for v in violations("from ..shell import manager\n", "orc/core/x.py")] == [
        "orc.shell.manager"
    ]
    assert [v.module for v in violations("from . import events\n", "orc/core/x.py")] == []
    assert [v.module for v in violations("from . import worker\n", "orc/cmd/__init__.py")] == []
    assert [v.line for v in violations("x = 1\nfrom orc import cmd\n", "orc/http/app.py")] == [2]
    assert violations("import orc.cmd.main\n", "orc/__main__.py") == []
    assert violations("import os.path\n", "orc/shell/x.py") == []
    assert [v.module for v in violations("import os.path\n", "orc/core/x.py")] == ["os.path"]


def test_the_checker_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from orc.drivers.docker import DockerDriver\n"
        "def f():\n"
        "    import orc.drivers\n"
    )
    assert [v.line for v in violations(source, "orc/http/x.py")] == [3, 5]


def test_allowed_names_inside_a_forbidden_one_pass() -> None:
    assert violations("from orc.core.model import Task\n", "orc/drivers/x.py") == []
    assert violations("from orc.drivers.base import Driver\n", "orc/drivers/x.py") == []
    assert [v.module for v in violations("from orc import config\n", "orc/drivers/x.py")] == [
        "orc.config"
    ]
    # a prefix is a module name, not a string prefix: `orchard` is not `orc`
    assert violations("import orchard\n", "actors/x.py") == []
