"""The sandbox: the worker process that runs submitted code, its fences, its framing, its limits.

``Sandbox(folder)`` starts ``grader/worker.py`` on one submission folder and answers
``run(request)`` (grader/protocol.py) with the worker's validated answer, or raises
``WorkerFailure`` carrying a Failure (timed out, crashed, killed, a malformed answer). The
worker is restarted on the next request after a failure, and the same target is not tried
again (one endless loop costs its time limit once, not once per check; a module whose import
hangs or kills the worker costs it once for the whole module).

Isolation, strongest first (``Isolation`` says which was in force; the report's first line
shows it):

1. **bubblewrap** (Linux, where user namespaces work): new user, PID, network, IPC, UTS and
   mount namespaces; read-only binds of the Python installation, the system's libraries, the
   worker's private runtime copy and the submission only; a private size-capped ``/tmp``; a
   minimal ``/dev`` (no disks); it dies with the grader, and every process inside dies with it.
2. **another OS user** (``user=``, as root): the kernel refuses that user the kit's files.
3. **this process's user**: only the fences below.

Inside every level the worker adds Landlock, resource limits and the audit hook (grader/fence.py).
Grading untrusted code (``untrusted=True``: batch, Gradescope, nbgrader autograde) with neither 1
nor 2 raises ``SandboxRefused`` unless ``allow_weak=True``.

Every wait has a deadline; a stopped sandbox leaves no process and no temporary folder behind
(a grading killed from outside leaves its folders to the next one's sweep: ``kit_tmp``).
"""
import json
import os
import queue
import secrets
import shutil
import signal
import site
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit import machine, syllabus, tensorpack
from kit.files import remove_tree
from kit.host import host, kill
from kit.outcome import GRADER_ERROR_HINT, Failure, Kind, T, said
from kit.text import one_line

from . import cgroup
from .protocol import MAX_FRAME, Malformed, validate

KIT = Path(__file__).resolve().parent.parent
RUNTIME_FILES = {"worker.py": KIT / "grader" / "worker.py", "fence.py": KIT / "grader" / "fence.py",
                 "loader.py": KIT / "kit" / "loader.py", "tensorpack.py": KIT / "kit" / "tensorpack.py"}
STANDINS = KIT / "grader" / "standins"
DENY_MODULES = ["solutions", "grader", "lab", "classroom", "tests", "exercises", "kit"]
MAX_REQUEST = 256 << 20  # what the worker accepts from the grader (a checkpoint's weights fit)
TMP_MB = 64  # the worker's private /tmp under bubblewrap
SANDBOX_UID = 65534  # "nobody" inside the user namespace
MAX_SOURCE = 16 << 20  # bytes of one exercise file: far more than any solution (an attack test embeds 5 MB)
TOKEN = "KIT_SANDBOX_TOKEN"  # the worker's environment variable that its children inherit


class WorkerFailure(Exception):
    """The worker could not answer. ``failure`` says how (a Failure without ``checked``, filled by the check)."""

    def __init__(self, kind, got, hint=None):
        super().__init__(got)
        self.kind, self.got, self.hint = kind, got, hint

    def failure(self, checked):
        return Failure(self.kind, checked, got=self.got, hint=self.hint)


class SandboxRefused(Exception):
    """No sandbox strong enough for untrusted code could start here: one line saying why and what to do."""


@dataclass
class Isolation:
    level: str  # "bubblewrap", "user", "process"
    parts: list = field(default_factory=list)
    why_not: str = None  # why bubblewrap is not in force, where it was tried

    @property
    def strong(self):
        return self.level in ("bubblewrap", "user")

    def describe(self):
        """What ran the code, in words (a ``Text``: the report's first line), e.g. ``bubblewrap sandbox (user, PID,
        network, IPC and mount namespaces, Landlock ABI 6, ...)``."""
        names = {"bubblewrap": T("bubblewrap sandbox"), "user": T("a separate OS user"),
                 "process": T("a separate process")}
        text = names[self.level]
        if self.parts:
            listed = self.parts[-1]
            for part in reversed(self.parts[:-1]):
                listed = T("{first}, {rest}", first=part, rest=listed)
            text = T("{isolation} ({parts})", isolation=text, parts=listed)
        if self.why_not and self.level != "bubblewrap":
            text = T("{isolation}; no bubblewrap: {why}", isolation=text, why=self.why_not)
        return text


def _env_int(name, default):
    try:
        return int(os.environ.get(name, "")) or default
    except ValueError:
        return default


