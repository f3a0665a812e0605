"""The import rules between the project's packages, checked on the source text.

``operators`` (forward models) and ``priors`` (learned denoisers) are the bottom layer: neither
imports the other nor anything above. ``recon`` (samplers, classical methods, I/O) builds on both.
``pipelines`` (the jobs and the ``recon`` command) is the top layer: nothing in the project imports
it except itself (tests and benchmarks are outside the layers and not scanned).

Every ``.py`` file is parsed with :mod:`ast` and nothing is imported, so the check sees imports in
functions and ``if TYPE_CHECKING`` blocks as well. An import by a computed name
(``importlib.import_module(name)``) hides the dependency from this check and is refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each package may not import. ``data`` is the bundled-data package (``recon_data``).
FORBIDDEN: dict[str, frozenset[str]] = {
    "operators": frozenset({"priors", "recon", "pipelines"}),
    "priors": frozenset({"operators", "recon", "pipelines"}),
    "recon": frozenset({"pipelines"}),
    "pipelines": frozenset(),
    "data": frozenset({"pipelines"}),
}

DYNAMIC_IMPORTERS = ("import_module", "__import__")


def _module_name(path: Path) -> list[str]:
    """``recon/io/atomic.py`` -> ``["recon", "io", "atomic"]``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(source: str, module: list[str], is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module or problem)`` for every import anywhere in ``source``.

    Relative imports are resolved against ``module`` (its dotted name as parts; ``is_package``
    when the source is the package's ``__init__``). A dynamic import with a literal name counts as
    an import of that name; one with a computed name is returned as ``"<computed name>"``.
    """
    package = module if is_package else module[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            else:
                found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in DYNAMIC_IMPORTERS:
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
                else:
                    found.append((node.lineno, "<computed name>"))
    return found


def violations(path: Path) -> list[str]:
    """One line per import in ``path`` that breaks the rules of its package."""
    module = _module_name(path)
    forbidden = FORBIDDEN[module[0]]
    out = []
    for line, name in imports_of(path.read_text(), module, is_package=path.name == "__init__.py"):
        where = f"{path.relative_to(ROOT)}:{line}"
        if name == "<computed name>":
            out.append(f"{where}: imports a module by a computed name; import it plainly")
        elif name.split(".")[0] in forbidden:
            out.append(f"{where}: {module[0]} imports {name}")
    return out


def _sources() -> list[Path]:
    files = []
    for package in FORBIDDEN:
        files.extend(p for p in sorted((ROOT / package).rglob("*.py")) if "__pycache__" not in p.parts)
    return files


def test_every_package_is_scanned() -> None:
    for package in FORBIDDEN:
        assert (ROOT / package / "__init__.py").is_file(), package


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_layers(package: str) -> None:
    bad = [v for p in _sources() if _module_name(p)[0] == package for v in violations(p)]
    assert not bad, "import rule broken:\n" + "\n".join(bad)


def test_the_checker_sees_every_kind_of_import() -> None:
    source = (
        "import recon.api\n"
        "from pipelines import plots\n"
        "def f():\n"
        "    from pipelines.benchmark import run_benchmark\n"
        "    import importlib\n"
        "    importlib.import_module('pipelines.demo')\n"
        "    return __import__(name)\n"
        "from . import helper\n"
        "from ..io import atomic\n"
    )
    got = sorted(imports_of(source, ["recon", "samplers", "dds"]))
    assert got == [(1, "recon.api"), (2, "pipelines"), (4, "pipelines.benchmark"), (5, "importlib"),
                   (6, "pipelines.demo"), (7, "<computed name>"), (8, "recon.samplers"), (9, "recon.io")]
    assert imports_of("from . import x\n", ["priors"], is_package=True) == [(1, "priors")]
