"""BENCHMARKS.md: where every measured number lives, one section per measurement.

Each benchmark (``python -m grader.bench``, ``python -m lab.bench``) rewrites its own section
with the command that reproduces it, the machine (``kit.machine.describe``) and the date; the
text outside the sections is kept. Docs and messages quote numbers from here (``quote``),
never retype them.
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


def section(name, out=OUT):
    """The body of section ``name`` (None when there is none)."""
    out = Path(out)
    if not out.exists():
        return None
    m = re.search(rf"<!-- bench:{re.escape(name)} -->\n(.*?)<!-- /bench:{re.escape(name)} -->", out.read_text(), re.S)
    return m.group(1) if m else None


def quote(name, key, out=OUT):
    """A number recorded in section ``name`` as ``<!-- key: value -->`` (None when not measured)."""
    body = section(name, out)
    m = re.search(rf"<!-- {re.escape(key)}: ([^>]*?) -->", body or "")
    return m.group(1).strip() if m else None