# --- temporary folders that outlive a killed grading get swept ---------------------------------

def kit_tmp(uid=None):
    """The folder holding the kit's temporary folders (one per grading process), stale ones removed.

    ``uid``: another OS user that must be able to reach what is made inside (the worker's user, as root): the
    folder is then one that user can traverse (mode 0711, and every folder above it searchable), taken from
    ``$TMPDIR`` where it allows that, else ``/tmp``; it lists nothing to anyone else."""
    me = os.getuid() if hasattr(os, "getuid") else "user"
    bases = [Path(tempfile.gettempdir())]
    if uid is not None:
        bases += [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]
    for base in bases:
        root = base / f"transformer-kit-{me}"
        try:
            root.mkdir(mode=0o711, exist_ok=True)
            st = root.lstat()
            if hasattr(os, "getuid") and (st.st_uid != me or not stat.S_ISDIR(st.st_mode)):
                continue  # someone else's folder, or a link, in a shared /tmp: not ours
            if uid is not None:
                os.chmod(root, 0o711)
                if not all(_searchable_by(d, uid) for d in [root, *root.parents]):
                    continue
        except OSError:
            continue
        break
    else:
        raise OSError(f"no temporary folder that both this process and user id {uid} can reach "
                      f"(tried {', '.join(str(b) for b in bases)})")
    for d in root.iterdir():
        try:
            pid = int(d.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid, d):
            remove_tree(d)
    return root


def _searchable_by(path, uid):
    """Whether user ``uid`` may enter ``path`` (its owner's or everyone's execute bit; groups not counted)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return bool(st.st_mode & (0o100 if st.st_uid == uid else 0o001)) or uid == 0


def _start_time(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid, folder):
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows: sweep only what is a day old
        try:
            return time.time() - folder.stat().st_mtime < 86400
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        pass
    owner = folder / ".owner"
    started = _start_time(pid)
    return not (owner.is_file() and started is not None and owner.read_text().strip() != started)


def private_dir(prefix, uid=None):
    """A new folder for this process, swept by the next grading if this one is killed (``uid``: see kit_tmp)."""
    d = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=kit_tmp(uid)))
    (d / ".owner").write_text(_start_time(os.getpid()) or "")
    return d


# --- choosing the isolation ----------------------------------------------------------------------

def _ro_binds():
    """``(source, dest)`` pairs the worker needs to read: the system's libraries and the Python installation."""
    paths = []
    for p in ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin"):
        if os.path.islink(p):
            paths.append(("symlink", os.readlink(p), p))
        elif os.path.isdir(p):
            paths.append(("bind", p, p))
    for f in ("/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives", "/etc/ssl/certs"):
        if os.path.exists(f):
            paths.append(("bind", f, f))
    for p in {os.path.realpath(x) for x in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                            *_link_folders(sys.executable), *site.getsitepackages())}:
        if os.path.isdir(p) and not any(p.startswith(q + "/") for q in ("/usr",)):
            paths.append(("bind", p, p))
    if os.path.isdir("/sys/devices/system/cpu"):
        paths.append(("bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"))
    return paths


def _link_folders(path, hops=40):
    """The folders of every hop from ``path`` to the interpreter it names (pyenv, Homebrew, uv and distributions
    reach it through links in folders of their own): the worker is started by the same name, so each must exist
    inside the sandbox."""
    out = []
    for _ in range(hops):
        out.append(os.path.dirname(os.path.abspath(path)))
        if not os.path.islink(path):
            break
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return out


def ro_bind_args(reads=()):
    """bubblewrap's arguments that make the system's libraries, the Python installation (every folder on the way to
    the interpreter) and ``reads`` readable, parents before what lies inside them (a later mount hides what an earlier
    one put below it). The worker's sandbox and the nbgrader kernel's (classroom/nbgrader_autograde.py) share them."""
    cmd, bound = [], []
    for kind, src, dest in sorted(_ro_binds() + [("bind", r, r) for r in reads], key=lambda b: (b[2].count("/"), b[2])):
        if kind == "symlink":
            cmd += ["--symlink", src, dest]
        elif not any(dest == b or (dest.startswith(b + "/") and src == dest) for b in bound):
            bound.append(dest)  # a folder inside one already bound onto itself is there already
            cmd += ["--ro-bind", src, dest]
    return cmd


