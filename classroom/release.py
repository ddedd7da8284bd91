"""Build the student release: ``python -m classroom.release [--out dist/student]``.

The release is what a student clones: the exercise stubs, the *visible* checks and
the grader code they need, ``lab/`` (data fetcher, training, sampling), and a
README and Makefile generated from ``classroom/templates/``. It holds no
``solutions/``, no hidden checks, no kit tests, and no line of solution code: every
file is scanned for the non-trivial lines of the solutions' marked regions and the
build stops if one turns up (``GIVEN`` lists the few lines the exercises' own
text already spells out, each with its reason).

Which grader files ship is computed, not listed: the imports reachable from the
visible checks and the command line. ``grader/diagnose.py`` holds the known-mistake
variants of the hidden checks (correct formulas among them), so only the helpers
the visible checks import from it ship, copied into a generated module.
"""
import argparse
import ast
import io
import os
import re
import shutil
import sys
import tempfile
import tokenize
from pathlib import Path

from classroom.stubs import BEGIN, END, FILES, generate

KIT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_OUT = KIT / "dist" / "student"

# Lines of the solutions that the exercises already give away word for word, with where.
GIVEN = {
    "self.eps = eps": "the RMSNorm stub's comment",
    "self.weight = nn.Parameter(torch.ones(dim))": "the RMSNorm stub's comment and the API",
    "num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads": "the API: num_kv_heads defaults to num_heads",
    "self.max_seq_len = max_seq_len": "the CausalSelfAttention docstring",
    "if T > self.max_seq_len:": "the API: T > max_seq_len raises ValueError",
    'raise ValueError(f"sequence length {T} exceeds max_seq_len {self.max_seq_len}")': "the same rule's message",
    "if intermediate_size is None:": "the FeedForward stub's comment gives the default",
    "intermediate_size = 64 * math.ceil(8 * hidden_size / 3 / 64)": "the FeedForward stub's comment",
    "self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)": "the FeedForward stub's comment",
    "self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)": "the FeedForward stub's comment",
    "self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)": "the FeedForward stub's comment",
    # The stand-in block (grader/standins/block.py) must build the same four submodules from the
    # same arguments so that its state_dict matches the real one.
    "self.input_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)": "the stand-in block's constructor",
    "self.post_attention_layernorm = RMSNorm(hidden_size, eps=rms_norm_eps)": "the stand-in block's constructor",
    "self.self_attn = CausalSelfAttention(hidden_size, num_heads, num_kv_heads, max_seq_len, rope_theta)":
        "the stand-in block's constructor",
    "self.mlp = FeedForward(hidden_size, intermediate_size)": "the stand-in block's constructor",
}
TRIVIAL = {"super().__init__()", "return x", "return y", "else:", "try:", "pass"}
MIN_CHARS = 12  # shorter lines (``x = x + y``) say nothing a student could copy

# Kept back from the release, with everything that imports them.
WITHHELD = {
    "lab/variants.py": "VariantBlock and VariantLM rebuild TransformerBlock's wiring and TransformerLM's "
                       "assembly from the student's parts: they would hand out the block and decoder exercises",
    "lab/experiments": "the experiments build their models with lab/variants.py (and load their modules by name, "
                       "which an import scan cannot follow)",
}
# Where the grader's closure starts: the command line, the pytest wiring, the visible checks.
ENTRY = ["grader/__init__.py", "grader/__main__.py", "grader/checks/__init__.py", "grader/checks/conftest.py",
         "grader/checks/visible/__init__.py", "grader/standins/__init__.py", "grader/notebook.py"]
# Teaching text that ships: the module guides hold formulas and questions, never the answers
# (those stay in solutions/ANSWERS.md).
DOCS = ["docs/guide-residual.md", "docs/guide-rmsnorm.md", "docs/guide-attention.md", "docs/guide-block.md",
        "docs/guide-decoder.md"]
# With --with-experiments (after the due date, say) the experiments ship too.
EXPERIMENTS = ["lab/variants.py", "lab/experiments", "docs/experiments.md", "docs/img"]
NOT_SHIPPED_GRADER = ("grader/checks/hidden",)
PARTIAL = {"grader/diagnose.py"}  # only the helpers the shipped files import from it


# -- what counts as solution code --------------------------------------------------------------

