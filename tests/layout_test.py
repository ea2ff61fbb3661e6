"""The package's dependency rule, checked on every module's imports with `ast` (none imported).

A module may import only modules of a lower layer (LAYERS below), or modules of its own folder at
the same layer; world/ and learner/ are siblings at layer 3 and must not import each other. On top
of that: no import cycles, no imports of the package below module top level, and only the pipeline
and the benchmark import the trainer (`learning_words.learner.train`).
"""
import ast
import dataclasses
import os
import re

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "learning_words")

# (prefix, layer): a path relative to the repo root (forward slashes), matched as a prefix. A
# prefix ending in "/" is a folder; its modules may import each other. A file is on its own: it may
# import only modules of lower layers. Lower layers never import higher ones.
LAYERS = [
    ("learning_words/defaults.py", 0),
    ("learning_words/common/", 0),
    ("learning_words/data/", 1),
    ("learning_words/models/", 2),
    ("learning_words/world/", 3),  # world/ and learner/ are siblings: neither imports the other.
    ("learning_words/learner/", 3),
    ("learning_words/convert/", 3),  # the reference's PyTorch files -> our weights
    ("learning_words/workdir.py", 4),
    ("learning_words/experiment.py", 4),  # the reproduce experiment's runs (names, configs)
    ("learning_words/evaluation/", 5),
    ("learning_words/torch_peer.py", 5),
    ("learning_words/pipeline.py", 6),
    ("learning_words/benchmark.py", 6),
    ("learning_words/main.py", 7),
    ("learning_words/device_check.py", 7),  # the prepared accelerator run (uses the benchmark)
    ("learning_words/__init__.py", 8),  # the Python API: learning_words.load_run
]

TRAINER = "learning_words.learner.train"
TRAINER_IMPORTERS = ("learning_words.pipeline", "learning_words.benchmark")


@dataclasses.dataclass(frozen=True)
class Import:
  """One import of a package module: importer and imported are dotted module names."""
  importer: str
  imported: str
  path: str  # The importer's file, relative to the repo root.
  lineno: int
  top_level: bool  # A direct child of the ast.Module.

  def where(self) -> str:
    return f"{self.path}:{self.lineno}"


def relpath(path: str, pkg_dir: str) -> str:
  """path relative to the folder holding the package, with forward slashes."""
  return os.path.relpath(path, os.path.dirname(pkg_dir)).replace(os.sep, "/")


def find_modules(pkg_dir: str) -> dict[str, str]:
  """Every .py file under pkg_dir as module name -> path (a package is its __init__.py)."""
  modules = {}
  root = os.path.dirname(pkg_dir)
  for dirpath, dirnames, filenames in os.walk(pkg_dir):
    dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
    for filename in sorted(filenames):
      if not filename.endswith(".py"):
        continue
      path = os.path.join(dirpath, filename)
      parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
      if parts[-1] == "__init__":
        parts.pop()
      modules[".".join(parts)] = path
  return modules


def module_file(name: str, pkg_dir: str) -> str | None:
  """The repo-relative file of module `name`: x.py, x/__init__.py or x/ (a namespace package)."""
  base = os.path.join(os.path.dirname(pkg_dir), *name.split("."))
  if os.path.isfile(base + ".py"):
    return relpath(base + ".py", pkg_dir)
  if os.path.isfile(os.path.join(base, "__init__.py")):
    return relpath(os.path.join(base, "__init__.py"), pkg_dir)
  if os.path.isdir(base) and any(f.endswith(".py") for _, _, fs in os.walk(base) for f in fs):
    return relpath(base, pkg_dir) + "/"
  return None


def parse_imports(module: str, path: str, pkg_dir: str) -> list[Import]:
  """The package modules that module (in file path) imports, anywhere in the file.

  `from M import n` imports module M.n where that exists, else the name n of module M.
  """
  pkg = os.path.basename(pkg_dir)
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  top = {id(node) for node in tree.body}
  package = module if os.path.basename(path) == "__init__.py" else module.rpartition(".")[0]
  found = []

  def add(imported, node):
    if imported == pkg or imported.startswith(pkg + "."):
      found.append(Import(module, imported, relpath(path, pkg_dir), node.lineno, id(node) in top))

  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        add(alias.name, node)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - (node.level - 1)])
        source = f"{base}.{node.module}" if node.module else base
      else:
        source = node.module
      for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if alias.name != "*" and module_file(submodule, pkg_dir) is not None:
          add(submodule, node)
        else:
          add(source, node)
  return sorted(set(found), key=lambda i: (i.importer, i.lineno, i.imported))


def package_imports(pkg_dir: str) -> list[Import]:
  """The package-internal imports of every module under pkg_dir."""
  imports = []
  for module, path in find_modules(pkg_dir).items():
    imports.extend(parse_imports(module, path, pkg_dir))
  return imports