def bwrap_command(reads, python_args, env, threads):
    """The bubblewrap command line that runs ``python_args`` with ``reads`` bound read-only (see the docstring)."""
    cmd = [shutil.which("bwrap"), "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-net",
           "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    # the private /tmp first, then the binds, parents before what lies inside them (a later mount hides
    # what an earlier one put below it): a submission or runtime under /tmp stays visible
    cmd += ["--size", str(TMP_MB << 20), "--tmpfs", "/tmp"]
    cmd += ro_bind_args(reads)
    cmd += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp", "--clearenv"]
    for k, v in {**env, "HOME": "/tmp", "TMPDIR": "/tmp", "KIT_IN_SANDBOX": "1", "OMP_NUM_THREADS": str(threads)
                 }.items():
        cmd += ["--setenv", k, v]
    return cmd + ["--", *python_args]


_BWRAP_WORKS = {}  # user -> (works, why not)


def bwrap_works(user=None):
    """Whether bubblewrap can start Python here (user namespaces allowed, the interpreter readable)."""
    return bwrap_probe(user)[0]


def bwrap_probe(user=None):
    """``(works, why not)``: why not is one line for the report (None where it works or was not asked for)."""
    if host().name != "linux":
        return False, None
    if shutil.which("bwrap") is None:
        return False, T("bubblewrap is not installed (Debian/Ubuntu package `bubblewrap`)")
    if os.environ.get("KIT_NO_BWRAP"):  # the kit's tests of the fallbacks, and an instructor's choice
        return False, T("KIT_NO_BWRAP is set")
    key = user
    if key not in _BWRAP_WORKS:
        cmd = bwrap_command([], [sys.executable, "-I", "-c", "print(6 * 7)"], {"PATH": "/usr/bin:/bin"}, 1)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                               **({"user": user} if user is not None else {}))
            ok = p.returncode == 0 and p.stdout.strip() == "42"
            last = p.stderr.strip().splitlines()
            why = None if ok else T("bubblewrap could not start Python here: {error}", error=one_line(last[-1], 200)) \
                if last else T("bubblewrap could not start Python here: {error}",
                               error=T("exit status {status}", status=p.returncode))
        except (OSError, subprocess.SubprocessError) as e:
            ok, why = False, T("bubblewrap could not start Python here: {error}", error=one_line(str(e), 200))
        _BWRAP_WORKS[key] = (ok, why)
    return _BWRAP_WORKS[key]


