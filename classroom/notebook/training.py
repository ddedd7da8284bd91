"""The final project's training cell: ``python -m lab.train`` on the workspace, its output streamed to the cell."""
import os
import signal
import subprocess
import sys
from pathlib import Path

from kit.i18n import _

from .grading import autograding

KIT = Path(__file__).resolve().parents[2]
CHECKPOINT = "runs/final.pt"
MAX_MINUTES = 100  # the training cell's time limit (nbgrader_config.py) leaves room for start-up and the check
SWITCH = "TRANSFORMER_KIT_TRAINING"  # "on" trains even while nbgrader grades; "off" never trains


def enabled():
    """Training runs at the student's desk; while nbgrader grades or validates, only when the instructor says so."""
    value = os.environ.get(SWITCH, "").lower()
    if value in ("off", "0", "no", "false"):
        return False
    return value in ("on", "1", "yes", "true") or not autograding()


def train(folder, minutes, resume, checkpoint=CHECKPOINT):
    path = Path(checkpoint).resolve()
    if not enabled():
        why = _("{switch} is off here").format(switch=SWITCH) if os.environ.get(SWITCH) else \
            _("nbgrader is grading this notebook")
        said = _("training skipped ({why}): the final check grades {checkpoint} as it is") if path.exists() else \
            _("training skipped ({why}): the final check grades {checkpoint} as it is (there is none)")
        print(said.format(why=why, checkpoint=checkpoint))
        return
    if path.exists() and not resume:
        print(_("{checkpoint} exists, so it is not trained again: set RESUME = True to train it further, "
                "or delete it to start over").format(checkpoint=checkpoint))
        return
    minutes = float(minutes)
    if not minutes > 0:
        raise ValueError(_("MINUTES must be a positive number, not {minutes}").format(minutes=minutes))
    if minutes > MAX_MINUTES:
        print(_("training for {minutes} minutes, the most this cell's time limit allows "
                "(run it again with RESUME = True to go on)").format(minutes=MAX_MINUTES))
        minutes = MAX_MINUTES
    cmd = [sys.executable, "-m", "lab.train", "--impl", str(folder), "--out", str(path), "--minutes", f"{minutes:g}"]
    if resume and path.exists():
        cmd.append("--resume")
    print("$ python -m lab.train " + " ".join(cmd[3:]), flush=True)
    code = _stream(cmd, cwd=KIT)
    if code not in (0, 130):
        raise RuntimeError(_("training stopped with exit status {code}: read the messages above").format(code=code))
    if path.exists():  # the trainer's own advice names its command line; in a notebook it is this
        said = _("interrupted: {checkpoint} is saved. To train it further, set RESUME = True and run this cell "
                 "again.") if code == 130 else \
            _("{checkpoint} is saved. To train it further, set RESUME = True and run this cell again.")
        print("\n" + said.format(checkpoint=checkpoint))


def _stream(cmd, cwd):
    """Run ``cmd`` and copy its output to this cell as it comes; Ctrl-C (kernel interrupt) is passed on."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                chunk = os.read(proc.stdout.fileno(), 4096)
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)  # the trainer saves its checkpoint, then exits
                continue
            if not chunk:
                break
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
