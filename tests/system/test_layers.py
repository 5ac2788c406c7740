"""The layers keep to their seams: imports point down, no private name is reached across modules,
the public faces are what ``__all__`` says, and every entry point shows the same commands (issue 10)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("journal", "recovery")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py"))


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines itself: functions, classes, attributes it assigns, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


#: Public API that is spelt with an underscore (namedtuple's, so as not to clash with field names).
_PUBLIC_UNDERSCORED = frozenset({"_make", "_replace", "_asdict", "_fields"})


def test_no_private_name_is_reached_across_modules() -> None:
    """``x._name`` only where this module defines ``_name`` (its own class or helper)."""
    found = []
    for path in (p for pkg in PACKAGES for p in _modules(pkg)):
        tree = ast.parse(path.read_text())
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr not in own and node.attr not in _PUBLIC_UNDERSCORED:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and any(a.name.startswith("_") and not a.name.startswith("__") for a in node.names)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports a private name from {node.module}")
    assert not found, "private names reached across modules:\n" + "\n".join(found)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.add(node.module)
    return out


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("journal/log", ("journal.state", "journal.fleet", "journal.cli", "recovery", "ccxt", "nats")),
        ("journal/state", ("journal.fleet", "journal.cli", "recovery", "ccxt", "nats")),
        ("journal/fleet", ("journal.cli", "recovery", "ccxt")),
        ("journal/cli", ("recovery", "ccxt", "nats")),
        ("recovery/sim", ("recovery.orders", "recovery.reconcile", "recovery.manager", "recovery.errors", "journal")),
    ],
)
def test_imports_point_down(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def _fresh_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_import_journal_loads_neither_ccxt_nor_recovery_nor_http_server() -> None:
    loaded = _fresh_modules("import journal")
    assert not {m for m in loaded if m.split(".")[0] in ("ccxt", "recovery", "nats")}
    assert "http.server" not in loaded
    # the fleet extra is optional: the command line loads nats only when a fleet command runs
    assert not {m for m in _fresh_modules("import journal.cli.app") if m.split(".")[0] == "nats"}


def test_import_recovery_does_not_load_the_simulator_until_used() -> None:
    loaded = _fresh_modules("import recovery")
    assert not {m for m in loaded if m.startswith("recovery.sim")}
    assert "http.server" not in loaded
    used = _fresh_modules("import recovery\nrecovery.Simulator")
    assert "recovery.sim.server" in used


@pytest.mark.parametrize(
    "module", ["journal", "journal.log", "journal.state", "journal.fleet", "journal.cli", "recovery", "recovery.sim"]
)
def test_public_faces_are_sorted_and_complete(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n)) or names == sorted(names), module
    for name in names:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def _commands(argv: list[str]) -> list[str]:
    out = subprocess.run(argv + ["--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    start = out.index("COMMAND\n") + len("COMMAND\n")
    return [line.split()[0] for line in out[start:].splitlines() if line.startswith("    ") and line.split()
            and not line.startswith("      ")]  # fmt: skip


def test_every_entry_point_shows_the_same_commands() -> None:
    script = Path(sys.executable).with_name("journal")
    seen = [
        _commands([sys.executable, "-m", "journal"]),
        _commands([sys.executable, "-m", "journal.cli"]),
        _commands([str(script)]),
    ]
    assert seen[0] == seen[1] == seen[2]
    assert {"dump", "show", "pending", "verify", "resolve", "backup", "stats", "snapshots", "state", "diff",
            "correct", "compact"} <= set(seen[0])  # fmt: skip
