"""The course's policy: the library shortcuts an exercise may not use, found in the submitted source.

Each unit of kit/syllabus.py declares what the student writes themselves (``own``) and the shortcuts its
file may not use (``forbids``: dotted names, a trailing ``*`` for every name that begins so). The policy is
on at the desk and in every graded flow (``syllabus.POLICY``); the instructor turns it off with
``python -m grader --policy off`` or ``KIT_POLICY=off``.

It is decided here, in the grader's own process, from the files as submitted, before any check runs: a
parse (``ast``), never text matching, so a docstring or a comment that names a function is not a use,
and a worker taken over by the submission cannot turn it off. The parse follows what a name can stand
for, flow- and scope-insensitively (every binding of a name counts, wherever it is):

- imports with aliases (``import torch.nn.functional as F``, ``from torch.nn.functional import
  scaled_dot_product_attention as sdpa``, ``from torch.nn.functional import *``), plain assignments,
  tuple unpacking, ``for`` over a literal tuple, the walrus;
- ``getattr(F, NAME)``, ``F.__dict__[NAME]``, ``vars(F)[NAME]``, ``F.__dict__.get(NAME)``,
  ``operator.attrgetter(NAME)(F)``, ``sys.modules[NAME]``, ``importlib.import_module(NAME)``,
  ``__import__(NAME)``, ``globals()[NAME]``, where NAME folds to a constant string (literals, ``+``,
  ``*``, f-strings, ``str.join``, ``lower``/``upper``/``strip``/``replace``/``format``, slices, names
  bound to such strings); ``eval``/``exec``/``compile`` of such a string is parsed and read the same way;
- the submission's other files: a name imported from a sibling module stands for what it is bound to
  there, and a helper module (a ``.py`` file of the folder that is not one of the five) that a unit's
  file imports is held to that unit's rules.

A name is a shortcut when it, or a name it begins with, is a forbidden one, or when it walks (through
modules only) to the same object as a forbidden one (``torch._C._nn.scaled_dot_product_attention`` is
``F.scaled_dot_product_attention``). Any use counts, called or not (``attn = F.scaled_dot_product_attention``,
a default argument, a base class), even in code that never runs; an import alone does not.

What it cannot see: a name built from a string known only at run time (``getattr(F, input())``, a string
decoded from bytes, built in a loop), code loaded from outside the five files' folder, a shortcut reached
through an object's attributes (``some_module_instance.__class__``), and a library other than those named.
A file it cannot read as Python (too large, deeper than the parser goes) counts as a use: its checks would
pass on code nobody could check.

``findings(folder, units)`` returns ``{unit: [Finding, ...]}``; ``apply(results, findings)`` takes that
unit's passed scored checks' points away, each with a ``Failure`` of kind ``Kind.NOT_ALLOWED`` that names
the shortcut, the line and the rule.
"""
import ast
import os
import sys
import types
from dataclasses import dataclass, replace
from pathlib import Path

from kit import syllabus
from kit.outcome import Failure, Kind, T, Where

ENV = "KIT_POLICY"
MAX_SOURCE = 256 << 10  # bytes of one source file read (an exercise file is a few kB; reading 256 kB takes seconds)
MAX_VALUES = 64  # what one name may stand for, at most (a name bound to more is followed no further)
MAX_ROUNDS = 12  # passes of the bindings to a fixed point
MAX_EVALS = 32  # strings given to eval/exec/compile that are parsed, per file
BUILTINS = ("getattr", "vars", "__import__", "eval", "exec", "compile", "globals", "locals", "object")
STR_METHODS = ("join", "lower", "upper", "strip", "lstrip", "rstrip", "replace", "format", "removeprefix",
               "removesuffix", "casefold")
SHORT = (("torch.nn.functional.", "F."), ("torch.nn.", "nn."))
TOO_DEEP = T("nested too deeply for the grader to read")


def enabled(flag=None):
    """Whether the policy is on: ``flag`` ("on"/"off", or a bool) if given, else ``$KIT_POLICY``, else the
    syllabus's. Anything but a clear "off" is on: a typo never turns the course's rules off."""
    if isinstance(flag, bool):
        return flag
    value = str(flag or os.environ.get(ENV) or syllabus.POLICY).strip().lower()
    return value not in ("off", "0", "false", "no")


