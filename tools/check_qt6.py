"""Fail on Qt5-only forms in Python code that runs inside QGIS, so that it keeps working on QGIS 4 (Qt6).

QGIS 4 runs on PyQt6, which drops forms that PyQt5 (QGIS 3) accepts. This
check finds them by reading the code (ast) and by asking the QGIS and Qt that
this Python imports what each dotted name is:

QT601  PyQt5, PyQt6 or sip imported directly: import them through ``qgis.PyQt``,
       which maps to the Qt that QGIS runs on.
QT602  ``exec_()`` / ``print_()`` (called or defined): PyQt6 has only ``exec()`` / ``print()``.
QT603  an enum value reached through the class that encloses its enum
       (``QgsProcessing.TypeRaster``, ``Qt.AlignLeft``, ``Qgis.Info``): PyQt6
       only has the scoped form (``Qt.AlignmentFlag.AlignLeft``). For enums
       QGIS moved into ``Qgis`` (3.36 and later: ``Qgis.ProcessingSourceType``)
       the old names are QGIS 3 aliases, and QGIS 3.22 lacks the new ones: use
       ``mobanet_qgis.compat``.
QT604  such a value reached through an object (``param.FlagOptional``,
       ``self.FlagAdvanced``, ``dialog.Accepted``): same rule, caught by name.
QT605  Qt5 API that Qt6 removed (``QRegExp``, ``QDesktopWidget``, ``qApp``,
       ``QVariant.Type``, unscoped ``QVariant.Int``).

Usage: ``python tools/check_qt6.py PATH...`` (files or folders); prints
``file:line:col: CODE message`` for each finding and exits 1 when there is
one. It needs the QGIS Python bindings (run it with the project's .venv).
"""

from __future__ import annotations

import argparse
import ast
import enum
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".venv", "build", "dist", "__pycache__", ".git", "out"}

# Modules whose names the check resolves to real objects. Our own plugin
# package is included so that names imported from mobanet_qgis.compat resolve.
RESOLVED_PACKAGES = ("qgis", "mobanet_qgis")
DIRECT_QT_PACKAGES = ("PyQt5", "PyQt6", "sip")
# Modules scanned for enum member names reachable through objects (QT604).
ENUM_INDEX_MODULES = ("qgis.core", "qgis.gui", "qgis.analysis", "qgis.PyQt.QtCore", "qgis.PyQt.QtGui",
                      "qgis.PyQt.QtWidgets")
RENAMED_METHODS = {"exec_": "exec", "print_": "print"}
REMOVED_IN_QT6 = {
    "QRegExp": "QRegExp is gone in Qt6: use QRegularExpression",
    "QRegExpValidator": "QRegExpValidator is gone in Qt6: use QRegularExpressionValidator",
    "QDesktopWidget": "QDesktopWidget is gone in Qt6: use QScreen (QGuiApplication.screens())",
    "qApp": "qApp is gone in PyQt6: use QgsApplication.instance()",
}
QVARIANT_TYPE_MESSAGE = ("QVariant.Type does not exist in PyQt6: QGIS 3.38 and later take QMetaType.Type for "
                         "field types; choose between the two in mobanet_qgis.compat")


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        try:
            shown = self.path.resolve().relative_to(Path.cwd())
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}:{self.col + 1}: {self.code} {self.message}"


# -- what the running QGIS / Qt say about a name ------------------------------------------

@cache
def enum_metatypes() -> tuple[type, ...]:
    """Types of enum types: sip's (PyQt5) and Python's (PyQt6, and QGIS's scoped enums)."""
    from qgis.PyQt.QtCore import Qt

    return (type(Qt.AlignmentFlag), enum.EnumMeta)


def is_enum_type(obj: Any) -> bool:
    return isinstance(obj, enum_metatypes())


def is_enum_member(obj: Any) -> bool:
    return not isinstance(obj, type) and is_enum_type(type(obj))


@cache
def held_enum_types(owner: type) -> dict[int, str]:
    """id of each enum type that `owner` holds (own or inherited) -> its attribute name (``SourceType``)."""
    held: dict[int, str] = {}
    for name in dir(owner):
        value = None if name.startswith("_") else getattr(owner, name, None)
        if value is not None and is_enum_type(value):
            held.setdefault(id(value), name)
    return held


