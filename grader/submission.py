"""Parent-side handles on implementations: a sandboxed submission, and the in-process reference.

Both answer ``run(spec)`` with the same dict (see ``worker.execute``). The
submission's answers come from a worker process; when that process crashes,
hangs past the per-call time limit or cannot answer, ``run`` raises
``WorkerFailure`` with a message for the student, the worker is restarted on
the next request, and the same target is not tried again (so one endless loop
costs its time limit once, not once per check; a module whose import hangs or
kills the worker costs it once for the whole module).

The worker runs from a private copy of the few files it needs (worker.py,
lab/loader.py, the stand-ins), so it never has to read the kit itself: with
``user=`` it runs as another OS user who cannot (see docs/threat-model.md).
Whatever the worker answers is data, never code: it is unpickled with
``weights_only=True``, its strings are stripped of control characters, and the
one property it could only report about itself, whether a call changed its
inputs in place, is recomputed here from the inputs it sends back.
"""
import io
import json
import os
import re
import select
import shutil
import signal
import site
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import worker as worker_mod

KIT = Path(__file__).resolve().parent.parent
STANDINS = KIT / "grader" / "standins"
LOADER = KIT / "lab" / "loader.py"
DENY_MODULES = ["solutions", "grader", "lab", "classroom", "tests", "exercises"]
MAX_ANSWER = 256 << 20  # bytes: the largest legitimate answer (a batch of logits) is a few MB
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n: no terminal escapes in reports


class WorkerFailure(Exception):
    """The worker could not answer: crash, time-out, memory, unreadable answer. ``str()`` is the student message."""


def _pkg_key(pkg):
    return json.dumps(pkg, sort_keys=True)


def _env_int(name, default):
    try:
        return int(os.environ.get(name, "")) or default
    except ValueError:
        return default