@dataclass(frozen=True)
class Finding:
    unit: str  # whose rule: "attention"
    file: str  # where, relative to the folder: "attention.py" (or a helper module it imports)
    line: int
    function: str  # the enclosing def/class, dotted ("CausalSelfAttention.forward"), "" at module level
    written: str  # the expression as the student wrote it: "sdpa", "getattr(F, 'scaled_' + ...)"
    name: str  # the shortcut, as people write it: "F.scaled_dot_product_attention"
    code: str = ""  # the line
    problem: str = ""  # set when the file could not be read as Python: why

    @property
    def rule(self):
        return syllabus.unit(self.unit).own or self.unit

    def message(self):
        """The sentence the student reads (a ``Text``)."""
        if self.problem:
            return T("this exercise asks you to write {rule} yourself, and the grader could not check {file} for "
                     "library shortcuts: {problem}", rule=self.rule, file=self.file, problem=self.problem)
        return T("this exercise asks you to write {rule} yourself: `{name}` is not allowed here", rule=self.rule,
                 name=self.name)

    def failure(self, checked=None, more=()):
        checked = checked or T("the code of {file}, against the course's rules", file=self.file)
        if self.problem:
            return Failure(Kind.NOT_ALLOWED, checked, expected=T("a file the grader can read as Python"),
                           got=self.problem, hint=self.message(), where=Where(self.file, 1, ""))
        where = T("{file} line {line} (in {function})", file=self.file, line=self.line, function=self.function) \
            if self.function else T("{file} line {line}", file=self.file, line=self.line)
        lines = ", ".join(str(f.line) for f in more)
        also = (T("; also on lines {lines}", lines=lines) if len(more) > 1 else
                T("; also on line {lines}", lines=lines)) if more else ""
        if self.written != self.name:
            got = T("`{written}`, which is `{name}`, used in {where}{also}", written=self.written, name=self.name,
                    where=where, also=also)
        else:
            got = T("`{name}` used in {where}{also}", name=self.name, where=where, also=also)
        return Failure(Kind.NOT_ALLOWED, checked,
                       expected=T("{rule} written with tensor operations, not a library's ready-made one",
                                  rule=self.rule),
                       got=got, hint=self.message(), where=Where(self.file, self.line, self.function, self.code))


# -- which names are forbidden ---------------------------------------------------------------------

def shown(name):
    """``torch.nn.functional.rms_norm`` -> ``F.rms_norm``: how the course's code writes it."""
    for long, short in SHORT:
        if name.startswith(long):
            return short + name[len(long):]
    return name


def _module_walk(dotted):
    """The object ``dotted`` names, walking module dictionaries only (no import, no ``__getattr__`` hook runs),
    or None. Only names under ``torch`` are walked."""
    parts = dotted.split(".")
    if parts[0] != "torch" or "torch" not in sys.modules:
        return None
    obj = sys.modules["torch"]
    for i, part in enumerate(parts[1:], 1):
        if not isinstance(obj, types.ModuleType):
            return None
        nxt = vars(obj).get(part)
        if nxt is None:
            nxt = sys.modules.get(".".join(parts[:i + 1]))
        if nxt is None:
            return None
        obj = nxt
    return obj


class Rules:
    """The forbidden names of one unit, by name, by prefix pattern and by identity."""

    def __init__(self, forbids):
        self.exact = {n for n in forbids if not n.endswith("*")}
        self.patterns = tuple(n[:-1] for n in forbids if n.endswith("*"))
        self.objects = {}
        for n in self.exact:
            obj = _module_walk(n)
            if obj is not None and not isinstance(obj, types.ModuleType):
                self.objects[id(obj)] = (obj, n)  # the object is kept alive, so its id stays its own
        self._cache = {}

    def match(self, path):
        """The forbidden name that ``path`` (a dotted name) is, or begins with; else None."""
        if path not in self._cache:
            self._cache[path] = self._match(path)
        return self._cache[path]

    def _match(self, path):
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in self.exact:
                return prefix
            if any(prefix.startswith(p) for p in self.patterns):
                return prefix
            obj = _module_walk(prefix) if i > 1 else None
            if obj is not None and id(obj) in self.objects and self.objects[id(obj)][0] is obj:
                return self.objects[id(obj)][1]
        return None


