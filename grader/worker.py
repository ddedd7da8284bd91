"""The sandboxed worker: the only process that runs submitted code.

The grader (the parent) starts ``python -I grader/worker.py CONFIG_JSON``; the
worker imports torch, fences itself in (a Landlock file-system fence where the
kernel offers one, audit hook, import blocker, resource limits, output to a
capped log, death with its parent) and then answers requests framed
on its original stdin/stdout: build a module of the submission, load weights,
run forward and backward, report what came out. It never sees the reference
implementation, the checks or the scores: the parent computes every expected
value itself and only ever unpickles the worker's answers with
``torch.load(weights_only=True)``.

``execute(spec, ...)`` is also how the parent runs the *reference* in its own
process, so both sides answer the same question in the same format.

This file imports nothing of the kit except ``lab/loader.py``, loaded by path.
"""
import importlib.util
import io
import json
import os
import struct
import sys
import traceback

# ---------------------------------------------------------------------------
# Running one request (shared by the worker and the parent's reference runs)
# ---------------------------------------------------------------------------


class StageError(Exception):
    """Wraps an exception raised by submitted code, remembering at which stage."""

    def __init__(self, stage, exc, tb_text, where):
        super().__init__(stage)
        self.stage, self.exc, self.tb_text, self.where = stage, exc, tb_text, where


def _student_frames(tb, roots):
    """(file, line, function) of the innermost traceback frame inside ``roots`` (the submission)."""
    where = None
    for frame in traceback.extract_tb(tb):
        if any(os.path.abspath(frame.filename).startswith(r) for r in roots):
            where = (os.path.basename(frame.filename), frame.lineno, frame.name, (frame.line or "").strip())
    return where


def _guard(stage, roots, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except BaseException as e:  # SystemExit and KeyboardInterrupt from submitted code are failures too
        tb_text = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-6))
        raise StageError(stage, e, tb_text, _student_frames(e.__traceback__, roots)) from None


def _plain(x):
    """A copy of x made only of types the parent can read with weights_only=True."""
    import torch
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().clone()
        return t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, torch.dtype):
        return str(x)
    return {"__unsupported__": type(x).__name__}


def _materialise(value, import_module):
    """Build arguments that are themselves modules: {'__obj__': 'torch.nn.Linear' or 'sublayers.Shift',
    'pkg': {...} for a module of a package, 'args', 'kwargs', 'load': state_dict}."""
    import torch
    if isinstance(value, list):
        return [_materialise(v, import_module) for v in value]
    if not (isinstance(value, dict) and "__obj__" in value):
        return value
    where, _, attr = value["__obj__"].rpartition(".")
    owner = torch.nn if where == "torch.nn" else import_module(value["pkg"], where)
    obj = getattr(owner, attr)(*value.get("args", []), **value.get("kwargs", {}))
    if value.get("load") is not None:
        obj.load_state_dict(value["load"], strict=True)
    return obj


def _keys(module):
    return {k: [list(v.shape), str(v.dtype)] for k, v in module.state_dict().items()}


def _structure(module):
    mods = [[name, type(m).__name__, id(m)] for name, m in module.named_modules(remove_duplicate=False)]
    params = [[name, p.data_ptr(), list(p.shape)] for name, p in module.named_parameters(remove_duplicate=False)]
    return {"modules": mods, "params": params}


def reset_globals():
    """The global state every request starts from, whatever submitted code changed (at import, say)."""
    import torch
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    torch.manual_seed(0)
    try:
        torch.set_default_device(None)
    except Exception:
        pass


def execute(spec, import_module, roots, on_imported=None, inputs_after=False):
    """Answer one request. ``import_module(pkg, name)`` returns a module of the implementation.

    Returns a dict made of plain types; an exception in submitted code becomes
    ``{'error': {...}}`` naming the stage (import, init, load, call N) and the line.
    ``on_imported()`` is called once the module is imported (the worker tells the
    parent, so a hang at import time costs its time limit once per module);
    ``inputs_after`` adds each call's arguments as they are after the call, so the
    parent can see an in-place change with its own, untampered torch.
    """
    import torch
    reset_globals()
    out = {}
    try:
        module = _guard("import", roots, import_module, spec["pkg"], spec["module"])
        target = _guard("import", roots, getattr, module, spec["target"])
        reset_globals()  # a module may set the seed, default dtype or grad mode when imported
        if on_imported is not None:
            on_imported()
        saved = {}
        for name, repl in (spec.get("patch") or {}).items():
            saved[name] = getattr(module, name, None)
            setattr(module, name, getattr(import_module(repl["pkg"], repl["module"]), repl["attr"]))
        try:
            obj = target
            if spec.get("init") is not None:
                args = _materialise(spec["init"].get("args", []), import_module)
                kwargs = spec["init"].get("kwargs", {})
                obj = _guard("init", roots, target, *args, **kwargs)
                if not isinstance(obj, torch.nn.Module):
                    raise StageError("init", TypeError(f"{spec['target']}(...) is not an nn.Module"), "", None)
                out["keys"] = _keys(obj)
                if spec.get("load") is not None:
                    _guard("load", roots, obj.load_state_dict, spec["load"], strict=True)
                if spec.get("dtype") is not None:
                    obj = obj.to(getattr(torch, spec["dtype"]))
                obj.train(bool(spec.get("train", False)))
                if "params" in spec.get("want", ()):
                    out["params"] = {k: _plain(v) for k, v in obj.state_dict().items()}
                if "structure" in spec.get("want", ()):
                    out["structure"] = _structure(obj)
                if "attrs" in spec:
                    out["attrs"] = {a: _plain(getattr(obj, a, None)) if hasattr(obj, a) else {"__missing__": True}
                                    for a in spec["attrs"]}
        finally:
            for name, old in saved.items():
                setattr(module, name, old)
        out["results"] = []
        for i, call in enumerate(spec.get("calls", [])):
            out["results"].append(_run_call(obj, call, i, roots, inputs_after))
    except StageError as e:
        out["error"] = _describe(e)
    return out