def _clean(x):
    """The worker's answer with every string stripped of control characters (tensors untouched)."""
    if isinstance(x, str):
        return _CONTROL.sub("", x)
    if isinstance(x, dict):
        return {_clean(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _changed(before, after):
    """Whether a call changed its input tensor, judged with the parent's own torch."""
    if not isinstance(before, torch.Tensor):
        return False
    if not isinstance(after, torch.Tensor) or after.shape != before.shape or after.dtype != before.dtype:
        return True
    return not torch.equal(before, after)


class Submission:
    """A submitted folder, run only inside a sandboxed worker process.

    Limits default to the environment's ``GRADER_MEMORY_MB``, ``GRADER_THREADS`` (or
    ``OMP_NUM_THREADS``) where set, so that batch grading can share out the machine.
    """

    def __init__(self, folder, call_timeout=20.0, start_timeout=120.0, memory_mb=None, output_mb=16,
                 threads=None, user=None, extra_deny=(), cpu_s=1800):
        self.folder = Path(folder).resolve()
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.memory_mb = memory_mb or _env_int("GRADER_MEMORY_MB", 4096)
        self.output_mb = output_mb
        self.threads = threads or _env_int("GRADER_THREADS", _env_int("OMP_NUM_THREADS", min(2, os.cpu_count() or 1)))
        self.user = user
        self.extra_deny = [str(p) for p in extra_deny]
        self.cpu_s = cpu_s
        self.proc = None
        self.tmp = None
        self.runtime = None
        self.log = None
        self.landlock = None  # the Landlock ABI the worker fenced itself with (0: none), once started
        self.restarts = 0
        self._dead_targets = {}  # (pkg, module, target) -> message of the failure that killed it
        self._dead_modules = {}  # (pkg, module) -> message, when the import itself hung or killed the worker

    @property
    def pkg(self):
        return {"folder": str(self.folder)}

    def hybrid(self, **standins):
        """A package made of this submission with some modules replaced by the grader's stand-ins."""
        return {"folder": str(self.folder), "overrides": {m: str(STANDINS / f"{f}.py") for m, f in standins.items()}}

    # -- process management ------------------------------------------------

    def _make_runtime(self):
        """A world-readable copy of what the worker reads: it never needs the kit's folder itself."""
        self.runtime = tempfile.mkdtemp(prefix="grader-runtime-")
        os.chmod(self.runtime, 0o755)
        shutil.copy(worker_mod.__file__, os.path.join(self.runtime, "worker.py"))
        shutil.copy(LOADER, os.path.join(self.runtime, "loader.py"))
        standins = os.path.join(self.runtime, "standins")
        os.mkdir(standins)
        os.chmod(standins, 0o755)
        for f in STANDINS.glob("*.py"):
            shutil.copy(f, os.path.join(standins, f.name))
        for root, _, files in os.walk(self.runtime):
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)

    def _localise(self, x):
        """The spec with paths into grader/standins pointed at the worker's copy of them."""
        if isinstance(x, str):
            src = str(STANDINS)
            if x == src or x.startswith(src + os.sep):
                return os.path.join(self.runtime, "standins") + x[len(src):]
            return x
        if isinstance(x, dict):
            return {k: self._localise(v) for k, v in x.items()}
        if isinstance(x, list):
            return [self._localise(v) for v in x]
        return x

    def start(self):
        if self.proc is not None:
            return
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="grader-worker-")
            self._make_runtime()
            if self.user is not None:
                shutil.chown(self.tmp, user=self.user)
        if self.log is not None:
            self.log.close()
        # an unlinked file: the worker writes through the descriptor, and there is no path to swap
        self.log = tempfile.TemporaryFile(dir=self.runtime)
        allow_read = [str(self.folder), self.runtime, self.tmp, sys.prefix, sys.base_prefix,
                      *site.getsitepackages()]
        cfg = {
            "log_fd": self.log.fileno(), "loader": os.path.join(self.runtime, "loader.py"),
            "threads": self.threads, "parent": os.getpid(),
            "deny_read": [str(KIT), *self.extra_deny], "allow_read": allow_read, "allow_write": [self.tmp],
            "deny_modules": DENY_MODULES, "memory_mb": self.memory_mb, "output_mb": self.output_mb,
            "cpu_s": self.cpu_s, "student_roots": [str(self.folder), os.path.join(self.runtime, "standins")],
        }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.tmp, "TMPDIR": self.tmp,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.threads)}
        kwargs = {"user": self.user} if self.user is not None else {}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-X", "faulthandler", os.path.join(self.runtime, "worker.py"), json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.tmp, env=env,
            pass_fds=(self.log.fileno(),), start_new_session=True, **kwargs)
        self._ready = False

    def _await_ready(self):
        if not self._ready:
            hello = self._read(self.start_timeout, "starting the worker")
            if "ready" not in hello:
                raise WorkerFailure("the grader's worker did not start properly")
            self.landlock = int(hello.get("landlock") or 0)
            self._ready = True

    def stop(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None

    def close(self):
        self.stop()
        if self.log is not None:
            self.log.close()
            self.log = None
        for d in (self.tmp, self.runtime):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        self.tmp = self.runtime = None

    def output_tail(self, n=600):
        """The last characters the submission printed (to help explain a crash)."""
        if self.log is None:
            return ""
        try:
            size = os.fstat(self.log.fileno()).st_size
            data = os.pread(self.log.fileno(), n, max(0, size - n))
            return _CONTROL.sub("", data.decode("utf-8", "replace")).strip()
        except OSError:
            return ""

    # -- messaging -----------------------------------------------------------

    def _read_exact(self, n, deadline, doing):
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def _read(self, timeout, doing, progress=None):
        """The worker's next answer; ``progress`` frames it sends on the way are added to that set."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                (n,) = struct.unpack("<Q", self._read_exact(8, deadline, doing))
                if n > MAX_ANSWER:
                    raise ValueError("answer too large")
                msg = torch.load(io.BytesIO(self._read_exact(n, deadline, doing)), weights_only=True)
                if not isinstance(msg, dict):
                    raise ValueError("not a dict")
                if "progress" in msg and progress is not None:
                    progress.add(str(msg["progress"]))
                    continue
                return _clean(msg)
        except TimeoutError:
            self.stop()
            raise WorkerFailure(f"timed out: no answer after {timeout:.0f} s while {doing} "
                                "(an endless loop, or far too much work?)") from None
        except EOFError:
            code = self.proc.wait()
            self.stop()
            raise WorkerFailure(self._death_message(code, doing)) from None
        except Exception as e:  # unreadable answer: the worker was tampered with
            self.stop()
            raise WorkerFailure(f"the worker's answer could not be read while {doing} ({type(e).__name__})") from None

    def _death_message(self, code, doing):
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = {"SIGKILL": "killed (out of memory?)", "SIGSEGV": "crashed (segmentation fault)",
                   "SIGXCPU": "stopped: it used more than its CPU time limit",
                   "SIGXFSZ": "stopped: it wrote more than the output limit"}.get(name, f"killed by {name}")
            msg = f"the process running your code was {why} while {doing}"
        else:
            msg = (f"the process running your code exited with code {code} while {doing} "
                   "(os._exit or a crash inside a library?)")
        tail = self.output_tail(300)
        return msg + (f"; its last output: {tail!r}" if tail else "")

    def _send(self, obj):
        b = io.BytesIO()
        torch.save(obj, b)
        data = b.getvalue()
        self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
        self.proc.stdin.flush()

    def run(self, spec, timeout=None, doing=None):
        """Run one request in the worker; return its answer or raise WorkerFailure."""
        pkg = _pkg_key(spec["pkg"])
        key = (pkg, spec["module"], spec["target"])
        doing = doing or f"running {spec['target']} from {spec['module']}.py"
        if (pkg, spec["module"]) in self._dead_modules:
            raise WorkerFailure(f"not run: importing {spec['module']}.py already failed this way: "
                                f"{self._dead_modules[(pkg, spec['module'])]}")
        if key in self._dead_targets:
            raise WorkerFailure(f"not run: an earlier check already failed this way: {self._dead_targets[key]}")
        progress = set()
        try:
            if self.proc is None:
                self.restarts += 1
                self.start()
            self._await_ready()
            try:
                self._send({"op": "run", "spec": self._localise(spec)})
            except (BrokenPipeError, OSError):
                code = self.proc.wait()
                self.stop()
                raise WorkerFailure(self._death_message(code, doing)) from None
            reply = self._read(timeout or self.call_timeout, doing, progress)
        except WorkerFailure as e:
            if self._ready and "imported" not in progress:
                self._dead_modules[(pkg, spec["module"])] = str(e)
            self._dead_targets[key] = str(e)
            raise
        self._check_inputs(spec, reply)
        return reply

    @staticmethod
    def _check_inputs(spec, reply):
        """Replace the worker's own claim about in-place changes by a comparison made here."""
        for call, res in zip(spec.get("calls") or [], reply.get("results") or []):
            if not isinstance(res, dict) or "error" in res:
                continue
            args = call.get("args", [])
            after = res.pop("inputs_after", None)
            if not isinstance(after, list) or len(after) != len(args):
                after = [None] * len(args)  # nothing sent back: every tensor input counts as changed
            res["inputs_changed"] = [_changed(a, b) for a, b in zip(args, after)]

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()


class Reference:
    """The reference implementation, run in the grader's own process through the same ``execute``."""

    def __init__(self, folder):
        self.folder = Path(folder).resolve()
        from lab import loader
        self._loader = loader

    @property
    def pkg(self):
        return {"folder": str(self.folder)}

    def hybrid(self, **standins):
        return {"folder": str(self.folder), "overrides": {m: str(STANDINS / f"{f}.py") for m, f in standins.items()}}

    def run(self, spec, timeout=None, doing=None):
        def import_module(pkg, name):
            return self._loader.import_module(pkg["folder"], name, pkg.get("overrides"))
        out = worker_mod.execute(spec, import_module, [str(self.folder), str(STANDINS)])
        if "error" in out:
            raise RuntimeError(f"the reference failed: {out['error']['traceback']}")
        return out

    def module(self, name, pkg=None):
        pkg = pkg or self.pkg
        return self._loader.import_module(pkg["folder"], name, pkg.get("overrides"))
