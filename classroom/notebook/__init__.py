"""The runtime of the nbgrader course's notebooks (built by ``python -m classroom.nbgrader``).

``nb = Notebook("rmsnorm")`` in a notebook's setup cell makes:

* a code cell that starts with ``%%module rmsnorm.py (part 2 of 3)`` one part of a file: when every
  part has run, the parts are written to the notebook's workspace (``workspace.py``), the module is
  imported and its names are put in the notebook, so the code can be tried right there;
* ``nb.check("rmsnorm.eps")`` an autograder test cell: it passes exactly when the grader gives that
  check its points (``grading.py``), and fails with that check's message alone;
* ``nb.train(...)`` the final project's training cell (``training.py``).

What it prints speaks the course's language: a course built in another language (``make nbgrader LANG=zh``)
holds ``locale/default`` in its assignment folder (``COURSE_LANGUAGE``: nbgrader copies it to the students'
folders and to the autograded ones), which sets the kernel's ``$KIT_LANG`` unless that is set already
(kit/i18n.py); the grader and the trainer the kernel starts inherit it.
"""
import os
import re
from pathlib import Path

from kit import i18n
from kit.i18n import _
from kit.syllabus import MODULES, NAMES

from ..regions import join_parts, parse_header
from .grading import GRADED_OUTSIDE, OUTSIDE, CheckFailed, autograding, run_checks
from .training import CHECKPOINT, MAX_MINUTES, train
from .workspace import Workspace, submitted_dirs

__all__ = ["Notebook", "CheckFailed", "CHECKPOINT", "MAX_MINUTES", "COURSE_LANGUAGE"]

# In the assignment folder of a course built in another language: that language (classroom/nbgrader.py writes it)
COURSE_LANGUAGE = "locale/default"


def course_language(dirs):
    """The language the course in ``dirs`` (the notebook's folder first) was built in, or None (English, or
    whatever kit/i18n.py chooses)."""
    for d in dirs:
        lang = i18n.release_default(Path(d) / Path(COURSE_LANGUAGE).parent)
        if lang:
            return lang
    return None


def speak_course_language(dirs, environ=None):
    """Make this kernel (and what it starts) speak the course's language, unless ``$KIT_LANG`` names one."""
    environ = os.environ if environ is None else environ
    lang = course_language(dirs)
    if lang and not i18n.normalise(environ.get("KIT_LANG")):
        environ["KIT_LANG"] = lang
    return lang


class Notebook:
    """One course notebook's state: its unit, its workspace folder of the five files, its parts."""

    def __init__(self, unit, folder=None, notebooks_dir=None, shell=None, quiet=False):
        if unit not in NAMES:
            raise ValueError(f"unknown notebook unit {unit!r}: one of {', '.join(NAMES)}")
        self.unit = unit
        self.workspace = Workspace(unit, folder)
        self.folder = self.workspace.folder
        self.notebooks_dirs = [Path(notebooks_dir)] if notebooks_dir else submitted_dirs()
        speak_course_language(self.notebooks_dirs)
        self.parts = {}
        others = MODULES if unit == "final" else [m for m in MODULES if m != unit]
        lines = self.workspace.collect(others, self.notebooks_dirs)
        if not quiet and unit != "final":  # the final notebook collects in a cell of its own
            print("\n".join(lines))
        self.shell = shell if shell is not None else _ipython()
        if self.shell is not None:
            self.shell.register_magic_function(self._magic, magic_kind="cell", magic_name="module")

    @property
    def sources(self):
        return self.workspace.sources

    def collect(self):
        """Write the five files from the module notebooks next to this one (stubs where one is not usable)."""
        print("\n".join(self.workspace.collect(MODULES, self.notebooks_dirs)))

    def _magic(self, line, cell):
        module, part, total = parse_header(line)
        parts = self.parts.setdefault(module, {})
        parts[part] = cell
        todo = [k for k in range(1, total + 1) if k not in parts]
        if todo:
            if min(todo) < part:  # run out of order: say what is missing (in order, later parts simply follow)
                print(_("part {part} of {file} saved; {file} is written once part(s) {parts} have run too").format(
                    part=part, file=f"{module}.py", parts=", ".join(map(str, todo))))
            return
        self.workspace.write(module, join_parts(parts[k] for k in range(1, total + 1)), "this notebook")
        mod = self.workspace.import_module(module)
        if self.shell is not None:
            self.shell.user_ns.update({k: v for k, v in vars(mod).items() if not k.startswith("_")})

    def check(self, *ids, checkpoint=None):
        """Run the grader's checks ``ids`` (``rmsnorm.parameters``) on the workspace."""
        units = {i.split(".", 1)[0] for i in ids}
        if len(units) != 1 or not all(re.fullmatch(r"\w+\.\w+", i) for i in ids):
            raise ValueError(f"check ids of one unit expected, like rmsnorm.parameters: {ids}")
        unit = units.pop()
        if autograding() and os.environ.get(OUTSIDE) == "outside":
            print(_(GRADED_OUTSIDE))  # nothing of this kernel decides the points (classroom/nbgrader_autograde.py)
            return
        if self.unit in MODULES and self.sources.get(self.unit) != "this notebook":
            raise CheckFailed(_("the code cells of {file} above have not all run in this kernel, so there is nothing "
                                "of yours to check: run them first (each starts with `%%module {file} (part k of n)`: "
                                "keep that first line)").format(file=f"{self.unit}.py"))
        # returns nothing: nbgrader would read a test cell's displayed value as its partial credit
        run_checks(unit, ids, self.folder, checkpoint=checkpoint)

    def check_all(self, unit, checkpoint=None):
        """Run every check of ``unit`` on the workspace."""
        run_checks(unit, None, self.folder, checkpoint=checkpoint)

    def train(self, minutes=60, resume=False, checkpoint=CHECKPOINT):
        """Train the 4 x 256 model on the workspace's five files with ``python -m lab.train``, showing progress.

        An existing checkpoint is kept unless ``resume`` (then training goes on from it); interrupting
        the kernel stops training after a save. While nbgrader grades, it does not train unless told to.
        """
        train(self.folder, minutes, resume, checkpoint)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