def landlock_abi():
    """The Landlock ABI a fresh process can enforce here, 0 for none (probed in a throwaway process)."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import fence; "
             "print(fence.landlock([sys.prefix, sys.base_prefix], [], []))")
    try:
        out = subprocess.run([sys.executable, "-I", "-c", probe, str(KIT / "grader")], capture_output=True,
                             text=True, timeout=60)
        return int(out.stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError, OSError):
        return 0


def user_problem(name):
    """Why ``--user name`` cannot work here (one line), or None."""
    try:
        import pwd
        uid = pwd.getpwnam(name).pw_uid
    except ImportError:
        return f"--user {name}: this platform has no OS users to switch to"
    except KeyError:
        return f"--user {name}: no such user"
    if os.geteuid() not in (0, uid):
        return f"--user {name}: only root can run code as another user"
    try:
        p = subprocess.run([sys.executable, "-I", "-c", "import torch, safetensors"], capture_output=True, timeout=120,
                           user=name, cwd="/")
    except (OSError, subprocess.SubprocessError) as e:
        return f"--user {name}: cannot start Python as that user ({e})"
    if p.returncode != 0:
        blocked = next((str(d) for d in [*Path(sys.executable).parents] if not _readable_by(d, uid)), None)
        where = f" ({blocked} is not readable by {name})" if blocked else ""
        return (f"--user {name}: that user cannot run {sys.executable} with torch{where}; install the kit's "
                "virtual environment where that user can read it, as the Gradescope bundle does (/opt/kit-venv)")
    return None


def _readable_by(path, uid):
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & 0o500)
    return bool(st.st_mode & 0o005)


# --- the sandbox -------------------------------------------------------------------------------------

class Sandbox:
    """One submission folder, run only inside a worker process. See the module docstring.

    Limits default to the environment's ``GRADER_MEMORY_MB`` and ``GRADER_THREADS`` (or
    ``OMP_NUM_THREADS``) where set, so that batch grading can share out the machine.
    """

    def __init__(self, folder, call_timeout=20.0, start_timeout=120.0, memory_mb=None, output_mb=16, threads=None,
                 user=None, cpu_s=1800, untrusted=False, allow_weak=False, bubblewrap=None, audit_hook=True,
                 reap=False):
        # what was submitted; the worker reads only ``self.folder``, a copy of its five files made in _prepare
        self.source = Path(folder).resolve()
        self.folder = self.source
        self.host = host()  # what this OS offers; each missing piece has its fallback below (kit/host.py)
        self.call_timeout, self.start_timeout = call_timeout, start_timeout
        self.memory_mb = memory_mb or _env_int("GRADER_MEMORY_MB", 4096)
        self.output_mb, self.cpu_s, self.user = output_mb, cpu_s, user
        self.threads = threads or _env_int("GRADER_THREADS", _env_int("OMP_NUM_THREADS", min(2, os.cpu_count() or 1)))
        self.bubblewrap, why_not = bwrap_probe(user) if bubblewrap is None else (bubblewrap, None)
        level = "bubblewrap" if self.bubblewrap else "user" if _another_user(user) else "process"
        self.isolation = Isolation(level, why_not=why_not)
        if untrusted and not self.isolation.strong and not allow_weak:
            raise SandboxRefused(
                "refusing to grade untrusted code with no sandbox: bubblewrap cannot start here (install the "
                "`bubblewrap` package, or allow user namespaces) and no --user was given; run as root with --user "
                "NAME (an unprivileged user), or pass --allow-weak-sandbox to grade anyway (docs/threat-model.md)")
        self.audit_hook = audit_hook  # False only in the kit's tests of the kernel's fences (a hook switched off)
        self.token = secrets.token_hex(8)  # in the worker's environment: finds its children that left its group
        self.proc = None
        self.dir = None  # private: runtime copy (read by the worker), log, and without bubblewrap its temp folder
        self.log = None
        self.frames = None
        self._ready = False
        self._dead_targets = {}  # (module, target, standins) -> the failure that killed it
        self._dead_modules = {}  # (module, standins) -> the failure, when the import itself hung or killed the worker
        self._oom_kills = 0
        self.group = None  # the worker's memory cgroup, where one can be made (grader/cgroup.py)
        self._group_ooms = 0
        self.reap = reap  # this process grades one submission and reaps orphans (python -m grader): see stop()

    # -- the process -------------------------------------------------------------------------

    def _prepare(self):
        self.dir = private_dir("sandbox", _uid(self.user))
        os.chmod(self.dir, 0o755)
        self.folder = self.dir / "submission"
        self.folder.mkdir()
        copy_sources(self.source, self.folder)
        runtime = self.dir / "runtime"
        (runtime / "standins").mkdir(parents=True)
        for name, src in RUNTIME_FILES.items():
            shutil.copy(src, runtime / name)
        for f in STANDINS.glob("*.py"):
            shutil.copy(f, runtime / "standins" / f.name)
        for root, dirs, files in os.walk(runtime):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        self.runtime = runtime
        if not self.bubblewrap:
            self.tmp = self.dir / "tmp"
            self.tmp.mkdir()
            if self.user is not None:
                shutil.chown(self.tmp, user=self.user)

    def start(self):
        if self.proc is not None:
            return
        if self.dir is None:
            self._prepare()
        if self.log is not None:
            self.log.close()
        if self.host.pass_fds:  # an unlinked file: the worker writes through the descriptor, no path to swap
            self.log, log_path = tempfile.TemporaryFile(dir=self.dir), None
        else:  # no descriptors to hand over (Windows): a file the worker opens by name
            log_path = str(self.dir / f"worker-{secrets.token_hex(4)}.log")
            self.log = open(log_path, "w+b")
        tmp = "/tmp" if self.bubblewrap else str(self.tmp)
        reads = [str(self.folder), str(self.runtime)]
        if self.group is None and self.host.proc:
            self.group = cgroup.Group.create("kit-worker", self.memory_mb)
        # with the cgroup's hard limit on what is really used, the address-space cap only stops one absurd allocation
        # early (torch reserves far more address space than it touches); without it, it is the bound
        address_mb = self.memory_mb if self.group is None else max(4 * self.memory_mb, 4096)
        cfg = {"log_fd": None if log_path else self.log.fileno(), "log_path": log_path, "folder": str(self.folder),
               "threads": self.threads, "rlimits": self.host.rlimits, "kernel_fences": self.host.kernel_fences,
               "parent": os.getpid(), "deny_read": [str(KIT)], "allow_read": [*reads, *_python_paths()],
               "allow_write": [tmp], "deny_modules": DENY_MODULES, "memory_mb": address_mb,
               "output_mb": self.output_mb, "cpu_s": self.cpu_s, "max_request": MAX_REQUEST,
               "nproc": 64 if self.bubblewrap else 0, "audit": self.audit_hook}
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.threads), TOKEN: self.token,
               **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
        # -B: no bytecode is written; the copy holds none, so the worker compiles exactly the submitted source
        args = [sys.executable, "-I", "-B", "-X", "faulthandler", str(self.runtime / "worker.py"), json.dumps(cfg)]
        kwargs = {"user": self.user} if self.user is not None else {}
        if self.bubblewrap:
            cmd, cwd = bwrap_command(reads, args, env, self.threads), "/"
        else:
            cmd, cwd = args, tmp
            env.update(HOME=tmp, TMPDIR=tmp)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=cwd, env=env, pass_fds=() if log_path else (self.log.fileno(),),
                                     start_new_session=self.host.process_groups, **kwargs)
        self._confine()
        self.frames = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, self.frames), daemon=True).start()
        self._ready = False

    def _confine(self):
        """The worker's process tree into its memory cgroup, first in line for the kernel's OOM killer. Done at
        the start and again once it is ready, before any submitted code runs: nothing it starts escapes."""
        if self.proc is None or not self.host.proc:
            return
        for pid in cgroup.descendants(self.proc.pid):
            if self.group is not None:
                self.group.add(pid)
            cgroup.prefer_killing(pid)

    def _await_ready(self):
        """Wait for the worker's hello. No submitted code has run yet: a worker that cannot start is the grading
        machine's failure (a folder its user cannot read, a broken Python, no memory), never the student's."""
        if not self._ready:
            try:
                hello = self._next(self.start_timeout, T("starting the worker"))
                if "ready" not in hello or not isinstance(hello.get("fence"), dict):
                    self.stop()
                    raise WorkerFailure(Kind.MALFORMED, T("its first message was not the worker's hello"))
            except WorkerFailure as e:
                if e.kind is Kind.STARVED:
                    raise
                raise WorkerFailure(Kind.GRADER_ERROR, T("the autograder could not start the process that runs your "
                                                         "code ({failure}); no code of yours had run yet",
                                                         failure=e.got), GRADER_ERROR_HINT) from None
            self._confine()
            self._group_ooms = self.group.oom_kills() if self.group is not None else 0
            self._describe_fence(hello["fence"])
            self._ready = True

    def _describe_fence(self, fence):
        parts = []  # each a Text: Isolation.describe lists them
        if self.bubblewrap:
            parts.append(T("user, PID, network, IPC and mount namespaces"))
        if self.user is not None:
            parts.append(T("user {user}", user=self.user))
        if fence.get("landlock"):
            parts.append(T("Landlock ABI {abi}", abi=int(fence["landlock"])))
        if fence.get("limits"):
            parts.append(T("resource limits"))
        if self.group is not None:  # which memory bound was in force: the kernel's accounting, else the rlimit
            parts.append(T("memory cgroup of {mb} MB for the worker", mb=self.group.limit_mb))
        elif fence.get("limits"):
            parts.append(T("memory: RLIMIT_AS of {mb} MB per process", mb=self.memory_mb))
        if fence.get("audit"):
            parts.append(T("audit hook"))
        self.isolation.parts = parts

    def stop(self):
        """Kill the worker (and, inside bubblewrap, everything it started); wait for it, with a deadline."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        kill(proc)  # the worker's process group; inside bubblewrap, its whole PID namespace
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        # only what this grading started: its cgroup, the children that left the process group (double fork,
        # setsid) by their token, and the orphans reparented to this process; inside bubblewrap the PID namespace
        # dies with the worker, children and all
        if self.group is not None:
            self.group.kill()
        if not self.bubblewrap and self.host.proc:
            _kill_marked(self.token)
            if self.reap:
                _kill_orphans()

    def close(self):
        self.stop()
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.dir is not None:
            remove_tree(self.dir)
            self.dir = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def output_tail(self, n=300):
        """The last characters the submission printed (to help explain a crash), on one line."""
        if self.log is None:
            return ""
        try:
            size = os.fstat(self.log.fileno()).st_size
            if hasattr(os, "pread"):
                data = os.pread(self.log.fileno(), n, max(0, size - n))
            else:  # Windows
                self.log.seek(max(0, size - n))
                data = self.log.read(n)
            return one_line(data.decode("utf-8", "replace").strip(), n)
        except (OSError, AttributeError):
            return ""

    # -- messaging ---------------------------------------------------------------------------

    def _next(self, timeout, doing, progress=None):
        """The worker's next answer; ``progress`` frames it sends on the way are added to that set."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, value = self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                short = self._starved()  # asked while the worker still holds its memory
                self.stop()
                if short:
                    raise WorkerFailure(Kind.STARVED, T("no answer after {seconds:.0f} s while {doing}, and the "
                                                        "grading machine is short of memory ({short})",
                                                        seconds=timeout, doing=doing, short=short),
                                        STARVED_HINT) from None
                raise WorkerFailure(Kind.TIMED_OUT, T("timed out: no answer after {seconds:.0f} s while {doing}",
                                                      seconds=timeout, doing=doing),
                                    T("look for an endless loop, or far too much work (at import time too)")) from None
            if kind == "eof":
                raise self._death(doing)
            if kind == "bad":
                self.stop()
                raise WorkerFailure(Kind.MALFORMED, T("the answer could not be read while {doing} ({detail}); nothing "
                                                      "was graded", doing=doing, detail=value), MALFORMED_HINT)
            if isinstance(value, dict) and set(value) == {"progress"}:
                if progress is not None:
                    progress.add(str(value["progress"]))
                continue
            return value

    def _starved(self):
        """Why the machine (its memory cgroup) is short of memory now, or None."""
        if machine.oom_kills() > self._oom_kills:
            return T("the system killed a process for lack of memory")
        return machine.memory_short()

    def _death(self, doing):
        proc = self.proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = None
        if self.bubblewrap and code is not None and code > 128:
            code = 128 - code  # bubblewrap exits 128 + N when the worker was killed by signal N
        own_oom = self.group is not None and self.group.oom_kills() > self._group_ooms
        self.stop()
        if code == -signal.SIGKILL and own_oom:
            return WorkerFailure(Kind.CRASHED, T("the process running your code was killed while {doing}: it and "
                                                 "what it started used more than the grading's memory limit of {mb} MB",
                                                 doing=doing, mb=self.memory_mb),
                                 T("your code allocates far more memory than the task needs (shared memory and child "
                                   "processes count too)"))
        if code == -signal.SIGKILL and machine.oom_kills() > self._oom_kills:
            return WorkerFailure(Kind.STARVED, T("the system killed the process running your code for lack of memory "
                                                 "while {doing}: the grading machine has too little memory for this "
                                                 "grading, or your code allocates far more than the task needs",
                                                 doing=doing), STARVED_HINT)
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = {"SIGKILL": T("killed (out of memory?)"), "SIGSEGV": T("crashed (segmentation fault)"),
                   "SIGXCPU": T("stopped: it used more than its CPU time limit"),
                   "SIGXFSZ": T("stopped: it wrote more than the output limit")}.get(name) or \
                T("killed by {signal}", signal=name)
            msg = T("the process running your code was {why} while {doing}", why=why, doing=doing)
        else:
            msg = T("the process running your code exited with code {status} while {doing} (os._exit or a crash inside "
                    "a library?)", status=code, doing=doing)
        tail = self.output_tail()
        return WorkerFailure(Kind.CRASHED, T("{failure}; its last output: {output_code}", failure=msg,
                                             output_code=tail) if tail else msg,
                             T("make the code finish without exiting or crashing"))

    def _send(self, obj, timeout, doing):
        """Write one request, within ``timeout``: a worker that stops reading (after answering out of turn, say)
        would otherwise hold the grader in a blocked write once the pipe is full."""
        data = tensorpack.pack(obj)
        parts = (struct.pack("<Q", len(data)), data)  # not concatenated: a request with a checkpoint's weights is 13 MB
        # POSIX pipes take non-blocking writes; what does not fit, and everything elsewhere, goes by a writer
        # thread joined with the deadline
        done = (_write_within if self.host.pass_fds else _write_in_thread)(self.proc.stdin, parts, timeout)
        if not done:
            self.stop()
            raise WorkerFailure(Kind.TIMED_OUT, T("your code stopped taking the grader's questions (none taken for "
                                                  "{seconds:.0f} s) while {doing}", seconds=timeout, doing=doing),
                                T("something your module starts keeps running after it answers: a thread or a loop "
                                  "started at import time?"))

    def within(self, folder):
        """This sandbox, for a folder inside its own: the same worker grades it (the kit's tests grade many). Its
        sources are copied into the worker's copy now, as the sandbox's own were."""
        rel = os.path.relpath(Path(folder).resolve(), self.source)
        if rel.startswith(".."):
            raise ValueError(f"{folder} is not inside {self.source}")
        if self.dir is None:
            self._prepare()
        (self.folder / rel).mkdir(parents=True, exist_ok=True)
        copy_sources(Path(folder), self.folder / rel)
        return _Within(self, rel)

    def run(self, req, timeout=None, doing=None):
        """Run one Request in the worker; return its validated answer or raise WorkerFailure."""
        return self.submit(req, timeout, doing)()

    def submit(self, req, timeout=None, doing=None):
        """Send one Request to the worker now; return ``wait()``, which gives its validated answer or raises
        WorkerFailure. Between the two the grader computes the reference's side, while the worker computes."""
        key = (req.folder, req.module, req.target, tuple(req.standins), tuple(req.patch))
        mkey = (req.folder, req.module, tuple(req.standins))
        doing = doing or T("running {target} from {module}.py", target=req.target, module=req.module)
        progress = set()

        def failed(e):
            if e.kind in (Kind.TIMED_OUT, Kind.CRASHED, Kind.MALFORMED):
                if self._ready and "imported" not in progress:
                    self._dead_modules[mkey] = (e.kind, e.got)
                self._dead_targets[key] = (e.kind, e.got)

            def wait():
                raise e
            return wait

        if mkey in self._dead_modules:
            kind, got = self._dead_modules[mkey]
            return failed(WorkerFailure(Kind.NOT_RUN, T("not run: importing {module}.py already failed this way: "
                                                        "{failure}", module=req.module, failure=got)))
        if key in self._dead_targets:
            kind, got = self._dead_targets[key]
            return failed(WorkerFailure(Kind.NOT_RUN, T("not run: an earlier check already failed this way: {failure}",
                                                        failure=got)))
        self._oom_kills = machine.oom_kills()
        if self.group is not None and self._ready:
            self._group_ooms = self.group.oom_kills()
        try:
            self.start()
            self._await_ready()
            try:
                self._send(req.wire(), timeout or self.call_timeout, doing)
            except (BrokenPipeError, OSError):
                raise self._death(doing) from None
        except WorkerFailure as e:
            return failed(e)

        def wait():
            try:
                answer = self._next(timeout or self.call_timeout, doing, progress)
                try:
                    return validate(req, answer)
                except Malformed as e:
                    self.stop()  # a worker that answers out of turn is not asked again
                    raise WorkerFailure(Kind.MALFORMED, T("the answer does not fit the request: {detail}; nothing was "
                                                          "graded", detail=said(e)), MALFORMED_HINT) from None
            except WorkerFailure as e:
                failed(e)
                raise
        return wait


class _Within:
    """A sandbox's worker, asked about a folder inside the sandbox's own (see ``Sandbox.within``)."""

    def __init__(self, sandbox, folder):
        self.sandbox, self.folder = sandbox, folder

    def __getattr__(self, name):
        return getattr(self.sandbox, name)

    def run(self, req, timeout=None, doing=None):
        return self.submit(req, timeout, doing)()

    def submit(self, req, timeout=None, doing=None):
        from dataclasses import replace
        return self.sandbox.submit(replace(req, folder=self.folder), timeout, doing)

    def start(self):
        self.sandbox.start()

    def close(self):
        pass  # the sandbox's owner closes it


STARVED_HINT = T("this is not a verdict on correct code: the course staff can give the grading more memory "
                 "(docs/classroom.md, Resources); if your code builds large tensors, make them smaller")
MALFORMED_HINT = T("the process running your code sent back something else than the results of the calls asked "
                   "for: this happens when code replaces the grader's own functions in that process; only "
                   "compute in your modules")


def _reader(stream, frames):
    """Read length-prefixed frames into ``frames`` until EOF; a frame over the limit or unreadable stops it."""
    fd = stream.fileno()

    def exact(n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = os.read(fd, min(n - len(buf), 1 << 20))
            except OSError:
                chunk = b""
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    try:
        while True:
            (n,) = struct.unpack("<Q", exact(8))
            if n > MAX_FRAME:
                frames.put(("bad", T("an answer of {n:,} bytes, over the limit of {mb} MB", n=n, mb=MAX_FRAME >> 20)))
                return
            try:
                frames.put(("ok", tensorpack.unpack(exact(n), MAX_FRAME)))
            except tensorpack.PackError as e:
                frames.put(("bad", tensorpack.said(e)))
                return
            except Exception as e:  # noqa: BLE001 - a reader the bytes broke: still a malformed answer, never a hang
                frames.put(("bad", T("unreadable answer ({type_name})", type_name=type(e).__name__)))
                return
    except EOFError:
        frames.put(("eof", None))


def _another_user(name):
    """Whether ``name`` is an OS user other than this process's (running as oneself isolates nothing)."""
    if name is None:
        return False
    try:
        import pwd
        return pwd.getpwnam(name).pw_uid != os.geteuid()
    except (ImportError, KeyError):
        return False


def _write_within(stdin, parts, timeout):
    """Write ``parts`` to the pipe without blocking past ``timeout``; False when it ran out (OSError: closed).
    What the pipe takes at once is written here (most requests are small); the rest by a writer thread."""
    fd, rest = stdin.fileno(), None
    os.set_blocking(fd, False)
    try:
        for i, part in enumerate(parts):
            view = memoryview(part)
            while view:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:  # the pipe is full: the worker has not read it yet
                    rest = [view, *parts[i + 1:]]
                    break
            if rest:
                break
    finally:
        os.set_blocking(fd, True)
    return rest is None or _write_in_thread(stdin, rest, timeout)


def _write_in_thread(stdin, parts, timeout):
    """Blocking writes of ``parts`` in a thread joined with ``timeout``: False when it ran out."""
    error = []

    def write():
        try:
            for part in parts:
                stdin.write(part)
            stdin.flush()
        except (OSError, ValueError) as e:  # ValueError: the pipe was closed under it
            error.append(e)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout)
    if error:
        raise OSError(str(error[0]))
    return not writer.is_alive()


def _python_paths():
    return sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *site.getsitepackages())})


