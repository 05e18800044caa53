"""The package's architecture, read from its imports with ``ast``: ``python scripts/package_graph.py``.

    python scripts/package_graph.py            # docs/package.md: the picture and one line per module
    python scripts/package_graph.py --check    # the design's numbers; exit 1 where a target is missed

The numbers: import cycles between modules, imports of another module's ``_private`` name (in
gpt/, scripts/ and bench/), the longest function, the most parameters, the core's lines, and
imports made inside functions without a comment that says why.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gpt"
FOLDERS = ["cli", "experiments", "teaching", "lora", "io", "runtime"]
CORE = {"model", "tokenizer", "data", "train", "train_config", "loss", "classifier", "finetune", "finetune_config", "sms", "metrics",
        "errors"}
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 10
MAX_CORE_LINES = 3000


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, modules: set[str]):
    """Yield (target module, names, lineno, inside a function) for each import of a gpt module."""
    module = module_name(path)
    tree = ast.parse(path.read_text())
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve(module, node, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    yield sub, [], node.lineno, id(node) in inside
                elif target in modules:
                    yield target, [alias.name], node.lineno, id(node) in inside
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, [], node.lineno, id(node) in inside


def graph(files: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in files}
    for m, p in files.items():
        for target, _, _, _ in imports_of(p, set(files)):
            if target != m and not (m == "gpt" and target == "gpt.deprecated"):
                edges[m].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def private_imports(files: dict[str, Path]) -> list[str]:
    found = []
    modules = set(files)
    sources = list(files.values()) + sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    for p in sources:
        for target, names, line, _ in imports_of(p, modules):
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    found.append(f"{p.relative_to(ROOT)}:{line} imports {target}.{n}")
    return found


def functions(files: dict[str, Path]):
    """Yield (lines, parameters, where) for every function of the package."""
    for p in files.values():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                params += [x.arg for x in (a.vararg, a.kwarg) if x]
                yield node.end_lineno - node.lineno + 1, len(params), f"{p.relative_to(ROOT)}:{node.lineno} {node.name}"


def unexplained_lazy_imports(files: dict[str, Path]) -> list[str]:
    """Imports inside functions whose line (or the line above) carries no comment saying why."""
    found = []
    for p in files.values():
        lines = p.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here = lines[node.lineno - 1] + lines[node.lineno - 2]
                    if "#" not in here:
                        found.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    return sorted(set(found))


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FOLDERS:
        return parts[1]
    return "core"


def core_lines(files: dict[str, Path]) -> int:
    return sum(len(p.read_text().splitlines()) for m, p in files.items()
               if (m.split(".")[-1] in CORE and layer_of(m) == "core") or layer_of(m) == "lora" and not m.endswith("__init__"))


def numbers(files: dict[str, Path]) -> dict:
    fns = sorted(functions(files))
    return {
        "modules": len(files),
        "import cycles": cycles(graph(files)),
        "private cross-imports": private_imports(files),
        "longest function": fns[-1][0::2],
        "most parameters": max((n, where) for _, n, where in fns),
        "core lines (core modules + gpt/lora)": core_lines(files),
        "imports inside functions without a comment": unexplained_lazy_imports(files),
    }


def _node(module: str) -> str:
    return module.removeprefix("gpt.").replace(".", "_") or "gpt"


def folder_mermaid(files: dict[str, Path]) -> str:
    """The layers: one box per folder, an arrow where a module of one imports a module of the other (with how many)."""
    counts: dict[tuple[str, str], int] = {}
    for m, targets in graph(files).items():
        for t in targets:
            a, b = layer_of(m), layer_of(t)
            if a != b and m not in ("gpt", "gpt.deprecated", "gpt.__main__") and t != "gpt.errors":
                counts[(a, b)] = counts.get((a, b), 0) + 1
    out = ["```mermaid", "flowchart TB"]
    for layer in FOLDERS + ["core"]:
        lines = sum(len(p.read_text().splitlines()) for m, p in files.items() if layer_of(m) == layer)
        title = "gpt/ core" if layer == "core" else f"gpt/{layer}/"
        out.append(f'  {layer}["{title}<br/>{lines:,} lines"]')
    for (a, b), n in sorted(counts.items()):
        out.append(f"  {a} -->|{n}| {b}")
    out.append("```")
    return "\n".join(out)


def core_mermaid(files: dict[str, Path]) -> str:
    """The learner's package: core and gpt/lora/ modules, each arrow labelled with the names it imports."""
    inside = {m for m in files if layer_of(m) in ("core", "lora") and m not in ("gpt", "gpt.lora", "gpt.deprecated", "gpt.__main__",
                                                                                  "gpt.errors")}
    out = ["```mermaid", "flowchart TB"]
    out.append('  subgraph lora["gpt/lora/"]')
    out += [f'    {_node(m)}["{m.removeprefix("gpt.")}"]' for m in sorted(inside) if layer_of(m) == "lora"]
    out.append("  end")
    out += [f'  {_node(m)}["{m.removeprefix("gpt.")}"]' for m in sorted(inside) if layer_of(m) == "core"]
    for m in sorted(inside):
        names: dict[str, list[str]] = {}
        for target, imported, _, _ in imports_of(files[m], set(files)):
            if target in inside and target != m:
                names.setdefault(target, []).extend(imported)
        for t, ns in sorted(names.items()):
            ns = sorted(set(ns))
            label = ", ".join(ns[:3]) + (", ..." if len(ns) > 3 else "")
            out.append(f"  {_node(m)} -->|{label}| {_node(t)}" if label else f"  {_node(m)} --> {_node(t)}")
    out.append("```")
    return "\n".join(out)


