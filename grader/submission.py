"""Parent-side handles on implementations: a sandboxed submission, and the in-process reference.

Both answer ``run(spec)`` with the same dict (see ``worker.execute``). The
submission's answers come from a worker process; when that process crashes,
hangs past the per-call time limit or cannot answer, ``run`` raises
``WorkerFailure`` with a message for the student, the worker is restarted on
the next request, and the same target is not tried again (so one endless loop
costs its time limit once, not once per check).
"""
import io
import json
import os
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


class WorkerFailure(Exception):
    """The worker could not answer: crash, time-out, memory, unreadable answer. ``str()`` is the student message."""


def _pkg_key(pkg):
    return json.dumps(pkg, sort_keys=True)


class Submission:
    """A submitted folder, run only inside a sandboxed worker process."""

    def __init__(self, folder, call_timeout=20.0, start_timeout=120.0, memory_mb=4096, output_mb=16,
                 threads=None, user=None, extra_deny=()):
        self.folder = Path(folder).resolve()
        self.call_timeout = call_timeout
        self.start_timeout = start_timeout
        self.memory_mb = memory_mb
        self.output_mb = output_mb
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.user = user
        self.extra_deny = [str(p) for p in extra_deny]
        self.proc = None
        self.tmp = None
        self.restarts = 0
        self._dead_targets = {}  # (pkg, module, target) -> message of the failure that killed it

    @property
    def pkg(self):
        return {"folder": str(self.folder)}

    def hybrid(self, **standins):
        """A package made of this submission with some modules replaced by the grader's stand-ins."""
        return {"folder": str(self.folder), "overrides": {m: str(STANDINS / f"{f}.py") for m, f in standins.items()}}

    # -- process management ------------------------------------------------

    def start(self):
        if self.proc is not None:
            return
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="grader-worker-")
            if self.user is not None:
                shutil.chown(self.tmp, user=self.user)
        log = os.path.join(self.tmp, "output.log")
        allow_read = [str(self.folder), str(STANDINS), self.tmp, sys.prefix, sys.base_prefix,
                      *site.getsitepackages()]
        cfg = {
            "log": log, "loader": str(LOADER), "threads": self.threads,
            "deny_read": [str(KIT), *self.extra_deny], "allow_read": allow_read, "allow_write": [self.tmp],
            "deny_modules": DENY_MODULES, "memory_mb": self.memory_mb, "output_mb": self.output_mb,
            "student_roots": [str(self.folder), str(STANDINS)],
        }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.tmp, "TMPDIR": self.tmp,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.threads)}
        kwargs = {"user": self.user} if self.user is not None else {}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-X", "faulthandler", str(Path(worker_mod.__file__)), json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.tmp, env=env,
            start_new_session=True, **kwargs)
        self._ready = False

    def _await_ready(self):
        if not self._ready:
            hello = self._read(self.start_timeout, "starting the worker")
            if "ready" not in hello:
                raise WorkerFailure("the grader's worker did not start properly")
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
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def output_tail(self, n=600):
        """The last characters the submission printed (to help explain a crash)."""
        try:
            with open(os.path.join(self.tmp, "output.log"), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("utf-8", "replace").strip()
        except (OSError, TypeError):
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

    def _read(self, timeout, doing):
        deadline = time.monotonic() + timeout
        try:
            (n,) = struct.unpack("<Q", self._read_exact(8, deadline, doing))
            if n > 1 << 31:
                raise ValueError("answer too large")
            data = self._read_exact(n, deadline, doing)
            return torch.load(io.BytesIO(data), weights_only=True)
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
                   "SIGXFSZ": "stopped: it printed more than the output limit"}.get(name, f"killed by {name}")
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
        key = (_pkg_key(spec["pkg"]), spec["module"], spec["target"])
        doing = doing or f"running {spec['target']} from {spec['module']}.py"
        if key in self._dead_targets:
            raise WorkerFailure(f"not run: an earlier check already failed this way: {self._dead_targets[key]}")
        try:
            if self.proc is None:
                self.restarts += 1
                self.start()
            self._await_ready()
            try:
                self._send({"op": "run", "spec": spec})
            except (BrokenPipeError, OSError):
                code = self.proc.wait()
                self.stop()
                raise WorkerFailure(self._death_message(code, doing)) from None
            return self._read(timeout or self.call_timeout, doing)
        except WorkerFailure as e:
            self._dead_targets[key] = str(e)
            raise

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
