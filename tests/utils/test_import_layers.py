"""The import layering of recfb (README "Layout"): every import, module-level or inside a
function, points from a higher layer to a strictly lower one, and no module imports itself
through a cycle. Parsed from the source (ast), so an import hidden in a function counts."""
import ast
import re
import sys
from pathlib import Path

import recfb

ROOT = Path(recfb.__file__).parent
README = ROOT.parent / "README.md"

#: lower first; a subpackage may import only from lower layers (README "Layout" shows these)
LAYERS = [
    ["utils"],
    ["distributed"],
    ["data"],
    ["datasets", "sampling", "debias", "testing"],
    ["losses"],
    ["denoise"],
    ["train", "evaluation"],
    ["models"],
    ["serving", "simulate", "tune"],
    ["cli"],
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules():
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("recfb",) + path.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(mods):
    """module -> set of recfb modules it imports (relative imports resolved)."""
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        base_parts = m.split(".") if path.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = base_parts[:len(base_parts) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for a in node.names:
                    full = f"{mod}.{a.name}"
                    targets.append(full if full in mods else mod)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[m].update(t for t in targets if t in mods and t != m)
    return edges


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and not parts[1].startswith("_") else None


def test_every_subpackage_has_a_layer():
    on_disk = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert on_disk == set(RANK), f"subpackages without a layer or gone: {on_disk ^ set(RANK)}"
    assert set(recfb.SUBPACKAGES) == on_disk  # and `import recfb` exposes every one


def test_imports_point_down_the_layers():
    mods = _modules()
    bad = []
    for src, targets in _imports(mods).items():
        a = _subpackage(src)
        for dst in targets:
            b = _subpackage(dst)
            if a is None or b is None or a == b:
                continue
            if not RANK[b] < RANK[a]:
                bad.append(f"{src} -> {dst} ({a} is layer {RANK[a]}, {b} layer {RANK[b]})")
    assert not bad, "imports that do not point down the layers:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    edges = _imports(_modules())
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_readme_shows_these_layers():
    text = README.read_text()
    block = text[text.index("## Layout"):]
    shown = re.search(r"Layers, lowest first:\n```\n(.*?)```", block, re.S)
    assert shown, "README's Layout section lost its layer diagram"
    rows = [line.split(":", 1)[1].split() for line in shown.group(1).strip().splitlines()]
    assert rows == LAYERS
