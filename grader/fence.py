"""The fences the worker puts up around itself before it imports submitted code.

Inside bubblewrap (grader/sandbox.py) these are the second layer; without it they are what
there is. Each is used where the platform has it, and ``install`` returns which were in force:

- **Landlock** (Linux >= 5.13): the kernel's file-system fence. After it, the process may read
  only the folders it was granted (its submission, its own copy of the worker's files, the
  Python installation, the system's libraries) and write only its temp folder, whoever asks,
  C code and children included; no program can be started (no execute right), and with newer
  ABIs no TCP and no signals to processes outside.
- **Resource limits** (POSIX): address space, processes, CPU time, file size, no core dumps.
- **Death with the parent** (Linux ``PR_SET_PDEATHSIG``).
- **The audit hook and import blocker** (every platform): refuse, with a message the student
  can read, Python-level file access outside the fence, processes, sockets, ctypes and the
  kit's own packages. Code that controls its process can switch a Python hook off, so it is
  the clear-message layer; the kernel's fences are the security.

This file imports nothing of the kit: the worker loads it by path.
"""
import io
import os
import sys

_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn", "os.startfile"}
_NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                   "socket.gethostbyname", "urllib.Request"}
_WRITE_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.symlink",
                 "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                 "shutil.copytree", "os.chdir"}
# what rewriting a function that the interpreter holds on to takes (this hook's own, say)
_GC_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents"}
_LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob", "os.walk"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Modules a submission may not import whatever its name for them: the raw process spawner
# (subprocess.Popen is refused by the audit hook, its C helper would not be).
_DENY_EXTRA = ("_posixsubprocess",)
# System folders the worker may read below the kernel fence (libraries, time zones, CPU info). Not /dev:
# only the device files below, never a disk (root could read the file system off the block device).
SYSTEM_READ = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


# What the fences refuse, as the worker reports it (grader/harness.py words each for the student): the subject is
# the path (write, read, list), the audit event (process, network, internals, event) or the module (import).
ACTIONS = ("write", "read", "list", "process", "network", "internals", "import", "event")
_WORDS = {"write": "to write {}", "read": "to read {}", "list": "to list {}",
          "process": "to start or signal processes ({})", "network": "network access ({})",
          "internals": "{} (reaching into the grader's own functions)",
          "import": "to import {!r}: a submission may only use its own files, torch and the standard library",
          "event": "{}"}


class Refusal:
    """What a fence refused: ``action`` (one of ``ACTIONS``), ``subject``, and for an event on a file its ``path``.

    The message (``str()``) is the same in English, for code that reads it inside the worker; the worker sends the
    fields, never the message, for the parent to word (grader/worker.py ``_describe``).
    """
    action = subject = path = None

    def _set(self, action, subject, path=None):
        self.action, self.subject, self.path = action, subject, path
        said = _WORDS[action].format(subject) + ("" if path is None else f" on {path}")
        return "the grader's sandbox refuses " + said


class Refused(Refusal, PermissionError):
    def __init__(self, action, subject, path=None):
        super().__init__(self._set(action, subject, path))


class Blocked(Refusal, ImportError):
    """An import of a module a submission may not use (the kit's own packages): an ImportError all the same."""

    def __init__(self, name):
        super().__init__(self._set("import", name))


Blocked.__name__ = Blocked.__qualname__ = "ImportError"  # what it is to the submission, and in its traceback


def _inside(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


# --- Landlock ------------------------------------------------------------------------------

_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446  # the same numbers on every architecture
_LL_READ = (1 << 2) | (1 << 3)  # read_file, read_dir: no execute, so no program can be started
_LL_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)  # what a rule on a file may hold


def _landlock_rights(abi):
    fs = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        fs |= 1 << 13  # refer (rename/link across folders)
    if abi >= 3:
        fs |= 1 << 14  # truncate
    if abi >= 5:
        fs |= 1 << 15  # ioctl on devices
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets and signals to processes outside
    return fs, net, scoped


def _carve(root, deny):
    """``root`` as a list of folders that together hold everything below it except ``deny``."""
    if _inside(root, deny):
        return []
    if not any(_inside(d, [root]) for d in deny):
        return [root]
    out = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    for name in names:
        out += _carve(os.path.join(root, name), deny)
    return out


