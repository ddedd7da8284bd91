"""A notebook's workspace: a folder holding the five files, written from ``%%module`` cells.

The notebook's own module comes from its cells as they run; the others come from the sibling
notebooks (the course's other notebooks in the same folder) where their code is complete and
imports cleanly, else from the kit's stubs, so a broken file in one notebook never costs another
notebook's points.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

from kit import loader
from kit.files import write_text
from kit.i18n import _
from kit.syllabus import ASSIGNMENT, MODULES, unit

from ..regions import join_parts, notebook_parts

KIT = Path(__file__).resolve().parents[2]
STUBS = KIT / "exercises"


class Workspace:
    def __init__(self, prefix, folder=None):
        self.own = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix=f"{ASSIGNMENT}-{prefix}-")).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sources = {}
        for m in MODULES:
            self.write(m, stub(m), "stub")
        if self.own:
            import atexit
            atexit.register(shutil.rmtree, self.folder, True)

    def write(self, module, text, source):
        write_text(self.folder / f"{module}.py", text)
        self.sources[module] = source

    def forget(self):
        """Drop the workspace's imported modules, so the next import reads the files again."""
        name = loader.package_name(self.folder)
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]

    def import_module(self, module):
        self.forget()
        return loader.import_module(self.folder, module)

    def collect(self, modules, notebooks_dirs):
        """Take ``modules`` from the sibling notebooks where usable, else the stubs; return one line per module."""
        lines = []
        for m in modules:
            name = f"{unit(m).notebook}.ipynb"
            found = next((Path(d) / name for d in notebooks_dirs if (Path(d) / name).is_file()), None)
            why = self._take(m, found) if found else _("{notebook} not found next to this notebook").format(
                notebook=name)
            if why:
                self.write(m, stub(m), "stub")
                lines.append(_("{file}: the kit's stub ({why})").format(file=f"{m}.py", why=why))
            else:
                said = _("{file}: from {notebook} (still has NotImplementedError)") if "NotImplementedError" in \
                    (self.folder / f"{m}.py").read_text(encoding="utf-8") else _("{file}: from {notebook}")
                lines.append(said.format(file=f"{m}.py", notebook=name))
        self.forget()
        return lines

    def _take(self, module, nb_file):
        """Write ``module`` from ``nb_file``; the reason it cannot be used, or None."""
        try:
            parts, totals = notebook_parts(nb_file)
        except (OSError, ValueError) as e:
            return _("{notebook} is not readable: {error}").format(notebook=nb_file.name, error=type(e).__name__)
        got, total = parts.get(module, {}), totals.get(module, 0)
        if not total or sorted(got) != list(range(1, total + 1)):
            return _("{notebook} does not hold all parts of {file}").format(notebook=nb_file.name, file=f"{module}.py")
        self.write(module, join_parts(got[k] for k in range(1, total + 1)), nb_file.name)
        try:
            self.import_module(module)
        except BaseException as e:  # noqa: BLE001 - a syntax error, a crash, an interrupted hang: that notebook's only
            return _("the code in {notebook} does not import: {error}").format(
                notebook=nb_file.name, error=f"{type(e).__name__}: {str(e)[:120]}")
        return None


def stub(module):
    path = STUBS / f"{module}.py"
    if not path.is_file():
        raise FileNotFoundError(_("{path} is missing: the kit's stubs are needed (run `make stubs`)").format(path=path))
    return path.read_text(encoding="utf-8")


def submitted_dirs(cwd=None):
    """Folders where sibling notebooks may be: here, and during ``nbgrader autograde`` the student's submission.

    nbgrader executes each notebook of a submission in the autograded folder as it goes, so the
    siblings not graded yet are still only in ``submitted/<student>/<assignment>/``.
    """
    here = Path(cwd or os.getcwd()).resolve()
    dirs = [here]
    parts = here.parts
    if "autograded" in parts:
        i = len(parts) - 1 - parts[::-1].index("autograded")
        dirs.append(Path(*parts[:i], "submitted", *parts[i + 1:]))
    return dirs
