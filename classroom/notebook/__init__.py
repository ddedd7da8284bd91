"""The runtime of the nbgrader course's notebooks (built by ``python -m classroom.nbgrader``).

``nb = Notebook("rmsnorm")`` in a notebook's setup cell makes:

* a code cell that starts with ``%%module rmsnorm.py (part 2 of 3)`` one part of a file: when every
  part has run, the parts are written to the notebook's workspace (``workspace.py``), the module is
  imported and its names are put in the notebook, so the code can be tried right there;
* ``nb.check("rmsnorm.eps")`` an autograder test cell: it passes exactly when the grader gives that
  check its points (``grading.py``), and fails with that check's message alone;
* ``nb.train(...)`` the final project's training cell (``training.py``).
"""
import os
import re
from pathlib import Path

from kit.syllabus import MODULES, NAMES

from ..regions import join_parts, parse_header
from .grading import GRADED_OUTSIDE, OUTSIDE, CheckFailed, autograding, run_checks
from .training import CHECKPOINT, MAX_MINUTES, train
from .workspace import Workspace, submitted_dirs

__all__ = ["Notebook", "CheckFailed", "CHECKPOINT", "MAX_MINUTES"]


class Notebook:
    """One course notebook's state: its unit, its workspace folder of the five files, its parts."""

    def __init__(self, unit, folder=None, notebooks_dir=None, shell=None, quiet=False):
        if unit not in NAMES:
            raise ValueError(f"unknown notebook unit {unit!r}: one of {', '.join(NAMES)}")
        self.unit = unit
        self.workspace = Workspace(unit, folder)
        self.folder = self.workspace.folder
        self.notebooks_dirs = [Path(notebooks_dir)] if notebooks_dir else submitted_dirs()
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
                print(f"part {part} of {module}.py saved; {module}.py is written once part(s) "
                      f"{', '.join(map(str, todo))} have run too")
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
            print(GRADED_OUTSIDE)  # nothing of this kernel decides the points (classroom/nbgrader_autograde.py)
            return
        if self.unit in MODULES and self.sources.get(self.unit) != "this notebook":
            raise CheckFailed(f"the code cells of {self.unit}.py above have not all run in this kernel, so there is "
                              f"nothing of yours to check: run them first (each starts with `%%module {self.unit}.py "
                              f"(part k of n)`: keep that first line)")
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