def landlock(read, write, deny):
    """Allow reading ``read`` (folders and files), reading and writing ``write``, nothing else.

    System folders are added for reading, minus any ``deny`` folder inside them. Returns the
    Landlock ABI version in force, or 0 when the kernel (or a container's seccomp) has none.
    """
    if not sys.platform.startswith("linux"):
        return 0
    import ctypes
    import struct
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
    except OSError:
        return 0

    def syscall(*args):
        r = libc.syscall(*args)
        if r < 0:
            raise OSError(ctypes.get_errno(), "landlock")
        return r

    try:
        abi = syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        fs, net, scoped = _landlock_rights(abi)
        size = 8 if abi < 4 else 16 if abi < 6 else 24
        attr = ctypes.create_string_buffer(struct.pack("=QQQ", fs, net, scoped)[:size], size)
        ruleset = syscall(_LL_CREATE, attr, ctypes.c_size_t(size), ctypes.c_uint32(0))
    except OSError:
        return 0

    def allow(path, rights):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if not os.path.isdir(path):
                rights &= _LL_FILE_RIGHTS
            rule = ctypes.create_string_buffer(struct.pack("=Qi", rights & fs, fd), 12)
            syscall(_LL_ADD_RULE, ruleset, ctypes.c_int(1), rule, ctypes.c_uint32(0))
        except OSError:
            pass
        finally:
            os.close(fd)

    try:
        for root in SYSTEM_READ:
            for path in _carve(os.path.realpath(root), deny):
                allow(path, _LL_READ)
        for path in read:
            allow(path, _LL_READ)
        for path in write:
            allow(path, fs & ~1)  # everything but execute: a binary written there cannot be started
        for dev in DEVICES:
            allow(dev, _LL_READ | (1 << 1))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: required without CAP_SYS_ADMIN
            return 0
        syscall(_LL_RESTRICT, ruleset, ctypes.c_uint32(0))
        return abi
    except OSError:
        return 0
    finally:
        os.close(ruleset)


def die_with_parent(parent):
    """SIGKILL this process when the grader that started it dies (Linux); True where that holds."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal
    try:
        ok = ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        ok = False
    if parent and os.getppid() != parent and not os.environ.get("KIT_IN_SANDBOX"):  # the parent died before prctl
        os._exit(1)
    return ok


def limits(cfg):
    """Address space, processes, CPU time, output size, core dumps (POSIX); the names of those set."""
    try:
        import resource
    except ImportError:  # Windows: none of these
        return []
    import signal
    done = []

    def setlimit(name, value):
        what = getattr(resource, name, None)
        if what is None:
            return
        try:
            resource.setrlimit(what, (value, value))
            done.append(name)
        except (ValueError, OSError):
            pass

    setlimit("RLIMIT_AS", cfg["memory_mb"] << 20)
    if hasattr(signal, "SIGXFSZ"):  # raw writes past the limit fail (EFBIG) instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    setlimit("RLIMIT_FSIZE", (cfg["output_mb"] + 1) << 20)
    setlimit("RLIMIT_CORE", 0)
    if cfg.get("nproc"):  # counted per user namespace: inside bubblewrap this sandbox's own tasks
        setlimit("RLIMIT_NPROC", cfg["nproc"])
    if cfg.get("cpu_s"):
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 5))
            done.append("RLIMIT_CPU")
        except (ValueError, OSError):
            pass
    return done


def audit(cfg, allowed_calls=()):
    """The audit hook and the import blocker (every platform); ``allowed_calls``: C functions (by address)
    the worker itself calls through ctypes after the fence."""
    allowed_calls = frozenset(allowed_calls)
    deny = [os.path.realpath(p) for p in cfg["deny_read"]]
    allow = [os.path.realpath(p) for p in cfg["allow_read"]]
    writable = [os.path.realpath(p) for p in cfg["allow_write"]]
    own_proc = f"/proc/{os.getpid()}"

    def real(path):
        if isinstance(path, int):
            return None
        try:
            return os.path.realpath(os.fsdecode(path))
        except Exception:  # noqa: BLE001
            return None

    def readable(path):
        p = real(path)
        if p is None:
            return True
        if p.startswith("/proc/") and not (p.startswith(own_proc) or p.startswith("/proc/self")
                                           or not p.split("/")[2].isdigit()):
            return False
        if p.startswith("/dev/") and p not in DEVICES and not p.startswith(("/dev/fd/", "/dev/shm/")):
            return False
        return _inside(p, allow) or not _inside(p, deny)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            p = real(path)
            if writing and p is not None and not _inside(p, writable) and p != "/dev/null":
                raise Refused("write", p)
            if not readable(path):
                raise Refused("read", p)
        elif event in _LIST_EVENTS:
            if args and not readable(args[0] if args[0] is not None else "."):
                raise Refused("list", f"{args[0]}")
        elif event in _WRITE_EVENTS:
            for a in args:
                if isinstance(a, (str, bytes, os.PathLike)) and not _inside(real(a) or "", writable):
                    raise Refused("event", event, f"{a}")
        elif event in _PROCESS_EVENTS:
            raise Refused("process", event)
        elif event in _NETWORK_EVENTS:
            raise Refused("network", event)
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__" or event in _GC_EVENTS:
            raise Refused("internals", event)
        elif event == "ctypes.call_function" and args and args[0] in allowed_calls:
            return  # the worker's own malloc_trim between requests
        elif event.startswith("ctypes.") or event in ("sys.addaudithook", "sys.setprofile", "sys.settrace"):
            raise Refused("event", event)

    refused = set(cfg["deny_modules"]) | set(_DENY_EXTRA)

    class Blocker:
        """Refuses the kit's own packages by name, whatever sys.path says."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in refused:
                raise Blocked(name)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in _DENY_EXTRA:  # drop what torch's own imports already loaded, and the references to it
        sys.modules.pop(name, None)
        for holder in ("subprocess", "multiprocessing.util"):
            if holder in sys.modules and hasattr(sys.modules[holder], name):
                setattr(sys.modules[holder], name, None)
    sys.dont_write_bytecode = True
    sys.addaudithook(hook)


