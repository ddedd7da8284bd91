"""``nbgrader autograde`` without trusting the student's kernel.

The course's ``nbgrader_config.py`` (written by ``python -m classroom.nbgrader``) calls ``configure(c)``,
which puts two preprocessors of this module into nbgrader's autograde pipeline:

* ``KitExecute``, in place of nbgrader's ``Execute``. It reads the notebook's code *before* the kernel runs
  (the solution cells of the submitted notebooks, the read-only parts from the course's source notebooks),
  runs the notebook in a kernel for its outputs (in the sandbox below, with no seed in its environment and
  the kit's test cells doing nothing there), then grades that code **outside the kernel** with the kit's
  grader, exactly as ``python -m grader --untrusted --only UNIT`` does (``grader.runner.run``: its own process,
  the sandboxed worker, the live reference, the course's secret seed). Every graded cell's output is then
  replaced by the grader's own message for its check; every other output is cleaned (no HTML or script,
  no path of the grading machine).
* ``SaveKitGrades``, right after nbgrader's ``SaveAutoGrades``: writes the grader's score of every graded
  code cell of the notebook into the gradebook (nbgrader's ``Gradebook`` API), whatever the cells show, so
  ``nbgrader export`` holds the grader's scores. What the kernel prints cannot raise them.

**The kernel's sandbox** (``KernelSandbox``), where bubblewrap can start (Linux with user namespaces): new
user, PID, network, IPC and UTS namespaces; read-only: the system's libraries, the Python installation and
a copy of the kit as the student release ships it (no ``solutions/``, none of what ``classroom.release``
withholds, no course text, no bytecode), mounted at ``/opt/transformer-kit``; writable: a private ``/tmp``
and the notebook's own autograded folder, mounted at ``/home/student/<assignment>`` (the rest of its file
system is read-only); nothing else of the course folder (no other submission, no gradebook, no ``nbgrader_config.py``). The kernel talks to nbgrader
over Unix sockets in a folder of its own. Its memory is bounded (``KERNEL_MEMORY_MB``, 4,096 MB): by a memory cgroup
where the grading can make one (root), which counts its children and shared memory too and is killed whole at
the end, else by RLIMIT_AS; the log's isolation line says which. Where bubblewrap cannot start, autograde refuses unless the
instructor allows a weak sandbox (``GRADER_ALLOW_WEAK_SANDBOX=1`` or
``c.KitExecute.allow_weak_sandbox = True``): then the kernel is an ordinary process of the instructor's
user, with ``GRADER_SEED`` removed from its environment but able to read what that user can. The points
still come from the grader outside it; the secrecy and the other submissions then do not hold
(docs/nbgrader.md).
"""
import atexit
import datetime
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from classroom.notebook.grading import FINAL_GRADING_TIMEOUT, GRADING_TIMEOUT, OUTSIDE, notebook_message, pictures_of
from classroom.notebook.training import CHECKPOINT
from classroom.regions import cell_source, join_parts, parse_header
from grader.report import note, title
from grader.sandbox import bwrap_works, ro_bind_args
from kit.i18n import _
from kit.outcome import T, render
from kit.syllabus import ASSIGNMENT, MODULES, unit

KIT = Path(__file__).resolve().parent.parent
SANDBOX_KIT = "/opt/transformer-kit"
SANDBOX_HOME = "/home/student"
TMP_MB = 512  # the kernel's private /tmp (the workspace's five files, matplotlib's cache)
# The kernel's memory (c.KitExecute.kernel_memory_mb, $GRADER_KERNEL_MEMORY_MB): the grader's worker has the same
# default. A notebook's kernel imports torch and matplotlib (about 0.5 GB) and at autograde trains nothing.
KERNEL_MEMORY_MB = 4096
# Runs first in the kernel's command line (before bubblewrap, as nbgrader's user): joins the kernel's memory cgroup
# (argv[1], its cgroup.procs; empty where none could be made), so that everything the kernel starts counts against
# its limit, volunteers for the OOM killer, caps its address space (argv[2], bytes), then becomes the command.
CONFINE = """import os, resource, sys
procs, address = sys.argv[1], int(sys.argv[2])
if procs:
    with open(procs, "w") as f:
        f.write(str(os.getpid()))
try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
except OSError:
    pass
try:
    resource.setrlimit(resource.RLIMIT_AS, (address, address))
except (ValueError, OSError):  # already lower (a hard limit of the instructor's): that one holds
    pass
os.execv(sys.argv[3], sys.argv[3:])
"""
CHECK_CALL = re.compile(r"""nb\.check\(\s*((?:'[\w.]+'|"[\w.]+")(?:\s*,\s*(?:'[\w.]+'|"[\w.]+"))*)""")
NOTEBOOK_UNIT = {unit(m).notebook: m for m in [*MODULES, "final"]}


