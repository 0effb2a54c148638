"""The package's import graph, read from the source: no circle (function-level imports
count), no arrow from data/ up to tasks/, readers of a run never import training, and the
command-line tools (wat_jax/tools/) are leaves the library never imports."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_graph(root: str) -> dict[str, set[str]]:
    """wat_jax's modules -> the wat_jax modules they import, top level or inside functions.

    `from P import m` counts as importing P.m when that is a module, else P. An
    `if __name__ == "__main__":` block is a script's, not the module's: it is skipped.
    """
    modules = {}
    for folder, _, files in os.walk(os.path.join(root, "wat_jax")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    graph = {}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        targets = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in walk_outside_main(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def walk_outside_main(tree):
    """ast.walk, except the bodies of `if __name__ == "__main__":` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if _is_main_guard(node):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (each holds a circle)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_circle():
    # Function-level imports count: a circle through one still couples the modules.
    assert cycles(import_graph(ROOT)) == []


def test_readers_of_a_run_never_import_training():
    graph = import_graph(ROOT)
    assert "wat_jax.evaluate" not in graph["wat_jax.train"]
    readers = ("evaluate", "gallery", "artifact", "timeline")
    readers += ("tools.search", "tools.export", "tools.timeline", "tools.visualize")
    for reader in readers:
        assert "wat_jax.train" not in graph[f"wat_jax.{reader}"], reader
        assert "wat_jax.objectives" not in graph[f"wat_jax.{reader}"], reader


def _is_main_guard(node) -> bool:
    """`if __name__ == "__main__":`"""
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def tools_imports(source: str) -> list[int]:
    """Lines of `source` that import wat_jax.tools (or a module in it), outside an
    `if __name__ == "__main__":` block (a `python -m` name the contract keeps)."""
    found = []

    def visit(node):
        if _is_main_guard(node):
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            names = []
        if any(n == "wat_jax.tools" or n.startswith("wat_jax.tools.") for n in names):
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def test_tools_import_finder_sees_imports_and_spares_main_guards():
    source = (
        "import os\n"
        "from wat_jax import tools\n"
        "def f():\n"
        "    from wat_jax.tools import search\n"
        "    import wat_jax.tools.export\n"
        'if __name__ == "__main__":\n'
        "    from wat_jax.tools import timeline\n"
    )
    assert tools_imports(source) == [2, 4, 5]


def library_sources(outside: str):
    """(path from the checkout, source) of every wat_jax module outside wat_jax/<outside>/."""
    for folder, _, files in os.walk(os.path.join(ROOT, "wat_jax")):
        if os.path.relpath(folder, ROOT).split(os.sep)[:2] == ["wat_jax", outside]:
            continue
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, ROOT), f.read()


def test_nothing_in_the_library_imports_the_tools():
    # The tools are leaves: they import the library, never the reverse. The only
    # exceptions are the `python -m` names the contract keeps (wat_jax.embed_text,
    # wat_jax.timeline): packages whose __main__.py runs the tool, which no library
    # module imports.
    offenders, entry_points = [], []
    for rel, source in library_sources("tools"):
        if os.path.basename(rel) == "__main__.py":
            entry_points.append(rel)
            continue
        offenders += [f"{rel}:{line}" for line in tools_imports(source)]
    assert offenders == []
    assert sorted(entry_points) == [
        "wat_jax/embed_text/__main__.py",
        "wat_jax/timeline/__main__.py",
    ]


def test_the_data_modules_never_import_the_tasks():
    # The tasks build on data/ (loaders, prepared files, checks); an arrow back up would
    # make every data module depend on every task. Callers hand data/ what a task knows.
    graph = import_graph(ROOT)
    upward = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("wat_jax.data.")
        for target in targets
        if target == "wat_jax.tasks" or target.startswith("wat_jax.tasks.")
    }
    assert upward == set()


def test_the_graph_sees_top_level_and_function_level_arrows():
    graph = import_graph(ROOT)
    assert "wat_jax.data.prepared" in graph["wat_jax.tasks.base"]  # top level
    assert "wat_jax.tasks" in graph["wat_jax.artifact"]  # inside check_meta
