"""Build the student release: ``python -m classroom.release [--out dist/student]``.

The release is what a student clones: the exercise stubs, every check with the grader code it
needs, the reference's answers recorded on the published inputs (``grader/snapshots/published.pack``,
grader/snapshot.py), ``kit/``, ``lab/`` (data, training, sampling), the notebooks' runtime, the
corpus, and a README and Makefile generated from ``classroom/templates/``. ``make check`` there runs
the same checks and the same diagnosis as the full grader, offline. It holds no ``solutions/``, no
kit tests, no known-mistake formulas (``grader/diagnose/variants.py``) and no line of solution code:
every file, and every string of the snapshot, is scanned for the non-trivial lines of the
solutions' marked regions and the build stops if one turns up (``GIVEN`` lists the few lines the
exercises' own text already spells out, each with its reason).

Which files ship is computed from the imports reachable from the command line, the checks and the
notebooks' runtime; ``WITHHELD`` files stay behind with everything that imports them, ``OPTIONAL``
ones stay behind alone (the code that imports them does so only where the reference is present).

``--lang zh`` builds the release in Chinese (``LOCALES``): its README, stubs and guides, and the grader
speaks it there by default (``locale/default``, kit/i18n.py).
"""
import ast
import io
import os
import re
import shutil
import sys
import tempfile
import tokenize
from pathlib import Path

from classroom.regions import RegionError
from classroom.regions import lines as region_lines
from classroom.stubs import LANGUAGES, generate
from kit import i18n, syllabus
from kit.cli import ArgumentParser
from kit.i18n import N_

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
# Kept back alone: shipped code imports them only where solutions/ is present (the live reference).
OPTIONAL = {
    "grader/diagnose/variants.py": "the known mistakes' formulas, correct ones among them: the release carries "
                                   "their outputs on the published inputs instead",
    "grader/measure.py": "the final check's own fast transformer (a correct attention forward): at the desk the "
                         "student's model computes the logits",
}
# Where the closure starts: the command line, the pytest wiring, the checks, the stand-ins, the notebooks.
# worker.py and fence.py run in the sandbox, loaded by path (grader/sandbox.py): no import names them.
ENTRY = ["grader/__init__.py", "grader/__main__.py", "grader/snapshot.py", "grader/worker.py", "grader/fence.py",
         "grader/checks/__init__.py",
         "grader/checks/conftest.py", "grader/standins/__init__.py", "classroom/__init__.py", "kit/__init__.py"]
FOLDERS = ["grader/checks/properties", "grader/checks/reference", "grader/standins", "grader/diagnose", "kit", "lab",
           "classroom/notebook"]
# Teaching text that ships: the module guides hold formulas and questions, never the answers (those stay in
# solutions/ANSWERS.md); what the experiments measured and the benchmarks the guides quote (no code).
DOCS = ["docs/guide-residual.md", "docs/guide-rmsnorm.md", "docs/guide-attention.md", "docs/guide-block.md",
        "docs/guide-decoder.md", "docs/experiments.md", "BENCHMARKS.md"]
# A line put on top of a shipped doc: what in it is not part of this release
# (worded in the release's language: the catalog, make locale)
NOTES = {"BENCHMARKS.md": N_("> Measured on the course's full kit: the commands below (`make bench`, `make test`, "
                             "...) are its own, not this release's."),
         "docs/experiments.md": N_("> The experiments' code comes with a later release (your instructor hands it out "
                                   "after the due date); until then `make experiments` says so, and this page shows "
                                   "what the reference measured.")}
# With --with-experiments (after the due date, say) the experiments' code ships too.
EXPERIMENTS = ["lab/variants.py", "lab/experiments"]
DATA = ["data/tinyshakespeare.txt", "grader/checks/pytest.ini", "requirements.txt"]
# A release in another language (--lang): {language: the suffix of its files}. Its README comes from
# templates/README.<suffix>.md.tmpl (and templates/platforms.<suffix>.md), its guides from docs/<suffix>/,
# shipped under the English names so that every link holds, its stubs' text from solutions/<language>/
# (classroom/stubs.py), and locale/default names the language, which the grader then speaks. The message
# catalogs (locale/*/LC_MESSAGES/*.mo) ship in every release: `make check LANG=zh` works in an English one too.
LOCALES = {"zh": "zh-CN"}


class ReleaseError(Exception):
    """The release cannot be built (solution code would ship, a folder cannot be written): nothing is written."""


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
    for name in syllabus.FILES:
        for line in region_lines((Path(solutions) / name).read_text(), name):
            code = normalise(line.text) if line.inside else ""
            if len(code) >= MIN_CHARS and code not in TRIVIAL:
                out.setdefault(code, f"solutions/{name}:{line.number}")
    return out