def layer_of(path: str, table=LAYERS) -> tuple[str, int] | None:
  """(prefix, layer) of the table's longest prefix of a repo-relative path; None if none."""
  matches = [(p, layer) for p, layer in table if path == p or (p.endswith("/") and
                                                               path.startswith(p))]
  return max(matches, key=lambda m: len(m[0]), default=None)


def unassigned_files(pkg_dir: str, table=LAYERS) -> list[str]:
  """The .py files under pkg_dir that no entry of the table covers."""
  paths = [relpath(p, pkg_dir) for p in find_modules(pkg_dir).values()]
  return sorted(p for p in paths if layer_of(p, table) is None)


def direction_violations(imports: list[Import], pkg_dir: str, table=LAYERS) -> list[str]:
  """Imports against the rule, as "importer -> imported (layer a -> layer b)"."""
  problems = []
  for imp in imports:
    imported_file = module_file(imp.imported, pkg_dir)
    low = layer_of(imp.path, table)
    high = imported_file and layer_of(imported_file, table)
    if low is None or not high:
      continue  # Unassigned files and unresolved imports fail their own tests.
    (prefix_a, a), (prefix_b, b) = low, high
    if b < a or (a == b and prefix_a == prefix_b and prefix_a.endswith("/")):
      continue
    problems.append(f"{imp.importer} -> {imp.imported} (layer {a} -> layer {b})  [{imp.where()}]")
  return sorted(problems)


