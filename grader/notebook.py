"""The notebook side of the nbgrader course: save a notebook's code as the five files, run the grader's checks.

The course notebooks (built by ``python -m classroom.nbgrader``) use this module:

* a code cell that starts with ``%%module rmsnorm.py (part 2 of 3)`` is one
  part of a file: when every part has run, the parts are written to a folder
  of the five files (the notebook's workspace), the module is imported and its
  names are put in the notebook, so the code can be tried right there;
* an autograder test cell calls ``nb.check("visible/test_rmsnorm.py::test_parameters")``
  (a check's pytest node id under ``grader/checks``). The first call grades the
  whole module once with ``grader.run.grade`` and caches the results by the
  files' content; every call then raises ``AssertionError`` with the grader's
  messages when one of its checks failed, so nbgrader gives a cell its points
  exactly when the grader gives them to its checks;
* the final project collects the five files from the other notebooks, trains
  with ``python -m lab.train`` and runs the final check on the checkpoint.

The workspace's other modules come from the sibling notebooks in the same
folder when their code is complete and imports cleanly, else from the kit's
stubs (``exercises/``): a broken file in one notebook never costs another
notebook's points.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
STUBS = KIT / "exercises"
MODULES = ["residual", "rmsnorm", "attention", "block", "decoder"]
# notebook file names (without .ipynb) of the course, in order
NOTEBOOKS = {"residual": "01_residual", "rmsnorm": "02_rmsnorm", "attention": "03_attention",
             "block": "04_block", "decoder": "05_decoder", "final": "06_final_project"}
CHECKPOINT = "runs/final.pt"
TRAIN_MAX_MINUTES = 100  # the training cell's time limit (nbgrader_config.py) leaves room for start-up and the check
TRAINING_ENV = "TRANSFORMER_KIT_TRAINING"  # "off": the training cell never trains (grade submitted checkpoints only)
HEADER = re.compile(r"^%%module\s+(\w+)\.py\s+\(part\s+(\d+)\s+of\s+(\d+)\)\s*$")

_RESULTS = {}  # module -> (key, results): the latest grading of each module in this kernel


def header(module, part, total):
    """The first line of a notebook cell holding part ``part`` of ``module``.py."""
    return f"%%module {module}.py (part {part} of {total})"


def parse_header(line):
    """``(module, part, total)`` from a ``%%module`` line (with or without the ``%%module``)."""
    m = HEADER.match(line if line.startswith("%%") else "%%module " + line.strip())
    if not m or m.group(1) not in MODULES or not 1 <= int(m.group(2)) <= int(m.group(3)):
        raise ValueError(f"not a part header: {line!r} (expected e.g. `{header('rmsnorm', 1, 2)}`)")
    return m.group(1), int(m.group(2)), int(m.group(3))


def join_parts(parts):
    """A module's file text from its parts, in order."""
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


def notebook_parts(path):
    """``{module: {part: source}}`` and ``{module: total}`` from the ``%%module`` cells of an .ipynb file."""
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    parts, totals = {}, {}
    for cell in cells:
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if cell.get("cell_type") != "code" or not src.startswith("%%module"):
            continue
        first, _, body = src.partition("\n")
        try:
            module, part, total = parse_header(first)
        except ValueError:
            continue
        parts.setdefault(module, {})[part] = body
        totals[module] = total
    return parts, totals


# ---------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------

def _digest(folder, checkpoint):
    import hashlib
    h = hashlib.sha256()
    for f in MODULES:
        p = Path(folder) / f"{f}.py"
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    if checkpoint is not None:
        c = Path(checkpoint)
        h.update(f"{c.resolve()}:{c.stat().st_mtime_ns if c.exists() else None}".encode())
    return h.hexdigest()


def grade_module(module, impl_dir, checkpoint=None):
    """All the grader's results for ``module`` on ``impl_dir``: one grading run, cached by the files' content."""
    from .run import check_files, grade
    if not check_files([module]):
        raise AssertionError(f"this kit has no checks for {module!r} (grader/checks/visible/test_{module}.py is "
                             f"missing): ask your instructor to update the kit")
    key = (str(Path(impl_dir).resolve()), _digest(impl_dir, checkpoint))
    cached = _RESULTS.get(module)
    if cached is None or cached[0] != key:
        results = grade(impl_dir, only=[module], checkpoint=None if checkpoint is None else str(checkpoint))
        _RESULTS[module] = (key, results)
    return _RESULTS[module][1]


def check_id(result):
    """The id notebooks use for a check: its pytest node id under grader/checks (``visible/test_x.py::test_y``)."""
    return result.nodeid.split("grader/checks/", 1)[-1]