def normalise(line):
    """The code of one line without its comment and with single spaces; '' for comments and blanks."""
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline)
                if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)]
        code = line.strip()[: toks[-1].end[1]] if toks else ""
    except (tokenize.TokenError, IndentationError, SyntaxError):
        code = line.strip()
    return re.sub(r"\s+", " ", code).strip()


def solution_lines(solutions=KIT / "solutions"):
    """{normalised line: 'file:line'} for every non-trivial line inside a solution region."""
    out = {}
    for name in FILES:
        inside = False
        for no, line in enumerate((Path(solutions) / name).read_text().splitlines(), start=1):
            if line.strip() == BEGIN:
                inside = True
            elif line.strip() == END:
                inside = False
            elif inside:
                code = normalise(line)
                if len(code) >= MIN_CHARS and code not in TRIVIAL:
                    out.setdefault(code, f"solutions/{name}:{no}")
    return out


def find_leaks(root, solutions=KIT / "solutions", exempt=()):
    """``[(file, line number, code, where in the solutions)]`` for each solution line found under root.

    ``exempt``: paths (relative to root) the instructor chose to hand out as they are.
    """
    secret = {k: v for k, v in solution_lines(solutions).items() if k not in GIVEN}
    leaks = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or any(_under(str(path.relative_to(root)), e) for e in exempt):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for no, line in enumerate(text.splitlines(), start=1):
            code = normalise(line)
            if code in secret:
                leaks.append((str(path.relative_to(root)), no, code, secret[code]))
    return leaks


# -- which files ship ---------------------------------------------------------------------------