def import_graph(imports: list[Import], pkg_dir: str) -> dict[str, set[str]]:
  """module -> the package modules it imports; every module (package __init__s too) is a node."""
  graph = {module: set() for module in find_modules(pkg_dir)}
  for imp in imports:
    graph.setdefault(imp.importer, set()).add(imp.imported)
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of graph as [m0, m1, ..., m0], or None when it has none (iterative DFS)."""
  done = set()
  for root in sorted(graph):
    if root in done:
      continue
    path = [root]  # The DFS stack: a path of the graph from root.
    children = [iter(sorted(graph.get(root, ())))]
    while path:
      child = next(children[-1], None)
      if child is None:
        done.add(path.pop())
        children.pop()
      elif child in path:
        return path[path.index(child):] + [child]
      elif child not in done:
        path.append(child)
        children.append(iter(sorted(graph.get(child, ()))))
  return None


def fail_if(problems: list[str], header: str):
  """Fails the test with header and one problem a line, if there are any."""
  if problems:
    pytest.fail(header + "\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="module", name="imports")
def fixture_imports() -> list[Import]:
  return package_imports(PACKAGE_DIR)


def test_every_file_has_a_layer():
  """A new top-level file or folder must be added to LAYERS."""
  fail_if(unassigned_files(PACKAGE_DIR), "Files not in layout_test.LAYERS (add them there):")


def test_layer_table_has_no_stale_entries():
  """Every LAYERS entry covers at least one file, so the table follows renames."""
  paths = [relpath(p, PACKAGE_DIR) for p in find_modules(PACKAGE_DIR).values()]
  stale = [f"{prefix} (layer {layer})" for prefix, layer in LAYERS
           if not any(layer_of(p, [(prefix, layer)]) for p in paths)]
  fail_if(stale, "LAYERS entries that match no file (remove or rename them):")


def test_every_package_import_resolves(imports):
  """Every import of a learning_words module names a module that exists."""
  missing = [f"{i.importer} -> {i.imported}  [{i.where()}]" for i in imports
             if module_file(i.imported, PACKAGE_DIR) is None]
  fail_if(missing, "Imports of learning_words modules that do not exist:")


def test_imports_follow_the_layers(imports):
  """Modules import only lower layers, or their own folder at the same layer."""
  fail_if(direction_violations(imports, PACKAGE_DIR),
          "Imports against the layers (lower layers and one's own folder only; see LAYERS):")


def test_world_and_learner_do_not_import_each_other(imports):
  """world/ and learner/ are siblings: neither depends on the other."""
  sides = ("learning_words.world", "learning_words.learner")
  crossing = [f"{i.importer} -> {i.imported} (layer 3 -> layer 3)  [{i.where()}]"
              for i in imports for a, b in (sides, sides[::-1])
              if (i.importer + ".").startswith(a + ".") and (i.imported + ".").startswith(b + ".")]
  fail_if(crossing, "Imports between the siblings world/ and learner/:")


def test_no_import_cycles(imports):
  """The graph of module -> imported modules has no cycle."""
  cycle = find_cycle(import_graph(imports, PACKAGE_DIR))
  fail_if([" -> ".join(cycle)] if cycle else [], "An import cycle among learning_words modules:")


def test_package_imports_are_at_module_top_level(imports):
  """No learning_words import inside a function, class or block: dependencies stay visible."""
  local = [f"{i.importer} -> {i.imported}  [{i.where()}]" for i in imports if not i.top_level]
  fail_if(local, "Imports of learning_words modules below module top level:")


def test_evaluators_never_import_the_trainer(imports):
  """Evaluation reads checkpoints; it never needs the training loop."""
  bad = [f"{i.importer} -> {i.imported}  [{i.where()}]" for i in imports
         if i.imported == TRAINER and (i.importer + ".").startswith("learning_words.evaluation.")]
  fail_if(bad, f"Evaluation modules importing {TRAINER}:")


def test_only_pipeline_and_benchmark_import_the_trainer(imports):
  """learning_words.learner.train is imported by the pipeline and the benchmark only."""
  bad = [f"{i.importer} -> {i.imported}  [{i.where()}]" for i in imports
         if i.imported == TRAINER and i.importer not in TRAINER_IMPORTERS]
  fail_if(bad, f"Modules other than {', '.join(TRAINER_IMPORTERS)} importing {TRAINER}:")


def test_find_cycle_on_synthetic_graphs():
  """The cycle detector: a cycle off the first root, a self-loop, and acyclic graphs."""
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None  # A diamond.
  assert find_cycle({}) is None
  assert find_cycle({"a": {"a"}}) == ["a", "a"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"e"}, "e": {"f"},
                     "f": {"d"}}) == ["d", "e", "f", "d"]


def test_checker_on_a_fake_package(tmp_path):
  """Resolver, cycle detector, local imports and layers on a small package in tmp_path."""
  files = {
      "__init__.py": "VERSION = 1\n",
      "a.py": "import os\nfrom fakepkg import b\n",
      "b.py": "from . import a\n",
      "c.py": "import json\n\n\ndef f():\n  import os\n  from fakepkg import a\n  return a\n",
      "d.py": ("from fakepkg.sub import x, helper\nimport fakepkg.sub.y as yy\n"
               "from fakepkg import VERSION, ns\nfrom fakepkg.ns.m import thing\n"
               "import fakepkg.gone\n"),
      "sub/__init__.py": "helper = 1\n",
      "sub/x.py": "from .. import c\nfrom .y import thing\n",
      "sub/y.py": "thing = 1\n",
      "ns/m.py": "thing = 1\n",  # A namespace package: ns/ has no __init__.py.
  }
  for name, text in files.items():
    (tmp_path / "fakepkg" / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "fakepkg" / name).write_text(text)
  pkg_dir = str(tmp_path / "fakepkg")
  imports = package_imports(pkg_dir)

  p = "fakepkg."
  assert {(i.importer, i.imported) for i in imports} == {
      (p + "a", p + "b"), (p + "b", p + "a"), (p + "c", p + "a"),
      (p + "d", p + "sub.x"), (p + "d", p + "sub"), (p + "d", p + "sub.y"), (p + "d", "fakepkg"),
      (p + "d", p + "ns"), (p + "d", p + "ns.m"), (p + "d", p + "gone"),
      (p + "sub.x", p + "c"), (p + "sub.x", p + "sub.y"),
  }
  assert [i.imported for i in imports if module_file(i.imported, pkg_dir) is None] == [p + "gone"]
  assert [(i.importer, i.imported, i.lineno) for i in imports if not i.top_level] == [
      (p + "c", p + "a", 6)]

  cycle = find_cycle(import_graph(imports, pkg_dir))
  assert cycle == [p + "a", p + "b", p + "a"]

  table = [("fakepkg/__init__.py", 0), ("fakepkg/sub/", 0), ("fakepkg/a.py", 1),
           ("fakepkg/b.py", 1), ("fakepkg/c.py", 2), ("fakepkg/d.py", 3)]
  assert unassigned_files(pkg_dir, table) == ["fakepkg/ns/m.py"]
  assert [v.split("  [")[0] for v in direction_violations(imports, pkg_dir, table)] == [
      "fakepkg.a -> fakepkg.b (layer 1 -> layer 1)",  # Two files: not one folder.
      "fakepkg.b -> fakepkg.a (layer 1 -> layer 1)",
      "fakepkg.sub.x -> fakepkg.c (layer 0 -> layer 2)",
  ]


# What users read never cites our tracker, our internal notes, or our work sessions.
INTERNAL = re.compile(r"\bissues? #?\d+|(?<![\w/])#\d{1,4}\b|\.\./shared|shared notes|"
                      r"REFERENCE\.md|DESIGN\.md|STACK_NOTES|"
                      r"\b(this|last|next|earlier|previous) session\b", re.IGNORECASE)


def test_user_facing_text_cites_no_tracker_numbers_or_internal_notes():
  root = os.path.dirname(PACKAGE_DIR)
  files = [os.path.join(root, "README.md")]
  for folder, suffixes in (("docs", (".md",)), ("configs", (".py",)),
                           ("learning_words", (".py", ".md"))):
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
      files += [os.path.join(dirpath, n) for n in names if n.endswith(suffixes)]
  found = []
  for path in files:
    with open(path, encoding="utf-8") as f:
      for lineno, line in enumerate(f, 1):
        for m in INTERNAL.finditer(line):
          found.append(f"{os.path.relpath(path, root)}:{lineno}: {m.group(0)!r}")
  fail_if(found, "Tracker numbers or internal notes in user-facing text:")