def run_checks(module, ids, impl_dir, checkpoint=None, out=print):
    """Run the grader's checks ``ids`` (None: all of the module's) on ``impl_dir``; return their Results.

    Prints one line per check and raises ``AssertionError`` with the grader's
    messages (what was checked, expected, got, hint) when a check worth points
    fails. 0-point checks (INFO) only print.
    """
    __tracebackhide__ = True
    results = grade_module(module, impl_dir, checkpoint)
    by_id = {check_id(r): r for r in results}
    wanted = list(by_id) if ids is None else list(ids)
    missing = [i for i in wanted if i not in by_id]
    if missing:
        hidden = [i for i in missing if i.startswith("hidden/")]
        why = ("hidden checks compare with the reference solutions, so they run only in the instructor's kit"
               if hidden and len(hidden) == len(missing) else "no such check in this kit's grader")
        raise AssertionError(f"these checks did not run: {', '.join(missing)} ({why})")
    if not wanted:
        raise AssertionError(f"no checks ran for {module!r}")
    failed = []
    for i in wanted:
        r = by_id[i]
        mark = "INFO" if r.points == 0 else ("PASS" if r.passed else "FAIL")
        out(f"{mark} {_num(r.score)}/{_num(r.points)}  {r.name}")
        if r.points == 0 and r.output:
            out("      " + r.output.replace("\n", "\n      "))
        elif not r.passed:
            failed.append(r)
    if failed:
        raise AssertionError("\n\n".join(f"{r.name} ({_num(r.points)} point{'' if r.points == 1 else 's'})\n{r.output}"
                                         for r in failed))
    return [by_id[i] for i in wanted]


def _num(x):
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# ---------------------------------------------------------------------------
# The notebook's workspace
# ---------------------------------------------------------------------------