def heap_trimmer():
    """glibc's ``malloc_trim(0)`` (free heap memory back to the system) and its address, or (None, None)."""
    try:
        import ctypes
        trim = ctypes.CDLL(None).malloc_trim
        return (lambda: trim(0)), ctypes.cast(trim, ctypes.c_void_p).value
    except Exception:  # noqa: BLE001 - not glibc (macOS: no malloc_trim; Windows: no CDLL(None))
        return None, None


def install(cfg, allowed_calls=()):
    """Every fence the platform offers, in order; returns which are in force (for the report's first line)."""
    in_force = {"bubblewrap": bool(os.environ.get("KIT_IN_SANDBOX"))}
    kernel = cfg.get("kernel_fences", True)  # the grader's choice for this platform (kit/host.py)
    in_force["die_with_parent"] = die_with_parent(cfg.get("parent")) if kernel else False
    deny = [os.path.realpath(p) for p in cfg["deny_read"]]
    in_force["landlock"] = landlock(cfg["allow_read"], cfg["allow_write"], deny) if kernel else 0
    in_force["limits"] = limits(cfg) if cfg.get("rlimits", True) else []
    if cfg.get("audit", True):  # off only in the kit's own tests of the layers below it
        audit(cfg, allowed_calls)
    in_force["audit"] = bool(cfg.get("audit", True))
    in_force["uid"] = os.getuid() if hasattr(os, "getuid") else None
    return in_force


class CappedOutput(io.TextIOBase):
    """stdout and stderr of submitted code: the first ``cap`` bytes go to the log, the rest is dropped.

    A submission that prints megabytes loses nothing but its output; the grader reads the
    log's tail to explain a crash.
    """

    def __init__(self, fd, cap):
        self.fd, self.cap, self.written = fd, cap, 0

    def write(self, s):
        data = str(s).encode("utf-8", "replace")
        room = self.cap - self.written
        if room > 0:
            chunk = data[:room]
            if len(data) > room:
                chunk += f"\n[output cut here: more than {self.cap >> 20} MB printed]\n".encode()
            try:
                os.write(self.fd, chunk)
            except OSError:
                pass
        self.written += len(data)
        return len(s)

    def flush(self):
        pass

    def fileno(self):
        return self.fd

    def isatty(self):
        return False

    def writable(self):
        return True

    @property
    def encoding(self):
        return "utf-8"