def is_unscoped_access(owner: Any, value: Any) -> bool:
    """True for ``Owner.Value`` where Owner is the class that holds the value's enum (Qt5's short form)."""
    return (isinstance(owner, type) and not is_enum_type(owner) and is_enum_member(value)
            and id(type(value)) in held_enum_types(owner))


def scoped_spelling(owner_path: str, owner: type, attribute: str, value: Any) -> str:
    """How to write `owner_path.attribute` so that it works on QGIS 3.22, 3.44 and 4."""
    enum_type = type(value)
    if isinstance(value, enum.Enum):  # a Python enum knows its qualified name and its member's canonical name
        spelled = f"{enum_type.__qualname__}.{value.name}"
        if enum_type.__qualname__.split(".")[0] == owner.__name__:
            return spelled
        return f"{spelled} (QGIS >= 3.36 only: take it from mobanet_qgis.compat to run on 3.22 too)"
    moved = compat_spelling(enum_type, attribute)
    return moved or f"{owner_path}.{held_enum_types(owner)[id(enum_type)]}.{attribute}"


def compat_spelling(enum_type: type, attribute: str) -> str | None:
    """For a QGIS 3.22 enum that QGIS 3.36 moved into Qgis: its name in mobanet_qgis.compat."""
    import qgis.core

    from mobanet_qgis.compat import BEFORE_QGIS_3_36

    for qgis_name, (holder, enum_name, members) in BEFORE_QGIS_3_36.items():
        if getattr(getattr(qgis.core, holder, None), enum_name, None) is not enum_type:
            continue
        for member, old_member in members.items():
            if old_member == attribute:
                return f"{qgis_name}.{member} from mobanet_qgis.compat"
        return (f"Qgis.{qgis_name}.<member> on QGIS >= 3.36: add the member to BEFORE_QGIS_3_36 in "
                "mobanet_qgis/compat.py and take it from there")
    return None


@cache
def unscoped_members() -> dict[str, str]:
    """Enum value names that Qt5 lets code reach through their class (or its objects) -> a scoped spelling.

    Names that are also methods, classes or other attributes of some class are
    left out, so that ``x.<name>`` is a finding only where it can mean nothing
    but an enum value.
    """
    members: dict[str, str] = {}
    others: set[str] = set()
    seen: set[int] = set()

    def visit(cls: type) -> None:
        if id(cls) in seen:
            return
        seen.add(id(cls))
        for name, value in list(vars(cls).items()):
            if name.startswith("_") or is_enum_type(value):
                continue
            if is_enum_member(value):
                if is_unscoped_access(cls, value):
                    members.setdefault(name, scoped_spelling(cls.__name__, cls, name, value))
            else:
                others.add(name)
                if isinstance(value, type):
                    visit(value)

    for module_name in ENUM_INDEX_MODULES:
        module = importlib.import_module(module_name)
        for name in dir(module):
            value = getattr(module, name, None)
            if isinstance(value, type) and not is_enum_type(value):
                visit(value)
    return {name: spelled for name, spelled in members.items() if name not in others}


@cache
def enum_type_names() -> frozenset[str]:
    """Names of enum types nested in classes (``Flag``, ``SourceType``): ``x.Flag.FlagOptional`` is scoped."""
    names: set[str] = set()
    for module_name in ENUM_INDEX_MODULES:
        module = importlib.import_module(module_name)
        for name in dir(module):
            value = getattr(module, name, None)
            if isinstance(value, type) and not is_enum_type(value):
                names.update(n for n, v in vars(value).items() if is_enum_type(v))
    return frozenset(names)


# -- reading one file ---------------------------------------------------------------------

