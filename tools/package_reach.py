"""How many package lines a student reaches by following a chapter's calls.

A chapter calls ``module.function`` of ``unet_tutorial``; a curious student opens that
function, then whatever it calls inside the package, and so on. This script follows
those references statically (Python's ``ast``): a reached function or class counts
with all its lines (decorators, docstring and body; a class with all its methods), and
every name it mentions that is a top-level definition of the package is reached in
turn. Imports inside functions count too. Standard library and third-party code does
not count: the student reads Keras' documentation, not its source. Neither do modules
whose docstring starts with "Tooling" (downloads, the command line, synthetic data,
file writing): a reached tooling definition is listed in its own column and not followed.

    python tools/package_reach.py                      # one row per chapter
    python tools/package_reach.py --detail 04          # the definitions chapter 4 reaches
    python tools/package_reach.py --package /path/to/other/checkout/unet_tutorial

The table's last column is the module that holds most of the reached lines.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "unet_tutorial"


class Definition:
    """A top-level function, class or assignment of one module."""

    def __init__(self, module, name, node):
        self.module, self.name, self.node = module, name, node
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        self.lines = node.end_lineno - first + 1


def _relative_module(node, current):
    """Package module named by ``from X import ...`` (None when outside the package)."""
    if node.level:  # from .x import y / from . import y
        return node.module or ""
    if node.module == PACKAGE:
        return ""
    if node.module and node.module.startswith(PACKAGE + "."):
        return node.module[len(PACKAGE) + 1 :]
    return None


def _imports(tree, modules):
    """{local name: ("module", m) or ("def", m, name)} for the package imports in a tree."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _relative_module(node, None)
            if source is None:
                continue
            for alias in node.names:
                local = alias.asname or alias.name
                if source == "" and alias.name in modules:
                    names[local] = ("module", alias.name)
                elif source in modules:
                    names[local] = ("def", source, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    module = alias.name[len(PACKAGE) + 1 :]
                    if module in modules and alias.asname:
                        names[alias.asname] = ("module", module)
    return names


class Package:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.trees = {}
        for path in sorted(self.folder.glob("*.py")):
            self.trees[path.stem] = ast.parse(path.read_text(), filename=str(path))
        self.definitions = {}
        for module, tree in self.trees.items():
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    self.definitions[(module, node.name)] = Definition(module, node.name, node)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        if isinstance(target, ast.Name):
                            self.definitions[(module, target.id)] = Definition(module, target.id, node)
        self.imports = {module: _imports(tree, self.trees) for module, tree in self.trees.items()}
        self.tooling = {
            module
            for module, tree in self.trees.items()
            if (ast.get_docstring(tree) or "").startswith("Tooling")
        }
        self.total_lines = sum(len((self.folder / f"{m}.py").read_text().splitlines()) for m in self.trees)

    def resolve(self, module, name):
        """The definition a bare name of ``module`` refers to, following package imports."""
        if (module, name) in self.definitions:
            return (module, name)
        target = self.imports[module].get(name)
        if target and target[0] == "def":
            return self.resolve(target[1], target[2]) if target[1] in self.trees else None
        return None

    def references(self, key):
        """Definitions mentioned inside one definition."""
        module, _ = key
        node = self.definitions[key].node
        local_imports = _imports(node, self.trees)
        found = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                target = local_imports.get(sub.id)
                if target and target[0] == "def":
                    resolved = self.resolve(target[1], target[2])
                else:
                    resolved = self.resolve(module, sub.id)
                if resolved and resolved != key:
                    found.add(resolved)
            elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                target = local_imports.get(sub.value.id) or self.imports[module].get(sub.value.id)
                if target and target[0] == "module":
                    resolved = self.resolve(target[1], sub.attr)
                    if resolved:
                        found.add(resolved)
        return found

    def reach(self, entries):
        seen, todo = set(), list(entries)
        while todo:
            key = todo.pop()
            if key in seen or key not in self.definitions:
                continue
            seen.add(key)
            if key[0] not in self.tooling:
                todo.extend(self.references(key) - seen)
        return seen


def notebook_entries(path, package):
    """Package definitions a notebook's code cells use directly."""
    cells = json.loads(Path(path).read_text())["cells"]

    def without_magics(line):  # IPython's %pip and !ls become `pass`, indentation kept
        stripped = line.lstrip()
        return line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line

    def code_of(cell):  # code cells, and the folded solutions of tools/solutions.py
        text = "".join(cell["source"])
        if cell["cell_type"] == "code":
            return text
        return "\n".join(re.findall(r"<details>.*?```python\n(.*?)\n```", text, re.DOTALL))

    source = "\n".join("\n".join(map(without_magics, code_of(cell).splitlines())) for cell in cells)
    tree = ast.parse(source)
    imports = _imports(tree, package.trees)
    entries = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = imports.get(node.value.id)
            if target and target[0] == "module":
                resolved = package.resolve(target[1], node.attr)
                if resolved:
                    entries.add(resolved)
        elif isinstance(node, ast.Name):
            target = imports.get(node.id)
            if target and target[0] == "def":
                resolved = package.resolve(target[1], target[2])
                if resolved:
                    entries.add(resolved)
    return entries


def table(package, notebooks):
    rows = []
    for notebook in notebooks:
        reached = package.reach(notebook_entries(notebook, package))
        per_module, tooling = Counter(), 0
        for key in reached:
            if key[0] in package.tooling:
                tooling += package.definitions[key].lines
            else:
                per_module[key[0]] += package.definitions[key].lines
        top = per_module.most_common(1)
        rows.append(
            (
                Path(notebook).stem,
                sum(per_module.values()),
                tooling,
                len(reached),
                f"{top[0][0]} ({top[0][1]})" if top else "-",
                reached,
            )
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default=str(ROOT / PACKAGE), help="folder of the package")
    parser.add_argument("--notebooks", default=str(ROOT / "notebooks"), help="folder of the chapters")
    parser.add_argument("--detail", default=None, help="list the definitions reached by chapters starting so")
    parser.add_argument("--limit", type=int, default=None, help="exit 1 when a chapter reaches more lines")
    args = parser.parse_args(argv)
    package = Package(args.package)
    notebooks = sorted(Path(args.notebooks).glob("*.ipynb"))
    rows = table(package, notebooks)
    print(
        f"package: {len(package.trees)} modules, {package.total_lines} lines "
        f"(largest: {max(len((package.folder / f'{m}.py').read_text().splitlines()) for m in package.trees)})"
    )
    print(f"tooling modules (not followed): {', '.join(sorted(package.tooling)) or 'none'}")
    print("| chapter | lines reached | tooling lines called | definitions | most lines in |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, lines, tooling, count, top, _ in rows:
        print(f"| {name} | {lines} | {tooling} | {count} | {top} |")
    if args.detail:
        for name, _, _, _, _, reached in rows:
            if name.startswith(args.detail):
                for key in sorted(reached):
                    print(f"  {package.definitions[key].lines:5d}  {key[0]}.{key[1]}")
    worst = max(row[1] for row in rows)
    if args.limit and worst > args.limit:
        print(f"FAIL: a chapter reaches {worst} lines, more than --limit {args.limit}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