def _run_call(obj, call, i, roots, inputs_after=False):
    import torch
    args = [a.clone() if isinstance(a, torch.Tensor) else a for a in call.get("args", [])]
    grad = call.get("grad")
    if grad is not None:
        args = [a.requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        if isinstance(obj, torch.nn.Module):
            obj.zero_grad(set_to_none=True)
    before = [a.detach().clone() if isinstance(a, torch.Tensor) else None for a in args]
    with torch.set_grad_enabled(grad is not None):
        fn = getattr(obj, call["method"]) if call.get("method") else obj
        try:
            y = _guard(f"call {i}", roots, fn, *args, **call.get("kwargs", {}))
        except StageError as e:
            return {"error": _describe(e)}
    res = {"output": _plain(y),
           "inputs_changed": [bool(b is not None and not torch.equal(b, a.detach())) for a, b in zip(args, before)]}
    if inputs_after:
        res["inputs_after"] = [_plain(a) if isinstance(a, torch.Tensor) else None for a in args]
    if grad is not None:
        if not isinstance(y, torch.Tensor) or y.shape != grad.shape:
            res["grad_error"] = "output is not a tensor of the expected shape"
        elif not y.requires_grad:
            res["grad_error"] = "output does not require grad (was the computation detached?)"
        else:
            try:
                _guard(f"backward {i}", roots, y.backward, grad.to(y.dtype))
            except StageError as e:
                return {"error": _describe(e)}
            res["input_grads"] = [_plain(a.grad) if isinstance(a, torch.Tensor) else None for a in args]
            if isinstance(obj, torch.nn.Module):
                res["param_grads"] = {n: _plain(p.grad) for n, p in obj.named_parameters()}
    return res


def _describe(e):
    exc = e.exc
    if isinstance(exc, SystemExit):
        kind, message = "SystemExit", f"sys.exit({exc.code!r}) was called"
    else:
        kind, message = type(exc).__name__, str(exc)
    return {"stage": e.stage, "type": kind, "message": message[:2000], "where": e.where,
            "traceback": e.tb_text[-4000:]}


# ---------------------------------------------------------------------------
# The sandbox: only ever runs inside the worker process
# ---------------------------------------------------------------------------

_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn", "os.startfile"}
_NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                   "socket.gethostbyname", "urllib.Request"}
_WRITE_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.symlink",
                 "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile",
                 "shutil.copytree", "os.chdir"}
_LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob", "os.walk"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Modules a submission may not import whatever its name for them: the raw process spawner
# (subprocess.Popen is refused by the audit hook, its C helper would not be).
_DENY_EXTRA = ("_posixsubprocess",)
# System folders the worker may read below the kernel fence (libraries, time zones, CPU info).
_SYSTEM_READ = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev")


class Refused(PermissionError):
    pass