def dotted(node: ast.AST) -> list[str] | None:
    """['QgsProcessing', 'TypeRaster'] for ``QgsProcessing.TypeRaster``; None when the root is not a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class FileChecker(ast.NodeVisitor):
    def __init__(self, path: Path, tree: ast.Module):
        self.path = path
        self.findings: list[Finding] = []
        self.bindings: dict[str, str] = {}  # local name -> "module" or "module:attribute"
        self.called: set[int] = set()  # ids of the Attribute nodes that are called (methods, not enum values)
        self.uses_qt = False
        self._collect_imports(tree)

    def report(self, node: ast.AST, code: str, message: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, node.col_offset, code, message))

    # imports ------------------------------------------------------------------------------
    def _collect_imports(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    self.uses_qt |= top in ("qgis", *DIRECT_QT_PACKAGES)
                    if alias.asname:
                        self.bindings[alias.asname] = alias.name
                    else:
                        self.bindings[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                top = node.module.split(".")[0]
                self.uses_qt |= top in ("qgis", *DIRECT_QT_PACKAGES)
                for alias in node.names:
                    if alias.name != "*":
                        self.bindings[alias.asname or alias.name] = f"{node.module}:{alias.name}"

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            self._check_module(node, node.module)
            for alias in node.names:
                if node.module.split(".")[0] == "qgis" and alias.name == "sip":
                    continue
                if alias.name in REMOVED_IN_QT6:
                    self.report(node, "QT605", REMOVED_IN_QT6[alias.name])

    def _check_module(self, node: ast.AST, module: str) -> None:
        top = module.split(".")[0]
        if top in DIRECT_QT_PACKAGES:
            replacement = "qgis.PyQt" + module[len(top):] if top != "sip" else "qgis.PyQt.sip"
            self.report(node, "QT601", f"import {module} directly: import it from {replacement}")
        elif module.startswith("qgis._"):
            self.report(node, "QT601", f"{module} is private: import from qgis.{module[len('qgis._'):]}")

    # exec_ and friends ----------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name in RENAMED_METHODS:
            self.report(node, "QT602", f"def {node.name}: PyQt6 calls {RENAMED_METHODS[node.name]}()")
        self.generic_visit(node)

    # dotted names -------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute):
            self.called.add(id(node.func))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in RENAMED_METHODS:
            self.report(node, "QT602", f".{node.attr}() is gone in PyQt6: use .{RENAMED_METHODS[node.attr]}()")
        parts = dotted(node)
        if parts is not None and self.uses_qt:
            self._check_dotted(node, parts)
            return  # the parts of a dotted name were checked together
        if self.uses_qt:
            self._check_through_object(node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in REMOVED_IN_QT6 and self.bindings.get(node.id, "").split(":")[0].startswith("qgis"):
            self.report(node, "QT605", REMOVED_IN_QT6[node.id])

    def _resolve_root(self, name: str) -> Any:
        binding = self.bindings.get(name)
        if binding is None:
            return None
        module_name, _, attribute = binding.partition(":")
        if module_name.split(".")[0] not in RESOLVED_PACKAGES:
            return None
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a module this QGIS lacks: nothing to resolve
            return None
        return getattr(module, attribute, None) if attribute else module

    def _check_dotted(self, node: ast.Attribute, parts: list[str]) -> None:
        obj = self._resolve_root(parts[0])
        if obj is None:
            self._check_through_object(node)
            return
        path = parts[0]
        for attribute in parts[1:]:
            owner, obj = obj, getattr(obj, attribute, None)
            if obj is None:  # not in this QGIS (e.g. a newer API behind a version check): nothing to say
                return
            if getattr(owner, "__name__", "") == "QVariant" and (attribute == "Type" or is_unscoped_access(owner, obj)):
                self.report(node, "QT605", QVARIANT_TYPE_MESSAGE)
                return
            if is_unscoped_access(owner, obj):
                self.report(node, "QT603", f"{path}.{attribute} is an unscoped enum value (Qt5 only): write "
                                           f"{scoped_spelling(path, owner, attribute, obj)}")
                return
            path = f"{path}.{attribute}"

    def _check_through_object(self, node: ast.Attribute) -> None:
        """``something.FlagOptional`` where `something` is not an imported name: decide by the value's name."""
        if id(node) in self.called or node.attr not in unscoped_members():
            return
        if isinstance(node.value, ast.Attribute) and node.value.attr in enum_type_names():
            return  # param.Flag.FlagOptional: scoped
        if isinstance(node.value, ast.Name) and node.value.id in self.bindings:
            return  # an imported name that did not resolve to QGIS/Qt (e.g. our own constants)
        self.report(node, "QT604", f".{node.attr} is an enum value reached through an object (Qt5 only): write "
                                   f"it through its enum, e.g. {unscoped_members()[node.attr]}")


def check_file(path: Path) -> list[Finding]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    checker = FileChecker(path, tree)
    checker.visit(tree)
    return sorted(checker.findings, key=lambda f: (f.line, f.col, f.code))


def python_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*.py")):
                if not SKIPPED_DIRS.intersection(child.relative_to(path).parts):
                    yield child
        elif path.suffix == ".py":
            yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders to check")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # so that names imported from mobanet_qgis resolve
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    findings = [finding for path in python_files(args.paths) for finding in check_file(path)]
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} Qt5-only form(s): see the codes in tools/check_qt6.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