def _module_file(name):
    """``grader.harness`` -> Path of grader/harness.py (or a package's __init__), else None."""
    base = KIT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path):
    """Kit modules a file imports (absolute names), and the names it takes from each."""
    tree = ast.parse(path.read_text(), str(path))
    parts = list(path.relative_to(KIT).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.setdefault(a.name, set())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.setdefault(mod, set()).update(a.name for a in node.names)
            for a in node.names:  # ``from . import checkpoint``: a submodule
                if _module_file(f"{mod}.{a.name}"):
                    found.setdefault(f"{mod}.{a.name}", set())
    return {m: names for m, names in found.items() if m.split(".")[0] in ("grader", "lab") and _module_file(m)}


def _under(rel, path):
    return rel == path or rel.startswith(path.rstrip("/") + "/")


def plan(experiments=False):
    """``(files to copy, {partial file: names needed}, {withheld file: reason})``, paths relative to KIT."""
    start = [KIT / p for p in ENTRY]
    start += sorted((KIT / "grader" / "checks" / "visible").glob("*.py"))
    start += sorted((KIT / "grader" / "standins").glob("*.py"))
    start += [p for p in sorted((KIT / "lab").rglob("*.py")) if "__pycache__" not in p.parts]
    files, partial, todo = set(), {}, list(start)  # files: relative paths that ship whole
    while todo:
        path = todo.pop()
        rel = str(path.relative_to(KIT))
        if rel in files or rel.startswith(NOT_SHIPPED_GRADER):
            continue
        files.add(rel)
        for mod in _imports(path):
            target = _module_file(mod)
            if str(target.relative_to(KIT)) not in PARTIAL:
                todo.append(target)
    # withhold, then everything that imports something withheld (until nothing changes)
    held = {w: why for w, why in WITHHELD.items() if not (experiments and w in EXPERIMENTS)}
    withheld = {f: why for f in files for w, why in held.items() if _under(f, w)}
    changed = True
    while changed:
        changed = False
        for f in sorted(files - set(withheld)):
            deps = {str(_module_file(m).relative_to(KIT)) for m in _imports(KIT / f)}
            bad = sorted(deps & set(withheld))
            if bad:
                withheld[f] = f"imports {bad[0]}"
                changed = True
    for f in sorted(files - set(withheld)):  # what the shipped files take from the partial ones
        for mod, names in _imports(KIT / f).items():
            trel = str(_module_file(mod).relative_to(KIT))
            if trel in PARTIAL:
                partial.setdefault(trel, set()).update(names)
    return sorted(files - set(withheld)), partial, withheld


def extract(path, names):
    """A module made of the top-level functions ``names`` of ``path`` and what they call, in file order."""
    src = Path(path).read_text()
    tree = ast.parse(src)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    missing = sorted(set(names) - set(defs))
    if missing:
        raise SystemExit(f"release: {path} has no top-level {', '.join(missing)} (imported by a visible check)")
    keep, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    rel = Path(path).relative_to(KIT)
    head = (f'"""The helpers of {rel} that the visible checks use.\n\n'
            f"Generated by `python -m classroom.release`: the rest of {rel} (the known-mistake\n"
            f'variants of the hidden checks) stays with the instructor.\n"""\n')
    body = [ast.get_source_segment(src, n) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
            and n.name in keep]
    return head + "\n\n" + "\n\n\n".join(body) + "\n"


# -- templates ------------------------------------------------------------------------------------

def render_makefile(shipped):
    """The Makefile template, minus the targets whose ``-m lab.X`` module does not ship."""
    text = (TEMPLATES / "Makefile.tmpl").read_text()
    blocks, out = re.split(r"\n(?=\S[^\n=]*:[^=])", text), []
    phony = []
    for block in blocks:
        mods = re.findall(r"-m (lab(?:\.\w+)+)", block)
        if any(_module_file(m) is None or str(_module_file(m).relative_to(KIT)) not in shipped for m in mods):
            continue
        out.append(block)
        m = re.match(r"([a-z][\w-]*):", block)
        if m:
            phony.append(m.group(1))
    return "\n".join(out).replace("@PHONY@", " ".join(phony))


def build(out=DEFAULT_OUT, github=False, quiet=False, experiments=False):
    """Write the release to ``out`` (atomically: a finished tree replaces the old one). Returns out.

    ``github`` adds the GitHub Classroom workflow (classroom/github/classroom.yml) as
    .github/workflows/classroom.yml, for a template repository (see docs/classroom.md).
    """
    out = Path(out).resolve()
    files, partial, withheld = plan(experiments)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".student-", dir=out.parent))
    os.chmod(stage, 0o755)  # mkdtemp's 0700 is for secrets; this is for everyone
    try:
        for rel in files:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(KIT / rel, stage / rel)
        for rel, names in partial.items():
            (stage / rel).write_text(extract(KIT / rel, names))
        shutil.copy(KIT / "grader" / "checks" / "pytest.ini", stage / "grader" / "checks" / "pytest.ini")
        (stage / "exercises").mkdir()
        for name, text in generate().items():
            (stage / "exercises" / name).write_text(text)
        shutil.copy(KIT / "requirements.txt", stage / "requirements.txt")
        docs = DOCS + (["docs/experiments.md"] if experiments else [])
        for rel in docs + ([str(p.relative_to(KIT)) for p in sorted((KIT / "docs" / "img").glob("*.png"))]
                           if experiments else []):
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(KIT / rel, stage / rel)
        shipped = set(files) | set(partial)
        (stage / "Makefile").write_text(render_makefile(shipped))
        (stage / "README.md").write_text((TEMPLATES / "README.md.tmpl").read_text())
        (stage / ".gitignore").write_text((TEMPLATES / "gitignore.tmpl").read_text())
        if github:
            (stage / ".github" / "workflows").mkdir(parents=True)
            shutil.copy(Path(__file__).resolve().parent / "github" / "classroom.yml",
                        stage / ".github" / "workflows" / "classroom.yml")
        leaks = find_leaks(stage, exempt=EXPERIMENTS if experiments else ())
        if leaks:
            lines = "\n".join(f"  {f}:{n}: {code}   (= {where})" for f, n, code, where in leaks)
            raise SystemExit(f"release: solution code would ship; nothing written to {out}:\n{lines}")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=out.parent))
            os.replace(out, old / "student")
            os.replace(stage, out)
            shutil.rmtree(old)
        else:
            os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not quiet:
        n = sum(1 for p in out.rglob("*") if p.is_file())
        print(f"wrote {out} ({n} files; visible checks only, no solution code)")
        for f, why in sorted(withheld.items()):
            print(f"  withheld {f}: {why}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m classroom.release", description="Build the student release.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write it (default: %(default)s)")
    p.add_argument("--github", action="store_true",
                   help="add the GitHub Classroom workflow as .github/workflows/classroom.yml")
    p.add_argument("--with-experiments", action="store_true",
                   help="ship lab/experiments and lab/variants.py too (they spell out the block's and the "
                        "model's wiring: hand them out after the due date)")
    args = p.parse_args(argv)
    build(args.out, github=args.github, experiments=args.with_experiments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