# -- what the names of a file stand for ------------------------------------------------------------
# A value is a tuple: ("mod", "torch.nn.functional") for a dotted name outside the submission, ("local", stem)
# for a module of the submission, ("str", s), ("int", n), ("dict", dotted) for a module's __dict__,
# ("builtin", name), ("call", kind, data) for a callable the reading knows the result of.

class Unreadable(Exception):
    """A file the policy cannot read as Python (too large, nested past the parser): counted as a use."""


class Project:
    """The submission's Python files, read lazily and each analysed once."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.modules = {}
        self.siblings = {p.stem: p for p in sorted(self.folder.glob("*.py")) if p.is_file() and not p.is_symlink()}

    def module(self, stem):
        """The analysed module ``stem`` of the submission, or None when there is no such file."""
        if stem not in self.modules:
            path = self.siblings.get(stem)
            self.modules[stem] = None
            if path is None:
                return None
            self.modules[stem] = Module(self, stem, path)
            self.modules[stem].analyse()
        return self.modules[stem]


class Module:
    def __init__(self, project, stem, path):
        self.project, self.stem, self.path = project, stem, path
        self.env, self.stars, self.defined, self.imports = {}, set(), set(), set()
        self.trees, self.seen_strings, self.changed = [], set(), False
        self.error = None
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_SOURCE + 1)
            if len(data) > MAX_SOURCE:
                raise Unreadable(T("larger than the {kb} kB the grader reads", kb=MAX_SOURCE >> 10))
            self.source = data.decode("utf-8", errors="replace")
            self.trees.append(ast.parse(data, filename=path.name))
        except SyntaxError:
            # the worker cannot import it either: its checks fail on their own
            self.source, self.trees = getattr(self, "source", ""), []
        except (Unreadable, RecursionError, MemoryError, ValueError) as e:
            self.source, self.trees = "", []
            self.error = e.args[0] if isinstance(e, Unreadable) else TOO_DEEP

    # bindings -------------------------------------------------------------------------------

    def bind(self, name, values):
        old = self.env.setdefault(name, set())
        new = old | set(values)
        if len(new) > MAX_VALUES:
            new = set(list(new)[:MAX_VALUES])
        if new != old:
            self.env[name] = new
            self.changed = True

    def lookup(self, name):
        """What ``name`` may stand for in this module (other modules ask too)."""
        values = set(self.env.get(name, ()))
        if name not in self.defined:
            for star in self.stars:
                values |= self.attr({star}, name)
            if not values and name in BUILTINS:
                values.add(("builtin", name))
        return values

    def analyse(self):
        if not self.trees:
            return
        for node in ast.walk(self.trees[0]):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, ast.arg):
                self.defined.add(node.arg)
        for _ in range(MAX_ROUNDS):
            self.changed = False
            for tree in list(self.trees):
                for node in ast.walk(tree):
                    self.statement(node)
            if not self.changed:
                break

    def statement(self, node):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in self.project.siblings and a.name != self.stem:
                    self.imports.add(a.name)
                    self.bind(a.asname or a.name, {("local", a.name)})
                elif a.asname:
                    self.bind(a.asname, {("mod", a.name)})
                else:
                    top = a.name.split(".")[0]
                    self.bind(top, {("mod", top)})
        elif isinstance(node, ast.ImportFrom):
            local = node.level > 0 or (node.module or "").split(".")[0] in self.project.siblings
            for a in node.names:
                if local and not node.module:  # from . import helper
                    self.imports.add(a.name)
                    self.bind(a.asname or a.name, {("local", a.name)})
                    continue
                source = ("local", node.module.split(".")[-1]) if local else ("mod", node.module)
                if local:
                    self.imports.add(source[1])
                if a.name == "*":
                    if source not in self.stars:
                        self.stars.add(source)
                        self.changed = True
                else:
                    self.bind(a.asname or a.name, self.attr({source}, a.name))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None:
                for t in targets:
                    self.assign(t, node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and isinstance(node.op, ast.Add):
            left = self.lookup(node.target.id)
            self.bind(node.target.id, self.binop(left, self.eval(node.value), ast.Add()))
        elif isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.iter, (ast.Tuple, ast.List)):
            for elt in node.iter.elts:
                self.assign(node.target, elt)
        elif isinstance(node, ast.Call):  # eval/exec/compile of a string the reading can fold
            funcs = self.eval(node.func)
            if node.args and any(v[0] == "builtin" and v[1] in ("eval", "exec", "compile") for v in funcs):
                for s in self.strings(self.eval(node.args[0])):
                    self.parse_string(s, node)

    def assign(self, target, value):
        if isinstance(target, ast.Name):
            self.bind(target.id, self.eval(value))
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                self.assign(t, v)

    def parse_string(self, s, call):
        if s in self.seen_strings or len(self.seen_strings) >= MAX_EVALS:
            return
        self.seen_strings.add(s)
        try:
            tree = ast.parse(s)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return
        for n in ast.walk(tree):  # what it holds is found on the line of the call that runs it
            if hasattr(n, "lineno"):
                n.lineno, n.end_lineno = call.lineno, call.lineno
                n.col_offset, n.end_col_offset = call.col_offset, call.end_col_offset
        tree._policy_call = call
        self.trees.append(tree)
        self.changed = True

    # values -----------------------------------------------------------------------------------

    def attr(self, values, name):
        out = set()
        for v in values:
            if v[0] == "mod" and name in ("__getattribute__", "__getattr__"):  # F.__getattribute__(NAME)
                out.add(("call", "getattr-of", v[1]))
            elif v[0] == "mod":
                out.add(("dict", v[1]) if name == "__dict__" else ("mod", f"{v[1]}.{name}"))
            elif v == ("builtin", "object") and name == "__getattribute__":  # object.__getattribute__(F, NAME)
                out.add(("builtin", "getattr"))
            elif v[0] == "local":
                m = self.project.module(v[1]) if v[1] != self.stem else self
                if m is not None:
                    out |= m.lookup(name) or ({("local", name)} if name in self.project.siblings else set())
            elif v[0] == "str" and name in STR_METHODS:
                out.add(("call", "str." + name, v[1]))
            elif v[0] == "dict" and name == "get":
                out.add(("call", "dict.get", v[1]))
        return set(list(out)[:MAX_VALUES])

    def item(self, values, keys):
        out = set()
        for v in values:
            for k in keys:
                if v[0] == "dict" and k[0] == "str":
                    out.add(("mod", f"{v[1]}.{k[1]}"))
                elif v[0] == "mod" and v[1] == "sys.modules" and k[0] == "str":
                    out.add(self.module_named(k[1]))
                elif v[0] == "globals" and k[0] == "str":
                    out |= self.lookup(k[1])
                elif v[0] == "str" and k[0] in ("int", "slice"):
                    try:
                        out.add(("str", v[1][slice(*k[1]) if k[0] == "slice" else k[1]]))
                    except (IndexError, TypeError, ValueError):
                        pass
        return out

    def module_named(self, name):
        if name.startswith(".") or name in self.project.siblings:
            return ("local", name.lstrip(".").split(".")[-1])
        return ("mod", name)

    @staticmethod
    def strings(values):
        return [v[1] for v in values if v[0] == "str"]

    def binop(self, left, right, op):
        out = set()
        for a in left:
            for b in right:
                if isinstance(op, ast.Add) and a[0] == b[0] == "str":
                    out.add(("str", a[1] + b[1]))
                elif isinstance(op, ast.Add) and a[0] == b[0] == "int":
                    out.add(("int", a[1] + b[1]))
                elif isinstance(op, ast.Mult) and {a[0], b[0]} == {"str", "int"}:
                    s, n = (a[1], b[1]) if a[0] == "str" else (b[1], a[1])
                    if 0 <= n <= 64 and len(s) * n <= 256:
                        out.add(("str", s * n))
                if len(out) >= MAX_VALUES:
                    return out
        return out

    def eval(self, node):
        """What ``node`` may evaluate to (a set of values; empty when the reading cannot tell)."""
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return {("str", node.value)}
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                return {("int", node.value)}
            return set()
        if isinstance(node, ast.Attribute):
            return self.attr(self.eval(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            sl = node.slice
            if isinstance(sl, ast.Slice):
                parts = [self.eval(x) if x is not None else {("int", None)} for x in (sl.lower, sl.upper, sl.step)]
                keys = {("slice", (a[1], b[1], c[1])) for a in parts[0] for b in parts[1] for c in parts[2]
                        if a[0] == b[0] == c[0] == "int"}
            else:
                keys = self.eval(sl)
            return self.item(self.eval(node.value), keys)
        if isinstance(node, ast.BinOp):
            return self.binop(self.eval(node.left), self.eval(node.right), node.op)
        if isinstance(node, ast.JoinedStr):
            out = {""}
            for part in node.values:
                if isinstance(part, ast.Constant):
                    pieces = {str(part.value)}
                elif isinstance(part, ast.FormattedValue) and part.conversion == -1 and part.format_spec is None:
                    pieces = set(self.strings(self.eval(part.value)))
                else:
                    return set()
                out = {a + b for a in out for b in pieces}
                if not out or len(out) > MAX_VALUES:
                    return set()
            return {("str", s) for s in out}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return {("int", -v[1]) for v in self.eval(node.operand) if v[0] == "int"}
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) | self.eval(node.orelse)
        if isinstance(node, ast.BoolOp):
            return set().union(*(self.eval(v) for v in node.values))
        if isinstance(node, ast.NamedExpr):
            return self.eval(node.value)
        if isinstance(node, ast.Call):
            return self.call(node)
        return set()

    def call(self, node):
        out = set()
        args = node.args
        for f in self.eval(node.func):
            kind, name = f[0], f[1]
            if kind == "mod" and name.startswith("builtins."):
                kind, name = "builtin", name[len("builtins."):]
            if kind == "builtin" and name == "getattr" and len(args) >= 2:
                obj = self.eval(args[0])
                for s in self.strings(self.eval(args[1])):
                    out |= self.attr(obj, s)
            elif kind == "builtin" and name == "vars" and len(args) == 1:
                out |= {("dict", v[1]) for v in self.eval(args[0]) if v[0] == "mod"}
            elif kind == "builtin" and name in ("globals", "locals") and not args:
                out.add(("globals", None))
            elif (kind == "builtin" and name == "__import__") or (kind == "mod" and name == "importlib.__import__"):
                fromlist = any(isinstance(k.value, (ast.List, ast.Tuple)) and k.value.elts for k in node.keywords
                               if k.arg == "fromlist") or (len(args) >= 4 and isinstance(args[3], (ast.List, ast.Tuple))
                                                          and args[3].elts)
                for s in self.strings(self.eval(args[0])) if args else ():
                    out.add(self.module_named(s if fromlist else s.split(".")[0]))
            elif kind == "mod" and name == "importlib.import_module" and args:
                out |= {self.module_named(s) for s in self.strings(self.eval(args[0]))}
            elif kind == "mod" and name == "operator.attrgetter" and len(args) == 1:
                out |= {("call", "attrgetter", s) for s in self.strings(self.eval(args[0]))}
            elif kind == "call" and name == "attrgetter" and len(args) == 1:
                values = self.eval(args[0])
                for part in f[2].split("."):
                    values = self.attr(values, part)
                out |= values
            elif kind == "call" and name == "getattr-of" and args:
                out |= {("mod", f"{f[2]}.{s}") for s in self.strings(self.eval(args[0]))}
            elif kind == "call" and name == "dict.get" and args:
                out |= {("mod", f"{f[2]}.{s}") for s in self.strings(self.eval(args[0]))}
            elif kind == "mod" and name == "sys.modules.get" and args:
                out |= {self.module_named(s) for s in self.strings(self.eval(args[0]))}
            elif kind == "call" and name.startswith("str."):
                out |= self.str_method(name[4:], f[2], args)
        return set(list(out)[:MAX_VALUES])

    def str_method(self, method, s, args):
        vals = [self.strings(self.eval(a)) for a in args]
        out = set()
        try:
            if method == "join" and len(args) == 1 and isinstance(args[0], (ast.List, ast.Tuple)):
                combos = [[]]
                for elt in args[0].elts:
                    combos = [c + [p] for c in combos for p in self.strings(self.eval(elt))][:MAX_VALUES]
                out = {("str", s.join(c)) for c in combos}
            elif method in ("lower", "upper", "strip", "lstrip", "rstrip", "casefold") and not args:
                out = {("str", getattr(s, method)())}
            elif method in ("replace", "removeprefix", "removesuffix") and all(vals):
                import itertools
                out = {("str", getattr(s, method)(*c)) for c in itertools.islice(itertools.product(*vals), MAX_VALUES)}
            elif method == "format" and all(vals):
                import itertools
                out = {("str", s.format(*c)) for c in itertools.islice(itertools.product(*vals), MAX_VALUES)}
        except (TypeError, ValueError, IndexError, KeyError):
            return set()
        return out

    # uses ---------------------------------------------------------------------------------------

    def uses(self, rules, unit, name):
        """The Findings of this module under ``rules``: every expression that stands for a forbidden name."""
        found = {}
        scopes = _scopes(self.trees[0]) if self.trees else {}
        lines = self.source.splitlines()
        for tree in self.trees:
            call = getattr(tree, "_policy_call", None)
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)):
                    continue
                if isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del)):
                    continue
                hits = sorted({m for v in self.eval(node) if v[0] == "mod" for m in [rules.match(v[1])] if m})
                for hit in hits:
                    line = node.lineno
                    key = (line, hit)
                    written = ast.get_source_segment(self.source, call if call is not None else node) or hit
                    written = " ".join(written.split())
                    written = written if len(written) <= 80 else written[:77] + "..."
                    if key not in found or len(written) < len(found[key].written):
                        code = lines[line - 1].strip()[:160] if 0 < line <= len(lines) else ""
                        found[key] = Finding(unit, name, line, scopes.get(line, ""), written, shown(hit), code)
        return sorted(found.values(), key=lambda f: (f.line, f.name))


def _scopes(tree):
    """``{line: "Class.method"}`` for every line inside a def or class."""
    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}.{child.name}" if prefix else child.name
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    out[line] = qual
                visit(child, qual)
            else:
                visit(child, prefix)
    visit(tree, "")
    return out


# -- the verdict ---------------------------------------------------------------------------------

def findings(folder, units=None):
    """``{unit: [Finding, ...]}`` for the units (names; default: all five) whose files use a forbidden shortcut,
    read from ``folder`` as it is now. A unit's helper modules (other ``.py`` files of the folder its file
    imports, at any depth) are held to its rules; the five files are each held to their own."""
    import torch  # noqa: F401 - the names are matched against torch's objects too

    project = Project(folder)
    own_files = set(syllabus.MODULES)
    out = {}
    for u in syllabus.UNITS:
        if (units is not None and u.name not in units) or not u.forbids:
            continue
        rules = Rules(u.forbids)
        todo, seen, found = [u.name], set(), []
        while todo:
            stem = todo.pop(0)
            if stem in seen:
                continue
            seen.add(stem)
            try:
                m = project.module(stem)
                if m is None:
                    continue
                if m.error:
                    found.append(Finding(u.name, m.path.name, 1, "", "", "", problem=m.error))
                    continue
                found += m.uses(rules, u.name, m.path.name)
            except RecursionError:
                found.append(Finding(u.name, f"{stem}.py", 1, "", "", "",
                                     problem=TOO_DEEP))
                continue
            todo += sorted(i for i in m.imports if i not in own_files)
        if found:
            out[u.name] = found
    return out


def apply(results, found):
    """``results`` with each passed scored check of a unit in ``found`` failed: no points, a Kind.NOT_ALLOWED
    Failure naming the shortcut (the first one used), its line and the rule. Checks that failed on their own
    keep their failure; 0-point checks are left as they are."""
    if not found:
        return results
    out = []
    for r in results:
        uses = found.get(r.unit)
        if uses and r.points > 0 and r.passed:
            first, more = uses[0], [f for f in uses[1:] if f.file == uses[0].file][:5]
            r = replace(r, score=0, failure=first.failure(more=more), note=None)
        out.append(r)
    return out
