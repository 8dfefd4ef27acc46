"""The architecture's import rules and size limits, checked on the source: each
layer imports only the ones below it, the core never touches slixmpp or I/O,
the glue modules never import each other in a circle, and no module or class
grows past what a maintainer reads at once."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "slixmpp_objenc"
CORE_ALLOWED_THIRD_PARTY = {"cryptography", "defusedxml", "pyhpke"}
CORE_FORBIDDEN_STDLIB = {"asyncio", "socket", "subprocess", "sqlite3", "threading", "ssl"}
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path)
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module:
                    names.add(node.module)
                continue
            base = package_parts[: len(package_parts) - (node.level - 1)]
            if node.module:
                names.add(".".join([*base, node.module]))
            else:  # from . import x
                names.update(".".join([*base, alias.name]) for alias in node.names)
    return names


def package_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m.split(".")[0] == "slixmpp_objenc"}


def test_core_imports_no_slixmpp_and_does_no_io() -> None:
    core_files = sorted((PACKAGE / "core").glob("*.py"))
    assert core_files
    for path in core_files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top != "slixmpp", f"{path.name} imports {module}"
            assert top not in CORE_FORBIDDEN_STDLIB, f"{path.name} imports {module}"
            if top not in {"__future__", "slixmpp_objenc"} and not _is_stdlib(top):
                assert top in CORE_ALLOWED_THIRD_PARTY, f"{path.name} imports {module}"


def test_core_imports_only_the_core() -> None:
    for path in sorted((PACKAGE / "core").glob("*.py")):
        for module in package_imports(path):
            assert module.startswith("slixmpp_objenc.core"), f"{path.name} imports {module}"


def test_store_imports_only_the_core_and_itself() -> None:
    for path in sorted((PACKAGE / "store").glob("*.py")):
        for module in package_imports(path):
            assert module.startswith(("slixmpp_objenc.core", "slixmpp_objenc.store")), (
                f"{path.name} imports {module}"
            )


def test_stanza_layer_imports_only_slixmpp_and_core_constants() -> None:
    for module in imported_modules(PACKAGE / "stanza.py"):
        top = module.split(".")[0]
        if top == "slixmpp_objenc":
            assert module == "slixmpp_objenc.core.constants", f"stanza.py imports {module}"
        else:
            assert top in {"slixmpp", "__future__"} or _is_stdlib(top), module


def test_glue_imports_no_plugin_and_no_cycle() -> None:
    glue = {module_name(p): p for p in sorted((PACKAGE / "glue").glob("*.py"))}
    assert len(glue) >= 6
    graph: dict[str, set[str]] = {}
    for name, path in glue.items():
        imports = package_imports(path)
        assert "slixmpp_objenc.plugin" not in imports, f"{name} imports the plugin"
        graph[name] = {m for m in imports if m in glue and m != name}
    # a topological sort succeeds only on an acyclic graph
    done: set[str] = set()
    while len(done) < len(graph):
        ready = [n for n in graph if n not in done and graph[n] <= done]
        assert ready, f"import cycle among {sorted(set(graph) - done)}"
        done.update(ready)


def test_no_module_or_class_too_long() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "testing" in path.relative_to(PACKAGE).parts:
            continue  # the throwaway Prosody harness is tooling, not the library
        source = path.read_text()
        lines = source.count("\n")
        assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= MAX_CLASS_LINES, f"{path.name}:{node.name}: {length} lines"


def test_untrusted_xml_is_only_parsed_through_defusedxml() -> None:
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        for forbidden in (r"\bET\.fromstring\(", r"\bET\.parse\(", r"\bET\.XML\(", "minidom"):
            assert not re.search(forbidden, source), f"{path} uses {forbidden}"


def _is_stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names