class Notebook:
    """One course notebook's state: its module, its workspace folder of the five files, its parts."""

    def __init__(self, module, folder=None, notebooks_dir=".", shell=None, quiet=False):
        if module not in NOTEBOOKS:
            raise ValueError(f"unknown notebook module {module!r}: one of {', '.join(NOTEBOOKS)}")
        self.module = module
        self.own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix=f"tier2-{module}-")).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.notebooks_dir = Path(notebooks_dir)
        self.parts = {}
        self.sources = {}
        for m in MODULES:
            stub = STUBS / f"{m}.py"
            if not stub.is_file():
                raise FileNotFoundError(f"{stub} is missing: the kit's stubs are needed (run `make stubs`)")
            self._write(m, stub.read_text(encoding="utf-8"))
            self.sources[m] = "stub"
        others = MODULES if module == "final" else [m for m in MODULES if m != module]
        self._collect(others, quiet=quiet or module == "final")  # the final notebook collects in a cell of its own
        self.shell = shell if shell is not None else _ipython()
        if self.shell is not None:
            self.shell.register_magic_function(self._magic, magic_kind="cell", magic_name="module")
        if self.own_folder:
            import atexit
            atexit.register(shutil.rmtree, self.folder, True)

    # -- files ---------------------------------------------------------------

    def _write(self, module, text):
        path = self.folder / f"{module}.py"
        tmp = path.with_suffix(".py.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def _package(self):
        from lab.loader import package_name
        return package_name(self.folder)

    def _forget(self):
        """Drop the workspace's imported modules, so the next import reads the files again."""
        name = self._package()
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]

    def import_module(self, module):
        from lab.loader import import_module
        self._forget()
        return import_module(self.folder, module)

    def collect(self):
        """Write the five files from the module notebooks next to this one (stubs where one is not usable)."""
        self._collect(MODULES)

    def _collect(self, modules, quiet=False):
        """Take ``modules`` from the sibling notebooks where their code is complete and imports; else keep stubs."""
        lines = []
        for m in MODULES:
            if m not in modules:
                continue
            nb_file = self.notebooks_dir / f"{NOTEBOOKS[m]}.ipynb"
            stub = (STUBS / f"{m}.py").read_text(encoding="utf-8")
            if not nb_file.is_file():
                self._write(m, stub)
                self.sources[m] = "stub"
                lines.append(f"{m}.py: the kit's stub ({nb_file.name} not found)")
                continue
            try:
                parts, totals = notebook_parts(nb_file)
            except (OSError, ValueError) as e:
                self._write(m, stub)
                self.sources[m] = "stub"
                lines.append(f"{m}.py: the kit's stub ({nb_file.name} is not readable: {e})")
                continue
            got = parts.get(m, {})
            total = totals.get(m, 0)
            if not total or sorted(got) != list(range(1, total + 1)):
                self._write(m, stub)
                self.sources[m] = "stub"
                lines.append(f"{m}.py: the kit's stub ({nb_file.name} does not hold all parts of {m}.py)")
                continue
            self._write(m, join_parts(got[k] for k in range(1, total + 1)))
            try:
                self.import_module(m)
            except BaseException as e:  # a syntax error, a crash, an interrupted hang: that notebook's problem only
                self._write(m, stub)
                self.sources[m] = "stub"
                lines.append(f"{m}.py: the kit's stub (the code in {nb_file.name} does not import: "
                             f"{type(e).__name__}: {str(e)[:120]})")
                continue
            self.sources[m] = nb_file.name
            todo = " (still has NotImplementedError)" if "NotImplementedError" in join_parts(got.values()) else ""
            lines.append(f"{m}.py: from {nb_file.name}{todo}")
        self._forget()
        if not quiet and lines:
            print("\n".join(lines))
        return lines

    # -- the %%module cell magic ------------------------------------------------

    def _magic(self, line, cell):
        module, part, total = parse_header(line)
        parts = self.parts.setdefault(module, {})
        parts[part] = cell
        todo = [k for k in range(1, total + 1) if k not in parts]
        if todo:
            if min(todo) < part:  # run out of order: say what is missing (in order, later parts simply follow)
                print(f"part {part} of {module}.py saved; {module}.py is written once part(s) "
                      f"{', '.join(map(str, todo))} have run too")
            return
        self._write(module, join_parts(parts[k] for k in range(1, total + 1)))
        self.sources[module] = "this notebook"
        mod = self.import_module(module)
        if self.shell is not None:
            self.shell.user_ns.update({k: v for k, v in vars(mod).items() if not k.startswith("_")})

    # -- checks --------------------------------------------------------------------

    def check(self, *ids, checkpoint=None):
        """Run the grader's checks ``ids`` (``visible/test_rmsnorm.py::test_parameters``) on the workspace."""
        __tracebackhide__ = True
        modules = {re.search(r"test_(\w+)\.py", i).group(1) if re.search(r"test_(\w+)\.py", i) else None
                   for i in ids}
        if len(modules) != 1 or None in modules:
            raise ValueError(f"check ids of one module expected, like visible/test_rmsnorm.py::test_parameters: {ids}")
        if self.module in MODULES and self.sources.get(self.module) != "this notebook":
            raise AssertionError(f"the code cells of {self.module}.py above have not all run in this kernel, so "
                                 f"there is nothing of yours to check: run them first (each starts with "
                                 f"`%%module {self.module}.py (part k of n)`: keep that first line)")
        # returns nothing: nbgrader would read a test cell's displayed value as its partial credit
        run_checks(modules.pop(), ids, self.folder, checkpoint=checkpoint)

    def check_all(self, module, checkpoint=None):
        """Run every check of ``module`` on the workspace (used where the checks are not known in advance)."""
        __tracebackhide__ = True
        run_checks(module, None, self.folder, checkpoint=checkpoint)

    # -- training (final project) ---------------------------------------------

    def train(self, minutes=60, resume=False, checkpoint=CHECKPOINT):
        """Train the 4 x 256 model on the workspace's five files with ``python -m lab.train``, showing progress.

        An existing checkpoint is kept unless ``resume`` (then training goes on
        from it); interrupting the kernel stops training after a save.
        """
        path = Path(checkpoint).resolve()
        if os.environ.get(TRAINING_ENV, "on").lower() in ("off", "0", "no", "false"):
            print(f"training skipped: {TRAINING_ENV}={os.environ[TRAINING_ENV]} here, so the final check "
                  f"grades {checkpoint} as it is" + ("" if path.exists() else " (there is none)"))
            return
        if path.exists() and not resume:
            print(f"{checkpoint} exists, so it is not trained again: set RESUME = True to train it further, "
                  f"or delete it to start over")
            return
        minutes = float(minutes)
        if minutes > TRAIN_MAX_MINUTES:
            print(f"training for {TRAIN_MAX_MINUTES} minutes, the most this cell's time limit allows "
                  f"(run it again with RESUME = True to go on)")
            minutes = TRAIN_MAX_MINUTES
        cmd = [sys.executable, "-m", "lab.train", "--impl", str(self.folder), "--out", str(path),
               "--minutes", f"{minutes:g}"]
        if resume and path.exists():
            cmd.append("--resume")
        print("$ python -m lab.train " + " ".join(cmd[3:]), flush=True)
        code = _stream(cmd, cwd=KIT)
        if code not in (0, 130):
            raise RuntimeError(f"training stopped with exit status {code}: read the messages above")
        if path.exists():  # the trainer's own advice names its command line; in a notebook it is this
            print(f"\n{'interrupted: ' if code == 130 else ''}{checkpoint} is saved. To train it further, set "
                  f"RESUME = True and run this cell again.")


def _stream(cmd, cwd):
    """Run ``cmd`` and copy its output to this cell as it comes; Ctrl-C (kernel interrupt) is passed on."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                chunk = os.read(proc.stdout.fileno(), 4096)
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)  # the trainer saves its checkpoint, then exits
                continue
            if not chunk:
                break
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