class AutogradeError(Exception):
    """The grading machinery failed (not the submission): nbgrader reports the notebook as not graded."""


# ---------------------------------------------------------------------------------------------------------
# The code of a submission, read before any of it runs
# ---------------------------------------------------------------------------------------------------------

def _cells(nb):
    if not isinstance(nb, dict):
        nb = json.loads(Path(nb).read_text(encoding="utf-8"))
    return nb.get("cells", [])


def _meta(cell):
    m = cell.get("metadata", {}).get("nbgrader", {})
    return m if isinstance(m, dict) else {}


def module_file(module, source_nb, submitted_nb):
    """``(file text, None)`` for ``module``: the source notebook's ``%%module`` parts, its solution parts taken from
    the submitted notebook (the cell with the same grade id, whose first line still names the same part);
    or ``(None, why)`` when a part is missing (the module is then graded as the kit's stub, as in the kernel);
    ``why`` is a ``Text``, worded where the feedback shows it."""
    try:
        submitted = {_meta(c).get("grade_id"): c for c in _cells(submitted_nb) if c.get("cell_type") == "code"
                     and _meta(c).get("grade_id")} if submitted_nb is not None else {}
    except (OSError, ValueError, AttributeError) as e:
        return None, T("{notebook} is not a readable notebook ({error_type})", notebook=Path(submitted_nb).name,
                       error_type=type(e).__name__)
    parts, total = {}, None
    for cell in _cells(source_nb):
        text = cell_source(cell)
        if cell.get("cell_type") != "code" or not text.startswith("%%module"):
            continue
        first, _, body = text.partition("\n")
        m, part, total = parse_header(first)
        if m != module:
            continue
        if _meta(cell).get("solution"):
            if submitted_nb is None:
                return None, T("its notebook was not submitted")
            theirs = submitted.get(_meta(cell)["grade_id"])
            if theirs is None:
                return None, T("part {part} of {module}.py is missing from {notebook}", part=part, module=module,
                               notebook=Path(submitted_nb).name)
            their_first, _, body = cell_source(theirs).partition("\n")
            try:
                if parse_header(their_first) != (m, part, total):
                    raise ValueError
            except ValueError:
                return None, T("the cell of part {part} of {module}.py in {notebook} does not start with `{header}` "
                               "any more", part=part, module=module, notebook=Path(submitted_nb).name, header=first)
        parts[part] = body
    if total is None or sorted(parts) != list(range(1, total + 1)):
        raise AutogradeError(f"the source notebook {Path(source_nb).name} does not hold {module}.py")
    return join_parts(parts[k] for k in range(1, total + 1)), None


def stub(module):
    return (KIT / "exercises" / f"{module}.py").read_text(encoding="utf-8")