def _uid(user):
    """The OS user id of ``user`` where it is another than this process's (None: no other user)."""
    if not _another_user(user):
        return None
    import pwd
    return pwd.getpwnam(user).pw_uid


def copy_sources(src, dest):
    """Copy the exercise files of ``src`` (regular files only, never through a link) into ``dest``, readable by
    all and writable by none but this process's user. Nothing else of the folder is copied: no bytecode, no
    package that would shadow a module, no other file; ``ignored`` lists what was left behind."""
    for name in syllabus.FILES:
        path = Path(src) / name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # missing (its checks say so), or a link: not the student's source
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                continue
            data = f.read(MAX_SOURCE + 1)
        if len(data) > MAX_SOURCE:
            continue  # not source code a student wrote: treated as missing
        target = Path(dest) / name
        target.write_bytes(data)
        os.chmod(target, 0o644)


def ignored(folder, keep=()):
    """The names in ``folder`` that grading leaves out (everything but the exercise files and ``keep``)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [n for n in names if n not in (*syllabus.FILES, *keep)]


def _kill_orphans():
    """SIGKILL every descendant of this process but itself. Only for a process that grades one submission and
    has made itself their subreaper (``become_reaper``): whatever left the worker's process group was reparented
    here, and everything below this process is the submission's."""
    me = os.getpid()
    for pid in reversed(cgroup.descendants(me)[1:]):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in cgroup.descendants(me)[1:]:  # reap those reparented here (the worker itself is its Popen's)
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def become_reaper():
    """Make this process the subreaper of everything it starts (Linux): a child of the worker that double-forks
    out of its process group is reparented here, not to init, so that ``stop`` still finds it."""
    if host().name != "linux":
        return False
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _sweep(match, passes=100):
    """SIGKILL every live process of /proc that ``match``es, pass after pass until one finds none: a child that
    forks while the sweep runs is caught by the next pass (the killed linger as zombies until reaped: skipped)."""
    for _ in range(passes):
        killed = 0
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" and match(d):
                        os.kill(int(d.name), signal.SIGKILL)
                        killed += 1
                except (OSError, ProcessLookupError):
                    pass
        if not killed:
            return


def _kill_marked(token):
    """SIGKILL every process whose environment holds this sandbox's token (Linux: the children of a worker
    that left its process group without bubblewrap)."""
    needle = f"{TOKEN}={token}".encode()
    if not Path("/proc").is_dir():
        return

    def marked(d):
        return needle in (d / "environ").read_bytes().split(b"\0")
    _sweep(marked)