def leaks_in(texts, solutions=KIT / "solutions"):
    """``[(where, line number, code, where in the solutions)]`` for each solution line in ``{where: text}``."""
    secret = {k: v for k, v in solution_lines(solutions).items() if k not in GIVEN}
    found = []
    for where, text in texts.items():
        for no, line in enumerate(text.splitlines(), start=1):
            code = normalise(line)
            if code in secret:
                found.append((where, no, code, secret[code]))
    return found


def find_leaks(root, solutions=KIT / "solutions", exempt=()):
    """``[(file, line number, code, where in the solutions)]`` for each solution line found under root.

    ``exempt``: paths (relative to root) the instructor chose to hand out as they are.
    """
    texts = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        if not path.is_file() or any(_under(rel, e) for e in exempt):
            continue
        try:
            texts[rel] = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
    return leaks_in(texts, solutions)


# -- which files ship ---------------------------------------------------------------------------

def _module_file(name):
    """``grader.harness`` -> Path of grader/harness.py (or a package's __init__), else None."""
    base = KIT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path):
    """Kit modules a file imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    parts = list(path.relative_to(KIT).with_suffix("").parts)
    package = parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names if _module_file(f"{mod}.{a.name}"))
    return {m for m in found if m.split(".")[0] in ("grader", "lab", "kit", "classroom") and _module_file(m)}


def _under(rel, path):
    return rel == path or rel.startswith(path.rstrip("/") + "/")


def plan(experiments=False):
    """``(files to copy, {held-back file: reason})``, paths relative to KIT."""
    start = [KIT / p for p in ENTRY]
    for folder in FOLDERS:
        start += [p for p in sorted((KIT / folder).rglob("*.py")) if "__pycache__" not in p.parts]
    files, todo = set(), list(start)
    while todo:
        path = todo.pop()
        rel = str(path.relative_to(KIT))
        if rel in files or rel in OPTIONAL:
            continue
        files.add(rel)
        todo += [_module_file(m) for m in _imports(path)]
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
    return sorted(files - set(withheld)), {**withheld, **OPTIONAL}


# -- templates ------------------------------------------------------------------------------------

def render_makefile(shipped):
    """The Makefile template, minus the targets whose ``-m lab.X`` module does not ship."""
    text = (TEMPLATES / "Makefile.tmpl").read_text()
    blocks, out = re.split(r"\n(?=\S[^\n=]*:[^=])", text), []
    phony = []
    for block in blocks:
        mods = re.findall(r"-m (lab(?:\.\w+)+)", block)
        m = re.match(r"([a-z][\w-]*):", block)
        if any(_module_file(m) is None or str(_module_file(m).relative_to(KIT)) not in shipped for m in mods):
            if m:  # the target stays, and says why it cannot run here (the docs mention it)
                out.append(f"{m.group(1)}:  ## comes with a later release\n\t@echo \"error: make {m.group(1)} needs "
                           "code that is not in this release yet: your instructor hands it out later\" >&2; exit 2\n")
                phony.append(m.group(1))
            continue
        out.append(block)
        if m:
            phony.append(m.group(1))
    return "\n".join(out).replace("@PHONY@", " ".join(phony))


def render_readme(lang=None):
    """The student README: the template with the syllabus's points table put in (in ``lang``, from its template)."""
    from classroom.docs import platforms
    if lang in (None, "en"):
        return (TEMPLATES / "README.md.tmpl").read_text().replace(
            "@POINTS@", syllabus.points_table().rstrip("\n")).replace("@PLATFORMS@", platforms().rstrip("\n"))
    suffix = LOCALES[lang]
    return (TEMPLATES / f"README.{suffix}.md.tmpl").read_text(encoding="utf-8").replace(
        "@POINTS@", points_table(lang).rstrip("\n")).replace(
        "@PLATFORMS@", (TEMPLATES / f"platforms.{suffix}.md").read_text(encoding="utf-8").rstrip("\n"))


def points_table(lang):
    """The syllabus's points table in ``lang``: its header, and what each unit builds from the catalog."""
    words = i18n.translation(lang).gettext
    lines = syllabus.points_table().splitlines(keepends=True)
    header = {"zh": "| 文件 | 你要写的 | 分值 |\n"}[lang]
    out = [header, lines[1]]
    for line, unit in zip(lines[2:], syllabus.ALL):
        line = line.replace(f"| {unit.builds} |", f"| {words(unit.builds)} |")
        out.append(line.replace("| (the final project) |", "| （期末项目） |") if not unit.code else line)
    return "".join(out)