def submission_files(source_dir, submitted_dir, own):
    """``({module: text}, [notes])``: the five files graded for the notebook of unit ``own``; the notes are
    ``Text``s, worded where the feedback shows them.

    ``own``'s file comes from its notebook's solution cells (the kit's stub where a part is missing); the
    others from the student's other notebooks where complete and valid Python (never imported here),
    else the kit's stubs (the grader's stand-ins take their place in a module's checks anyway); the final
    project takes all five from the module notebooks."""
    files, notes = {}, []
    for m in MODULES:
        name = f"{unit(m).notebook}.ipynb"
        sub = Path(submitted_dir) / name
        text, why = module_file(m, Path(source_dir) / name, sub if sub.is_file() else None)
        if text is not None and m != own:
            try:
                compile(text, f"{m}.py", "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as e:
                text, why = None, T("{notebook} has a syntax error ({error_type})", notebook=name,
                                    error_type=type(e).__name__)
        if text is None:
            text = stub(m)
            if m == own or own == "final":
                notes.append(T("{module}.py: graded as the kit's stub: {why}", module=m, why=why))
        files[m] = text
    return files, notes


# ---------------------------------------------------------------------------------------------------------
# The kernel's sandbox
# ---------------------------------------------------------------------------------------------------------

_KIT_VIEW = {}


def _student_kit():
    """A copy of the kit as the student release ships it, for the kernel to read (made once per process)."""
    if "kit" in _KIT_VIEW:
        return _KIT_VIEW["kit"]
    from classroom.release import OPTIONAL, WITHHELD
    held = {*WITHHELD, *OPTIONAL}
    root = Path(tempfile.mkdtemp(prefix="kit-kernel-view-"))
    atexit.register(shutil.rmtree, root, True)
    wanted = ["kit", "grader", "lab", "exercises", "classroom/notebook", "classroom/__init__.py",
              "classroom/regions.py", "data/tinyshakespeare.txt", "locale"]
    for rel in wanted:
        src = KIT / rel
        if not src.exists():
            continue
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / rel)
            continue
        for f in sorted(src.rglob("*")):
            r = f.relative_to(KIT).as_posix()
            if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".pyc" or \
                    any(r == h or r.startswith(h + "/") for h in held):
                continue
            (root / r).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / r)
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    _KIT_VIEW["kit"] = root
    return root


def kernel_env(base, sandboxed, notebook_dir, seedless=("GRADER_SEED",)):
    """The kernel's environment: in the sandbox only what it needs; otherwise the instructor's, less the seed."""
    marks = {"NBGRADER_EXECUTION": "autograde", OUTSIDE: "outside", "PYTHONDONTWRITEBYTECODE": "1"}
    if not sandboxed:
        env = {k: v for k, v in base.items() if k not in seedless and not k.startswith("GRADER_")}
        return {**env, **marks}
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": base.get("LANG", "C.UTF-8"), "HOME": "/tmp",
           "TMPDIR": "/tmp", "USER": "student", "TRANSFORMER_KIT": SANDBOX_KIT, "MPLCONFIGDIR": "/tmp/matplotlib",
           "IPYTHONDIR": "/tmp/ipython", "OMP_NUM_THREADS": base.get("OMP_NUM_THREADS", "2"), **marks}
    for k in ("TRANSFORMER_KIT_TRAINING", "KIT_LANG", "LC_ALL", "LC_MESSAGES"):  # training at grading; language
        if k in base:
            env[k] = base[k]
    return env


class SandboxedKernelManager(AsyncKernelManager):
    """Launches ipykernel for ``KitExecute``: under bubblewrap (``sandbox``) or as a plain process, with the
    environment ``kernel_env`` makes, in the notebook's folder, over Unix sockets in a private folder."""

    notebook_dir = Unicode("")
    assignment = Unicode(ASSIGNMENT)
    sandbox = Bool(True)
    memory_procs = Unicode("")  # cgroup.procs of the kernel's memory cgroup ("": none)
    address_mb = Integer(0)  # the kernel's RLIMIT_AS (0: none, where resource limits do not exist)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.private = Path(tempfile.mkdtemp(prefix="kit-kernel-"))
        os.chmod(self.private, 0o700)
        self.transport = "ipc"
        self.ip = str(self.private / "kernel")
        self.connection_file = str(self.private / "kernel.json")

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self.private, ignore_errors=True)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        extra = [a for a in kernel_cmd if a.startswith("--HistoryManager")]
        args = [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file, *extra]
        base = kw.get("env") or dict(os.environ)
        kw["env"] = kernel_env(base, self.sandbox, self.notebook_dir)
        if self.sandbox:
            kw["cwd"] = "/"
            kernel_cmd = self.bwrap(args)
        else:
            kw["cwd"] = self.notebook_dir
            kernel_cmd = args
        if self.address_mb:
            kernel_cmd = [sys.executable, "-I", "-c", CONFINE, self.memory_procs, str(self.address_mb << 20),
                          *kernel_cmd]
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    def bwrap(self, args):
        home = f"{SANDBOX_HOME}/{self.assignment}"
        cmd = [shutil.which("bwrap"), "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--hostname", "grading", "--size", str(TMP_MB << 20), "--tmpfs", "/tmp"]
        cmd += ro_bind_args()
        cmd += ["--ro-bind", str(_student_kit()), SANDBOX_KIT, "--dir", SANDBOX_HOME,
                "--bind", self.notebook_dir, home, "--bind", str(self.private), str(self.private),
                "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", home,
                # its parent is bubblewrap, not nbgrader: ipykernel would take PID 1 for a dead parent
                "--unsetenv", "JPY_PARENT_PID"]
        return cmd + ["--", *args]