def layer_table(files: dict[str, Path]) -> str:
    edges = graph(files)
    uses: dict[str, set[str]] = {}
    for m, ts in edges.items():
        for t in ts:
            a, b = layer_of(m), layer_of(t)
            if a != b and m != "gpt":
                uses.setdefault(a, set()).add(b)
    rows = ["| folder | imports from |", "| --- | --- |"]
    for layer in FOLDERS + ["core"]:
        name = "gpt/ (core)" if layer == "core" else f"gpt/{layer}/"
        rows.append(f"| {name} | {', '.join(sorted(uses.get(layer, ()))) or '(nothing of the package but gpt.errors)'} |")
    return "\n".join(rows)


def module_lines(files: dict[str, Path]) -> str:
    rows = ["| module | lines | what it is |", "| --- | ---: | --- |"]
    for m, p in files.items():
        doc = (ast.get_docstring(ast.parse(p.read_text())) or "").strip().split("\n\n")[0].replace("\n", " ")
        rows.append(f"| `{m}` | {len(p.read_text().splitlines())} | {doc.replace('|', '/')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="print the design's numbers; exit 1 where a target is missed")
    parser.add_argument("--out", default=str(ROOT / "docs" / "package.md"), help="where the picture goes (default docs/package.md)")
    args = parser.parse_args(argv)
    files = package_files()
    if args.check:
        n = numbers(files)
        for k, v in n.items():
            print(f"{k}: {v}")
        missed = (n["import cycles"] or n["private cross-imports"] or n["longest function"][0] > MAX_FUNCTION_LINES
                  or n["most parameters"][0] > MAX_PARAMETERS or n["imports inside functions without a comment"]
                  or n["core lines (core modules + gpt/lora)"] > MAX_CORE_LINES)
        return 1 if missed else 0
    template = (ROOT / "scripts" / "package_template.md").read_text()
    n = numbers(files)
    figures = (f"{n['modules']} modules; {len(n['import cycles'])} import cycles; {len(n['private cross-imports'])} imports of another "
               f"module's _private name; the longest function has {n['longest function'][0]} lines "
               f"({n['longest function'][1].split(' ')[-1]}); the most parameters: {n['most parameters'][0]} "
               f"({n['most parameters'][1].split(' ')[-1]}); the core and gpt/lora/: {n['core lines (core modules + gpt/lora)']:,} lines")
    text = (template.replace("{{LAYERS}}", layer_table(files)).replace("{{FOLDERS}}", folder_mermaid(files))
            .replace("{{CORE}}", core_mermaid(files)).replace("{{MODULES}}", module_lines(files)).replace("{{NUMBERS}}", figures))
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
