"""The architecture's import rules, checked on the source: each layer imports
only the ones below it, and the core never touches slixmpp or I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "slixmpp_objenc"
CORE_ALLOWED_THIRD_PARTY = {"cryptography", "defusedxml"}
CORE_FORBIDDEN_STDLIB = {"asyncio", "socket", "subprocess", "sqlite3", "threading", "ssl"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_slixmpp_and_does_no_io() -> None:
    core_files = sorted((PACKAGE / "core").glob("*.py"))
    assert core_files
    for path in core_files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top != "slixmpp", f"{path.name} imports {module}"
            assert top not in CORE_FORBIDDEN_STDLIB, f"{path.name} imports {module}"
            if top not in {"__future__"} and not _is_stdlib(top):
                assert top in CORE_ALLOWED_THIRD_PARTY, f"{path.name} imports {module}"


def test_stanza_layer_does_not_import_the_plugin() -> None:
    modules = imported_modules(PACKAGE / "stanza.py")
    assert not any("plugin" in m for m in modules)


def test_untrusted_xml_is_only_parsed_through_defusedxml() -> None:
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        for forbidden in (r"\bET\.fromstring\(", r"\bET\.parse\(", r"\bET\.XML\(", "minidom"):
            assert not re.search(forbidden, source), f"{path} uses {forbidden}"


def _is_stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names