# ---------------------------------------------------------------------------------------------------------
# What the feedback may show
# ---------------------------------------------------------------------------------------------------------

IMAGE = re.compile(r"[A-Za-z0-9+/=\s]*")
TMP_PATH = re.compile(r"(?:/tmp|/var/tmp|/dev/shm)/[^\s'\"/:]+/")


def scrub(text, paths):
    for p in sorted({str(x) for x in paths if x and len(str(x)) > 1}, key=len, reverse=True):
        text = text.replace(p + "/", "").replace(p, "")
    return TMP_PATH.sub("", text)


def clean_output(out, paths):
    """An output of a cell the kernel ran, as the feedback may show it: text (scrubbed of the grading
    machine's paths) and plain PNG/JPEG images; no HTML, script, SVG, Markdown or metadata."""
    kind = out.get("output_type")
    if kind == "stream":
        return NotebookNode(output_type="stream", name=out.get("name", "stdout"), text=scrub(str(out.get("text", "")),
                                                                                              paths))
    if kind == "error":
        tb = [scrub(str(x), paths) for x in out.get("traceback", [])][-60:]
        return NotebookNode(output_type="error", ename=scrub(str(out.get("ename", "")), paths)[:200],
                            evalue=scrub(str(out.get("evalue", "")), paths), traceback=tb)
    if kind in ("display_data", "execute_result"):
        data = out.get("data", {})
        keep = {}
        for mime in ("image/png", "image/jpeg"):
            if isinstance(data.get(mime), str) and IMAGE.fullmatch(data[mime]):
                keep[mime] = data[mime]
        plain = data.get("text/plain")
        if plain is not None:
            keep["text/plain"] = scrub("".join(plain) if isinstance(plain, list) else str(plain), paths)
        if not keep:
            return None
        node = NotebookNode(output_type=kind, data=keep, metadata={})
        if kind == "execute_result":
            node.execution_count = out.get("execution_count")
        return node
    return None


MARKDOWN_LINK = re.compile(r"\]\(\s*(?:javascript|vbscript|data):", re.I)


def clean_markdown(text):
    """A student's Markdown as the feedback may render it: no raw HTML, no script links."""
    return MARKDOWN_LINK.sub("](#", text.replace("<", "&lt;"))


def stream(text, name="stdout"):
    return NotebookNode(output_type="stream", name=name, text=text)


# ---------------------------------------------------------------------------------------------------------
# The preprocessors
# ---------------------------------------------------------------------------------------------------------

