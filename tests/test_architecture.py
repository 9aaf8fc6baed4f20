"""The package's layers import in one direction only (see docs/ARCHITECTURE.md).

Every ``import`` in ``xbn/`` (module level or inside a function: a lazy
import is still a dependency) goes to the module's own package or to a
lower layer; none goes up, and no two packages of one layer import each
other.  No two modules import each other, directly or around a circle.
The one exception: the package's ``__init__`` imports the modules that
register xbn's keras classes (:data:`REGISTERING`), so that
``keras.saving.load_model`` opens a saved model after ``import xbn``.
"""

import ast
from pathlib import Path

import xbn

ROOT = Path(xbn.__file__).parent

# Lowest first.  A package may import its own modules and anything lower;
# the private helpers of the first layer may import each other.
LAYERS = (
    ("xbn", "xbn.errors", "xbn._checks", "xbn._files", "xbn._policy", "xbn._progress", "xbn._hardware",
     "xbn._plotting", "xbn._backend", "xbn._graph"),
    ("xbn.layers",),
    ("xbn.fold",),
    ("xbn.models",),
    ("xbn.surgery",),
    ("xbn.data",),
    ("xbn.diagnostics", "xbn.export"),
    ("xbn.training",),
    ("xbn.study",),
    ("xbn.bench",),
    ("xbn.cli",),
)


# What xbn/__init__.py imports so that keras finds xbn's classes.
REGISTERING = ("xbn.fold", "xbn.layers", "xbn.models")


def _unit(module):
    """The layer entry a dotted module name belongs to (its longest prefix)."""
    best = None
    for layer in LAYERS:
        for unit in layer:
            if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best)):
                best = unit
    return best


def _rank(unit):
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # "from xbn import study" imports xbn.study
                yield node.lineno, f"{node.module}.{alias.name}"


def _edges():
    for path in sorted(ROOT.rglob("*.py")):
        source = _unit(_module_name(path))
        for line, target in _imports(path):
            if target.split(".")[0] != "xbn":
                continue
            unit = _unit(target)
            if unit is None or unit == "xbn" and target != "xbn":
                continue  # "from xbn import __version__"-style names
            yield path.relative_to(ROOT.parent), line, source, unit


def test_every_module_belongs_to_a_layer():
    unplaced = [str(p) for p in ROOT.rglob("*.py") if _unit(_module_name(p)) is None]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_imports_go_down_only():
    upward = [
        f"{path}:{line}: {source} imports {target}"
        for path, line, source, target in _edges()
        if source != target and (
            _rank(target) > _rank(source) or (_rank(target) == _rank(source) > 0)
        ) and not (str(path) == "xbn/__init__.py" and target in REGISTERING)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def _module_graph():
    """``{module: {modules it imports}}`` over xbn's modules (``from xbn.a import b``
    imports ``xbn.a.b`` where that is a module, else ``xbn.a``; the package
    ``xbn`` itself is left out: it is the entry point, which imports
    :data:`REGISTERING` and nothing imports it for a name of its own)."""
    modules = {_module_name(p) for p in ROOT.rglob("*.py")}
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _module_name(path)
        if source == "xbn":
            continue
        targets = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                         for alias in node.names]
            targets |= {n for n in names if n in modules and n not in ("xbn", source)}
        graph[source] = targets
    return graph


def _cycle(graph):
    """One import circle of ``graph`` as a list of modules, or ``None``."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_module_imports_itself_around_a_circle():
    """Issue 42: ``_portable`` and ``_tf_batch_norm`` imported each other, and
    ``data/sources/base.py`` read ``registry.py``'s private table; a package's
    ``__init__`` that gathers its modules counts as the package, so a module
    importing its own package's ``__init__`` back is a circle too."""
    cycle = _cycle(_module_graph())
    assert cycle is None, " -> ".join(cycle)
