"""The one seam between the kit and an implementation of the student API.

Everything that runs student-shaped code (the grader's worker, training,
sampling, experiments) loads it through this file, by folder path: the same
call works on ``exercises/``, ``solutions/``, a mutant or a submitted folder,
with or without an ``__init__.py``. This file imports nothing of the kit, so the
grader's sandboxed worker can load it by path from its own copy.
"""
import hashlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path


def package_name(folder, overrides=None):
    """A package name unique to this folder and override set, so several implementations coexist."""
    key = str(Path(folder).resolve()) + repr(sorted((k, str(Path(v).resolve())) for k, v in (overrides or {}).items()))
    return "impl_" + hashlib.sha1(key.encode()).hexdigest()[:12]


class _OverrideFinder:
    """Finds ``<package>.<module>`` in an override file instead of the package folder."""

    files = {}  # full module name -> file path

    def find_spec(self, name, path=None, target=None):
        if name in self.files:
            return importlib.util.spec_from_file_location(name, self.files[name])
        return None


def load_package(folder, overrides=None):
    """Register ``folder`` as a fresh package and return it (submodules are imported on demand).

    ``overrides`` maps a module name (``"rmsnorm"``) to a file that stands in for
    that module, so a package can mix files from several folders: a submission
    with the grader's stand-in components, or the solutions with one mutated file.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"implementation folder not found: {folder}")
    name = package_name(folder, overrides)
    if name in sys.modules:
        return sys.modules[name]
    if not any(isinstance(f, _OverrideFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OverrideFinder())
    for mod, path in (overrides or {}).items():
        _OverrideFinder.files[f"{name}.{mod}"] = str(Path(path).resolve())
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(folder)]
    pkg.__file__ = None
    pkg.__package__ = name
    pkg.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    pkg.__spec__.submodule_search_locations = [str(folder)]
    sys.modules[name] = pkg
    return pkg


def import_module(folder, module, overrides=None):
    """Import one module (``"attention"``) of the implementation in ``folder``."""
    if not module.isidentifier():
        raise ValueError(f"not a module name: {module!r}")
    pkg = load_package(folder, overrides)
    return importlib.import_module(f"{pkg.__name__}.{module}")


def load_impl(folder, modules=None, overrides=None):
    """Import the syllabus's modules (or ``modules``); return a namespace ``impl.rmsnorm.RMSNorm``, ..."""
    if modules is None:  # the kit's processes only: the worker never loads a whole implementation
        from kit.syllabus import MODULES as modules
    return types.SimpleNamespace(**{m: import_module(folder, m, overrides) for m in modules}, folder=Path(folder))