def translated_guides(lang):
    """``{docs/X.md: its text in lang}``: the guides and the experiments' page of docs/<suffix>/, their links made
    relative to docs/."""
    folder = KIT / "docs" / LOCALES[lang]
    return {f"docs/{p.name}": p.read_text(encoding="utf-8").replace("](../", "](")
            for p in sorted(folder.glob("*.md")) if f"docs/{p.name}" in DOCS}


def build(out=DEFAULT_OUT, github=False, quiet=False, experiments=False, lang=None):
    """Write the release to ``out`` (atomically: a finished tree replaces the old one). Returns out.

    ``lang`` (``"zh"``): the README, the stubs and the guides in that language, which the grader speaks there.

    ``github`` adds the GitHub Classroom workflow (classroom/github.py) as .github/workflows/classroom.yml,
    for a template repository (see docs/classroom.md).
    """
    from grader.snapshot import record
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ReleaseError(f"--out {out}: is a file; give the folder to write the release to")
    files, withheld = plan(experiments)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".student-", dir=out.parent))
    except OSError as e:
        raise ReleaseError(f"cannot write {out.parent}: {e.strerror or e}") from None
    try:
        os.chmod(stage, 0o755)  # mkdtemp's 0700 is for secrets; this is for everyone
        catalogs = [str(p.relative_to(KIT)) for p in sorted((KIT / "locale").glob("*/LC_MESSAGES/*.mo"))]
        for rel in files + DATA + DOCS + catalogs + [str(p.relative_to(KIT))
                                                     for p in sorted((KIT / "docs" / "img").glob("*"))]:
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(KIT / rel, stage / rel)
        if lang not in (None, "en"):
            for rel, text in translated_guides(lang).items():
                (stage / rel).write_text(text, encoding="utf-8")
            (stage / "locale" / "default").write_text(f"{lang}\n", encoding="utf-8")
        for rel, note in NOTES.items():
            if rel in DOCS and not (experiments and rel == "docs/experiments.md"):
                text = (stage / rel).read_text(encoding="utf-8")
                title, _, rest = text.partition("\n\n")
                note = i18n.translation(lang).gettext(note)
                (stage / rel).write_text(f"{title}\n\n{note}\n\n{rest}", encoding="utf-8")
        _, recorded = record(path=stage / "grader" / "snapshots" / "published.pack")
        (stage / "exercises").mkdir()
        for name, text in generate(lang=lang).items():
            (stage / "exercises" / name).write_text(text, encoding="utf-8")
        (stage / "Makefile").write_text(render_makefile(set(files)))
        (stage / "README.md").write_text(render_readme(lang), encoding="utf-8")
        (stage / ".gitignore").write_text((TEMPLATES / "gitignore.tmpl").read_text())
        if github:
            from classroom.github import workflow
            (stage / ".github" / "workflows").mkdir(parents=True)
            (stage / ".github" / "workflows" / "classroom.yml").write_text(workflow())
        leaks = find_leaks(stage, exempt=EXPERIMENTS if experiments else ())
        leaks += leaks_in({f"grader/snapshots/published.pack (string {i})": s
                           for i, s in enumerate(recorded.strings())})
        if leaks:
            lines = "\n".join(f"  {f}:{n}: {code}   (= {where})" for f, n, code, where in leaks)
            raise ReleaseError(f"solution code would ship; nothing written to {out}:\n{lines}")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=out.parent))
            os.replace(out, old / "student")
            os.replace(stage, out)
            shutil.rmtree(old)
        else:
            os.replace(stage, out)
    except OSError as e:
        raise ReleaseError(f"cannot write the release to {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not quiet:
        n = sum(1 for p in out.rglob("*") if p.is_file())
        print(f"wrote {out} ({n} files; every check, the reference's answers on the published inputs, "
              "no solution code)")
        for f, why in sorted(withheld.items()):
            print(f"  withheld {f}: {why}")
    return out


def main(argv=None):
    p = ArgumentParser(prog="python -m classroom.release", description="Build the student release.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write it (default: %(default)s)")
    p.add_argument("--github", action="store_true",
                   help="add the GitHub Classroom workflow as .github/workflows/classroom.yml")
    p.add_argument("--with-experiments", action="store_true",
                   help="ship lab/experiments and lab/variants.py too (they spell out the block's and the "
                        "model's wiring: hand them out after the due date)")
    p.add_argument("--lang", choices=["en", *LANGUAGES], default="en",
                   help="the language of the README, the stubs and the guides, and of the grader there "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        build(args.out, github=args.github, experiments=args.with_experiments, lang=args.lang)
    except (ReleaseError, RegionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