class KitExecute(Execute):
    """nbgrader's Execute, with the kernel in the sandbox and every graded cell decided by the grader outside it."""

    seed = Unicode("", help="the course's grading seed (default: $GRADER_SEED; empty: a fresh secret one per "
                            "grading)").tag(config=True)
    allow_weak_sandbox = Bool(False, help="run the kernel and grade even where bubblewrap cannot start "
                                          "(default: $GRADER_ALLOW_WEAK_SANDBOX)").tag(config=True)
    grading_user = Unicode("", help="run the graded code as this OS user (needs root; python -m grader "
                                    "--user)").tag(config=True)
    kernel_memory_mb = Integer(0, help="the notebook kernel's memory limit in MB (default: $GRADER_KERNEL_MEMORY_MB, "
                                       f"else {KERNEL_MEMORY_MB})").tag(config=True)

    def _weak_allowed(self):
        return self.allow_weak_sandbox or bool(os.environ.get("GRADER_ALLOW_WEAK_SANDBOX"))

    def _kernel_memory(self):
        """The kernel's memory bound: ``(its memory cgroup or None, RLIMIT_AS in MB or 0, the bound in words)``. A
        memory cgroup where one can be made (root, a writable cgroup file system: grader/cgroup.py): it counts
        everything the kernel touches, its children and shared memory included; else RLIMIT_AS on each process."""
        from grader import cgroup
        mb = self.kernel_memory_mb
        if not mb:
            raw = os.environ.get("GRADER_KERNEL_MEMORY_MB", "").strip()
            try:
                mb = int(raw) if raw else KERNEL_MEMORY_MB
            except ValueError:
                raise AutogradeError(f"GRADER_KERNEL_MEMORY_MB must be a whole number of MB, not {raw!r}") from None
        if mb < 256:
            raise AutogradeError(f"the kernel's memory limit must be at least 256 MB, not {mb}")
        if sys.platform != "linux":  # no cgroups; macOS does not enforce RLIMIT_AS, Windows has no rlimits
            return None, 0, f"memory: not limited ({sys.platform})"
        group = cgroup.Group.create("kit-kernel", mb)
        if group is None:
            return None, mb, f"memory: RLIMIT_AS of {mb} MB per process"
        # torch reserves far more address space than it touches: the cgroup bounds what is used
        return group, max(4 * mb, 4096), f"memory: cgroup of {mb} MB"

    def preprocess(self, nb, resources, km=None):
        group, address_mb, bound = self._kernel_memory()
        try:
            return self._preprocess(nb, resources, km, group, address_mb, bound)
        finally:
            if group is not None:
                group.remove()

    def _preprocess(self, nb, resources, km, group, address_mb, bound):
        info = resources.get("nbgrader", {})
        notebook, student = info.get("notebook"), info.get("student")
        assignment = info.get("assignment") or ASSIGNMENT
        here = Path(resources.get("metadata", {}).get("path") or ".").resolve()
        module = NOTEBOOK_UNIT.get(notebook)
        if module is None:  # not one of the kit's notebooks: nbgrader's own Execute, in the same sandbox
            files, notes = None, []
        else:
            source_dir, submitted_dir = self._dirs(assignment, student)
            files, notes = submission_files(source_dir, submitted_dir, module)
        sandbox = bwrap_works()
        if not sandbox and not self._weak_allowed():
            raise AutogradeError(
                "refusing to run a student's notebook with no sandbox: bubblewrap cannot start here (install the "
                "`bubblewrap` package, or allow user namespaces); set GRADER_ALLOW_WEAK_SANDBOX=1 (or "
                "c.KitExecute.allow_weak_sandbox = True) to grade anyway: the points still come from the grader, "
                "but the kernel can then read what you can (docs/nbgrader.md)")
        self.isolation = ("bubblewrap" if sandbox else "none (the instructor's user; GRADER_SEED removed)") + \
            f"; {bound}"
        self.log.info("transformer kit: running %s in a kernel with isolation: %s", notebook, self.isolation)
        self.kernel_manager_class = SandboxedKernelManager
        self._kernel_options = {"notebook_dir": str(here), "assignment": assignment, "sandbox": sandbox,
                                "memory_procs": str(group.folder / "cgroup.procs") if group is not None else "",
                                "address_mb": address_mb}
        died = None
        try:
            nb, resources = super().preprocess(nb, resources, km=km)
        except Exception as e:  # noqa: BLE001 - a kernel the notebook killed or hung still gets its code graded
            died = f"{type(e).__name__}"
            self.log.warning("transformer kit: the kernel of %s stopped: %s", notebook, e)
        paths = [KIT, here, here.parent.parent.parent, Path(tempfile.gettempdir()), Path.home(), _KIT_VIEW.get("kit"),
                 SANDBOX_KIT, f"{SANDBOX_HOME}/{assignment}"]
        for cell in nb.cells:
            m = _meta(cell)
            if cell.cell_type == "code":  # a kit notebook's test cells get the grader's output below
                cell.outputs = [o for o in (clean_output(o, paths) for o in cell.get("outputs", [])) if o is not None]
            elif cell.cell_type == "markdown" and not m.get("locked"):
                cell.source = clean_markdown(cell.source)
                cell.pop("attachments", None)
        if module is None:
            return nb, resources
        grading = self._grade(module, files, here)
        if died and group is not None and group.oom_kills():
            self.log.warning("transformer kit: the kernel of %s went over its memory limit of %d MB", notebook,
                             group.limit_mb)
            notes = [*notes, T("the notebook's kernel used more than the {mb} MB of memory a grading gives it and was "
                               "stopped before its last cell; the checks graded your code all the same",
                               mb=group.limit_mb)]
        elif died:
            notes = [*notes, T("the notebook's kernel stopped before its last cell; the checks graded your code all "
                               "the same")]
        scores = self._write_outputs(nb, module, grading, notes)
        resources.setdefault("transformer_kit", {})["scores"] = scores
        resources["transformer_kit"]["isolation"] = self.isolation
        return nb, resources

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        for k, v in getattr(self, "_kernel_options", {}).items():
            setattr(km, k, v)
        return km

    def _dirs(self, assignment, student):
        from nbgrader.coursedir import CourseDirectory
        cd = CourseDirectory(config=self.config)
        return (Path(cd.format_path(cd.source_directory, ".", assignment)),
                Path(cd.format_path(cd.submitted_directory, student, assignment)))

    def _grade(self, module, files, here):
        from grader import runner
        work = Path(tempfile.mkdtemp(prefix="kit-autograde-"))
        try:
            folder = work / "submission"
            folder.mkdir()
            for m, text in files.items():
                (folder / f"{m}.py").write_text(text, encoding="utf-8")
            checkpoint = None
            if module == "final":
                checkpoint = here / CHECKPOINT
            seed = self.seed or os.environ.get("GRADER_SEED", "")
            t0 = time.monotonic()
            out = runner.run(folder, work / "run", [module],
                             timeout=FINAL_GRADING_TIMEOUT if module == "final" else GRADING_TIMEOUT,
                             checkpoint=checkpoint, checkpoint_shown=CHECKPOINT, user=self.grading_user or None,
                             seed=seed or None, untrusted=True, allow_weak=self._weak_allowed(),
                             html=work / "report.html")
            self.log.info("transformer kit: graded %s.py outside the kernel in %.1f s: %s (%s)", module,
                          time.monotonic() - t0, out.status, out.grading.isolation if out.grading else out.message)
            if out.status in ("invalid", "refused", "grader-error", "crashed", "interrupted"):
                raise AutogradeError(f"the grader could not grade {module}.py ({out.status}): {out.message}\n"
                                     f"{out.output[-2000:]}")
            pictures = pictures_of(work / "report.html")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {"outcome": out, "pictures": pictures}

    def _write_outputs(self, nb, module, grading, notes):
        out = grading["outcome"]
        results = {r.check: r for r in out.grading.results} if out.grading is not None else {}
        scores, noted, drawn = {}, False, False
        for cell in nb.cells:
            m = _meta(cell)
            if cell.cell_type != "code" or not m.get("grade") or m.get("solution"):
                continue
            ids = check_ids(cell.source)
            lines, failed = [], []
            if notes and not noted:  # once, in the first test cell
                lines += [_("Note: {note}").format(note=render(n)) for n in notes]
                noted = True
            if not ids:
                failed.append(_("this cell calls no check of the grader: ask the course staff"))
            for i in ids:
                r = results.get(i)
                if r is None:
                    why = render(out.message) if out.grading is None else _("this check did not run")
                    failed.append(_("{check}: not graded: {why}").format(check=i, why=why))
                    continue
                mark = _("INFO") if r.points == 0 else (_("PASS") if r.passed else _("FAIL"))
                lines.append(f"{mark} {_num(r.score)}/{_num(r.points)}  {title(r)}")
                if r.passed and r.note:
                    lines.append("      " + note(r))
                elif not r.passed and r.points == 0:
                    lines.append("      " + notebook_message(r).replace("\n", "\n      "))
                elif not r.passed:
                    failed.append(notebook_message(r))
            got = [results[i] for i in ids if i in results]
            score = sum(r.score for r in got) if got and not any(i not in results for i in ids) else 0.0
            scores[m["grade_id"]] = min(float(score), float(m.get("points", 0)))
            outputs = [stream("\n".join(lines) + "\n")] if lines else []
            if failed:
                if grading["pictures"] and not drawn:  # the grader's own report's pictures, under the first failure
                    outputs.append(NotebookNode(output_type="display_data", metadata={},
                                                data={"text/html": grading["pictures"],
                                                      "text/plain": _("(pictures of what failed)")}))
                    drawn = True
                message = "\n\n".join(failed)
                outputs.append(NotebookNode(output_type="error", ename="CheckFailed", evalue=message,
                                            traceback=message.splitlines()))
            elif 0 < scores[m["grade_id"]] < float(m.get("points", 0)):
                outputs.append(NotebookNode(output_type="execute_result", metadata={}, execution_count=None,
                                            data={"text/plain": _num(scores[m["grade_id"]])}))
            cell.outputs = outputs
        return scores