def _inside(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


# --- Landlock: the kernel's own file-system fence (Linux >= 5.13), best effort --------------
# The audit hook below sees only what Python does; C code (torch.from_file, a library's own
# fopen) goes around it. Landlock restricts the process itself: after restrict_self, any
# open outside the granted folders fails in the kernel, whoever asks, children included.

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
        for root in _SYSTEM_READ:
            for path in _carve(os.path.realpath(root), deny):
                allow(path, _LL_READ)
        for path in read:
            allow(path, _LL_READ)
        for path in write:
            allow(path, fs & ~1)  # everything but execute: a binary written there cannot be started
        allow("/dev/null", _LL_READ | (1 << 1))
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: required without CAP_SYS_ADMIN
            return 0
        syscall(_LL_RESTRICT, ruleset, ctypes.c_uint32(0))
        return abi
    except OSError:
        return 0
    finally:
        os.close(ruleset)


def _die_with_parent(parent):
    """SIGKILL this process when the grader that started it dies (a killed batch job, say)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def install_sandbox(cfg):
    """Kernel fence, audit hook and import blocker; after this, submitted code cannot leave the
    fence through Python, and (where Landlock is available) not through C either.

    Returns the Landlock ABI in force (0: none; the audit hook and the OS user are the fences then).
    """
    import resource
    import signal

    deny = [os.path.realpath(p) for p in cfg["deny_read"]]
    allow = [os.path.realpath(p) for p in cfg["allow_read"]]
    writable = [os.path.realpath(p) for p in cfg["allow_write"]]
    own_proc = f"/proc/{os.getpid()}"

    def real(path):
        if isinstance(path, int):
            return None
        try:
            return os.path.realpath(os.fsdecode(path))
        except Exception:
            return None

    def readable(path):
        p = real(path)
        if p is None:
            return True
        if p.startswith("/proc/") and not (p.startswith(own_proc) or p.startswith("/proc/self")
                                           or not p.split("/")[2].isdigit()):
            return False
        return _inside(p, allow) or not _inside(p, deny)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            p = real(path)
            if writing and p is not None and not _inside(p, writable) and p != "/dev/null":
                raise Refused(f"the grader's sandbox refuses to write {p}")
            if not readable(path):
                raise Refused(f"the grader's sandbox refuses to read {p}")
        elif event in _LIST_EVENTS:
            if args and not readable(args[0] if args[0] is not None else "."):
                raise Refused(f"the grader's sandbox refuses to list {args[0]}")
        elif event in _WRITE_EVENTS:
            for a in args:
                if isinstance(a, (str, bytes, os.PathLike)) and not _inside(real(a) or "", writable):
                    raise Refused(f"the grader's sandbox refuses {event} on {a}")
        elif event in _PROCESS_EVENTS:
            raise Refused(f"the grader's sandbox refuses to start or signal processes ({event})")
        elif event in _NETWORK_EVENTS:
            raise Refused(f"the grader's sandbox refuses network access ({event})")
        elif event.startswith("ctypes.") or event in ("sys.addaudithook", "sys.setprofile", "sys.settrace"):
            raise Refused(f"the grader's sandbox refuses {event}")

    refused = set(cfg["deny_modules"]) | set(_DENY_EXTRA)

    class Blocker:
        """Refuses the kit's own packages by name, whatever sys.path says."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in refused:
                raise ImportError(f"the grader's sandbox refuses to import {name!r}: "
                                  "a submission may only use its own files, torch and the standard library")
            return None

    _die_with_parent(cfg.get("parent"))
    fence = landlock([*allow], writable, deny) if cfg.get("landlock", True) else 0
    sys.meta_path.insert(0, Blocker())
    for name in _DENY_EXTRA:  # drop what torch's own imports already loaded, and the references to it
        sys.modules.pop(name, None)
        for holder in ("subprocess", "multiprocessing.util"):
            if holder in sys.modules and hasattr(sys.modules[holder], name):
                setattr(sys.modules[holder], name, None)
    sys.dont_write_bytecode = True
    limit = cfg["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # the capped stdout stops at output_mb; raw writes past the limit fail (EFBIG) instead of killing
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    fsize = (cfg["output_mb"] + 1) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg.get("cpu_s"):
        resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 5))
    sys.addaudithook(hook)
    return fence


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


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _send(fd, obj):
    import torch
    b = io.BytesIO()
    torch.save(obj, b)
    data = b.getvalue()
    payload = struct.pack("<Q", len(data)) + data
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _recv(fd):
    import torch
    (n,) = struct.unpack("<Q", _read_exact(fd, 8))
    return torch.load(io.BytesIO(_read_exact(fd, n)), weights_only=True)


def main():
    cfg = json.loads(sys.argv[1])
    rpc_in, rpc_out = os.dup(0), os.dup(1)
    log = cfg["log_fd"]  # opened by the parent: the worker never names a file it could swap
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = CappedOutput(1, cfg["output_mb"] << 20)

    import torch  # noqa: F401  (imported before the fence: torch loads its libraries with ctypes)
    torch.set_num_threads(cfg.get("threads", 1))
    (torch.ones(64, 64, requires_grad=True) @ torch.ones(64, 64)).sum().backward()  # start the thread pools
    spec = importlib.util.spec_from_file_location("_kit_loader", cfg["loader"])
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)

    def import_module(pkg, name):
        return loader.import_module(pkg["folder"], name, pkg.get("overrides"))

    roots = [os.path.realpath(p) for p in cfg["student_roots"]]
    fence = install_sandbox(cfg)
    _send(rpc_out, {"ready": os.getpid(), "landlock": fence})

    def imported():
        _send(rpc_out, {"progress": "imported"})

    while True:
        try:
            req = _recv(rpc_in)
        except EOFError:
            os._exit(0)
        if req.get("op") == "run":
            reply = execute(req["spec"], import_module, roots, on_imported=imported, inputs_after=True)
        else:
            reply = {"pong": os.getpid()}
        _send(rpc_out, reply)


if __name__ == "__main__":
    main()
