"""BENCHMARKS.md: where every measured number lives, one section per measurement.

Each benchmark (``python -m grader.bench``, ``python -m lab.bench``) rewrites its own section
with the command that reproduces it, the machine (``kit.machine.describe``) and the date; the
text outside the sections is kept. Docs and messages point to these sections and never retype
the numbers; the ``<!-- key: value -->`` lines in a section are its headline values for programs.
"""
import datetime
import re
from pathlib import Path

from .files import write_text
from .machine import describe

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "BENCHMARKS.md"


def write_section(name, body, command, device="cpu", out=OUT):
    """Replace (or add) the section ``name`` of BENCHMARKS.md, keeping the others."""
    out = Path(out)
    text = out.read_text() if out.exists() else "# Benchmarks\n\nMeasured with `make bench`; each section says how.\n"
    block = (f"<!-- bench:{name} -->\n## {name}\n\n- command: `{command}`\n- machine: {describe(device)}\n"
             f"- date: {datetime.date.today().isoformat()}\n\n{body.strip()}\n<!-- /bench:{name} -->\n")
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    write_text(out, text)