def check_ids(source):
    m = CHECK_CALL.search(source)
    return re.findall(r"[\w.]+", m.group(1)) if m else []


def _num(x):
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


class SaveKitGrades(NbGraderPreprocessor):
    """After SaveAutoGrades: every graded code cell of this notebook gets the grader's score (KitExecute's),
    0 where the grader gave none, through nbgrader's Gradebook API."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook
        info = resources["nbgrader"]
        scores = resources.get("transformer_kit", {}).get("scores")
        if scores is None:
            if info["notebook"] in NOTEBOOK_UNIT:
                raise AutogradeError(f"{info['notebook']}: no grader scores (is KitExecute in "
                                     "c.Autograde.autograde_preprocessors?)")
            return nb, resources
        with Gradebook(info["db_url"]) as gb:
            sub = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            for grade in sub.grades:
                if grade.cell.cell_type != "code":
                    continue
                grade.auto_score = min(float(scores.get(grade.name, 0.0)), float(grade.max_score))
                grade.needs_manual_grade = grade.manual_score is not None
            gb.db.commit()
        return nb, resources


# ---------------------------------------------------------------------------------------------------------
# The course's configuration
# ---------------------------------------------------------------------------------------------------------

def configure(c):
    """Put the kit's preprocessors into ``nbgrader autograde`` and fix up the feedback (called by the
    course's nbgrader_config.py)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )
    c.Autograde.autograde_preprocessors = [KitExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                           SaveAutoGrades, SaveKitGrades, AssignLatePenalties, CheckCellMetadata]
    _patch_feedback()


def _patch_feedback():
    """generate_feedback: leave the trained checkpoints out (the student has them; 26-40 MB each), and give a
    submission placed by hand (no exchange: no timestamp.txt, no submission_secret.txt) the two files
    ``nbgrader release_feedback`` reads."""
    from nbgrader.converters import GenerateFeedback
    if getattr(GenerateFeedback, "_kit_patched", False):
        return
    copy_files = GenerateFeedback.init_assignment

    def init_assignment(self, assignment_id, student_id):
        ignore = list(self.coursedir.ignore)
        self.coursedir.ignore = ignore + ["*.pt", "*.pt.part"]
        try:
            copy_files(self, assignment_id, student_id)
        finally:
            self.coursedir.ignore = ignore
        dest = Path(self._format_dest(assignment_id, student_id))
        dest.mkdir(parents=True, exist_ok=True)
        if not (dest / "timestamp.txt").is_file():
            when = self.coursedir.get_existing_timestamp(self._format_source(assignment_id, student_id))
            stamp = when or datetime.datetime.now(datetime.timezone.utc)
            (dest / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z").strip())
        if not (dest / "submission_secret.txt").is_file():
            (dest / "submission_secret.txt").write_text(secrets.token_hex(64))
    GenerateFeedback.init_assignment = init_assignment
    GenerateFeedback._kit_patched = True
