"""Similarity across a class: pairs of submissions whose code, or whose trained checkpoint, is unusually alike.

    python -m grader similarity FOLDER --out report.html [--top N] [--threshold F] [--stub DIR]

FOLDER holds one subfolder per submission (a batch's folder, nbgrader's ``submitted/`` or ``autograded/``, an
unzipped Gradescope export): each submission's five files are found anywhere inside its subfolder (the
shallowest of each name; in nbgrader notebooks, the ``%%module`` cells put back together), and its ``final.pt``
likewise. ``python -m grader batch`` writes the same report beside its CSV (``grades-similarity.html``).

**Code.** Each exercise file is compared with the same file of every other submission by copydetect
(MOSS's winnowing over Pygments tokens: names, strings and layout do not count, so renamed variables,
reformatting and reordered functions change nothing). What is not the student's is taken out first: the
stub's own text (``exercises/``), and every fingerprint that at least half the class shares (the code any
correct solution writes). A pair's score is the share of the two files' remaining code that matches, averaged
over the five files weighted by their size; a pair is flagged when it is at least ``--threshold`` and well above
the class's typical pair.

**Checkpoints.** Identical files (SHA-256), then, for checkpoints whose weights have the same names and shapes,
the relative distance ``|a - b| / max(|a|, |b|)`` estimated on a fixed sample of the weights (the same positions
in every file). Two independent trainings are far apart (about 1 and more); a copied checkpoint, trained a
little further or with noise added, is close to 0. Files are read only up to the grader's own limit
(``kit.checkpoint.MAX_BYTES``), and only their model's weights.

The report is one HTML file with everything inline (no script, no font, no request), for the instructor: it is
never written where students see their results.
"""
import hashlib
import html
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit import syllabus
from kit.checkpoint import MAX_BYTES as CHECKPOINT_MAX_BYTES
from kit.cli import ArgumentParser, UsageError, writable

KIT = Path(__file__).resolve().parent.parent
STUB = KIT / "exercises"
CHECKPOINT = "final.pt"
MAX_SOURCE = 1 << 20  # bytes of one exercise file read (they are a few kB)
MAX_NOTEBOOK = 16 << 20
MAX_DEPTH = 8  # folder levels searched inside one submission
SAMPLE = 16384  # weights sampled per checkpoint for the distance
NEAR = 0.1  # relative distance under which two checkpoints are called near-identical
COMMON = 0.5  # a fingerprint shared by at least this share of the class (and by 3 or more) is common code
THRESHOLD = 0.5  # the least code score flagged
SHOWN = 12  # pairs drawn side by side
MODULE_CELL = re.compile(r"^\s*%%module\s+(\w+\.py)\s*(?:\(part\s+(\d+)\s+of\s+(\d+)\))?")


# -- finding the submissions --------------------------------------------------------------------

@dataclass
class Submission:
    name: str
    folder: Path
    files: dict = field(default_factory=dict)  # "attention.py" -> source text
    where: dict = field(default_factory=dict)  # "attention.py" -> where it was found, relative to the folder
    checkpoint: Path = None
    notes: list = field(default_factory=list)


def _walk(folder, depth=0):
    """Regular files under ``folder`` (no symbolic links, no hidden folders), shallowest first."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError:
        return
    dirs = []
    for p in entries:
        if p.is_symlink() or p.name.startswith(".") or p.name == "__pycache__":
            continue
        if p.is_file():
            yield p
        elif p.is_dir() and depth < MAX_DEPTH:
            dirs.append(p)
    for d in dirs:
        yield from _walk(d, depth + 1)


def _read_text(path, limit, sub):
    try:
        if path.stat().st_size > limit:
            sub.notes.append(f"{path.relative_to(sub.folder)}: over {limit >> 10} kB, not read")
            return None
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        sub.notes.append(f"{path.relative_to(sub.folder)}: cannot be read ({e.strerror or e})")
        return None


def _from_notebook(path, sub):
    """``{file: source}`` from a notebook's ``%%module X.py (part k of n)`` cells."""
    text = _read_text(path, MAX_NOTEBOOK, sub)
    try:
        cells = json.loads(text)["cells"] if text else []
    except (ValueError, KeyError, TypeError):
        return {}
    parts = {}
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        m = MODULE_CELL.match(src)
        if m:
            body = src.split("\n", 1)[1] if "\n" in src else ""
            parts.setdefault(m.group(1), []).append((int(m.group(2) or 1), body))
    return {f: "\n".join(t for _, t in sorted(ps)) for f, ps in parts.items()}


def find_submissions(root):
    """One Submission per subfolder of ``root``, with whatever of the five files and final.pt it holds."""
    root = Path(root)
    names = _gradescope_names(root)
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")):
        label = f"{folder.name} ({names[folder.name]})" if folder.name in names else folder.name
        sub = Submission(label, folder)
        notebooks = []
        for f in _walk(folder):
            if f.name in syllabus.FILES and f.name not in sub.files:
                text = _read_text(f, MAX_SOURCE, sub)
                if text is not None:
                    sub.files[f.name], sub.where[f.name] = text, str(f.relative_to(folder))
            elif f.name == CHECKPOINT and sub.checkpoint is None:
                sub.checkpoint = f
            elif f.suffix == ".ipynb":
                notebooks.append(f)
        for nb in notebooks:
            for name, text in _from_notebook(nb, sub).items():
                if name in syllabus.FILES and name not in sub.files and text.strip():
                    sub.files[name], sub.where[name] = text, f"{nb.relative_to(folder)} (its %%module cells)"
        out.append(sub)
    return out


def _gradescope_names(root):
    """``{folder: the submitters' names}`` from a Gradescope export's submission_metadata.yml, if there is one."""
    meta = root / "submission_metadata.yml"
    if not meta.is_file() or meta.stat().st_size > MAX_NOTEBOOK:
        return {}
    try:
        import yaml
        data = yaml.safe_load(meta.read_text(encoding="utf-8", errors="replace"))
    except Exception:  # noqa: BLE001 - a names file we cannot read: folders keep their own names
        return {}
    out = {}
    for folder, info in (data or {}).items() if isinstance(data, dict) else ():
        people = info.get(":submitters") or info.get("submitters") if isinstance(info, dict) else None
        if isinstance(people, list):
            who = [p.get(":name") or p.get("name") for p in people if isinstance(p, dict)]
            if any(who):
                out[str(folder)] = ", ".join(str(w) for w in who if w)
    return out


# -- code ---------------------------------------------------------------------------------------

@dataclass
class CodePair:
    a: str
    b: str
    score: float  # the share of the pair's own code that matches, weighted over the files
    files: dict  # file -> (similarity in a, similarity in b, slices in a, slices in b)
    flagged: bool = False


def _fingerprints(texts, stub_dir):
    """``{submission: CodeFingerprint}`` for one file name, stub and common code removed."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # copydetect imports pyplot
    import numpy as np
    from copydetect import CodeFingerprint
    from copydetect.defaults import GUARANTEE_THRESHOLD, NOISE_THRESHOLD
    k, win = NOISE_THRESHOLD, GUARANTEE_THRESHOLD - NOISE_THRESHOLD + 1

    def fingerprint(name, text, boilerplate=None, w=win):
        return CodeFingerprint(name, k, w, boilerplate=boilerplate, fp=io.StringIO(text))

    file = next(iter(texts.values()))[0]
    boiler = []
    stub = Path(stub_dir) / file
    if stub.is_file():
        boiler = list(fingerprint(file, stub.read_text(encoding="utf-8", errors="replace"), w=1).hashes)
    counts = {}
    for name, (_, text) in texts.items():
        for h in fingerprint(file, text, w=1).hashes:
            counts[h] = counts.get(h, 0) + 1
    common = max(3, int(np.ceil(COMMON * len(texts))))
    boiler = np.unique(np.array(boiler + [h for h, c in counts.items() if c >= common], dtype=np.int64))
    return {name: fingerprint(file, text, boiler) for name, (_, text) in texts.items()}, len(boiler)


def compare_code(subs, stub_dir=STUB, threshold=THRESHOLD):
    """Every pair that shares code beyond the stub and the class's common code, best first."""
    from copydetect import compare_files
    pairs = {}
    sizes = {}
    removed = {}
    for file in syllabus.FILES:
        texts = {s.name: (file, s.files[file]) for s in subs if file in s.files}
        if len(texts) < 2:
            continue
        fps, removed[file] = _fingerprints(texts, stub_dir)
        index = {}
        for name, fp in fps.items():
            sizes[(name, file)] = float(fp.token_coverage)
            for h in fp.hashes:
                index.setdefault(h, []).append(name)
        candidates = set()
        for names in index.values():
            if len(names) < len(fps):
                for i, a in enumerate(names):
                    for b in names[i + 1:]:
                        candidates.add((min(a, b), max(a, b)))
        for a, b in candidates:
            _, (sa, sb), (la, lb) = compare_files(fps[a], fps[b])
            if sa or sb:
                pairs.setdefault((a, b), {})[file] = (float(sa), float(sb), la, lb)
    out = []
    names = [s.name for s in subs]
    for (a, b), files in pairs.items():
        both = [f for f in syllabus.FILES if (a, f) in sizes and (b, f) in sizes]
        weight = sum(sizes[(a, f)] + sizes[(b, f)] for f in both)
        matched = sum(files[f][0] * sizes[(a, f)] + files[f][1] * sizes[(b, f)] for f in files)
        out.append(CodePair(a, b, matched / weight if weight else 0.0, files))
    out.sort(key=lambda p: (-p.score, p.a, p.b))
    scores = sorted(p.score for p in out) + [0.0] * max(0, len(names) * (len(names) - 1) // 2 - len(out))
    typical = _median(scores)
    spread = _median([abs(s - typical) for s in scores]) or 0.02
    for p in out:
        p.flagged = p.score >= threshold and p.score > typical + 4 * spread
    return out, removed


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return 0.0
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# -- checkpoints ----------------------------------------------------------------------------------

@dataclass
class Weights:
    name: str
    digest: str
    shapes: tuple = None  # ((name, shape), ...) of the model's weights, or None when unreadable
    sketch: object = None  # float64 numpy vector of the sampled weights
    note: str = ""


def _read_weights(sub):
    """The checkpoint's digest and a sample of its model's weights (read within the grader's limits)."""
    import numpy as np
    path = sub.checkpoint
    try:
        size = path.stat().st_size
        if size > CHECKPOINT_MAX_BYTES:
            return Weights(sub.name, "", note=f"{size >> 20} MB, over the grader's {CHECKPOINT_MAX_BYTES >> 20} MB")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        return Weights(sub.name, "", note=f"cannot be read ({e.strerror or e})")
    w = Weights(sub.name, h.hexdigest())
    try:
        shapes = _model_shapes(path, size)
        from kit.checkpoint import read_model
        _, weights = read_model(path, dict(shapes))
    except Exception as e:  # noqa: BLE001 - an unreadable checkpoint is compared by its digest only
        w.note = f"weights not read ({str(e)[:120] or type(e).__name__})"
        return w
    w.shapes = tuple(sorted((n, tuple(s)) for n, s in shapes))
    flat = np.concatenate([weights[n].float().reshape(-1).numpy().astype(np.float64) for n, _ in w.shapes])
    rng = np.random.default_rng(len(flat))  # the same positions in every checkpoint of this size
    w.sketch = flat[np.sort(rng.choice(len(flat), size=min(SAMPLE, len(flat)), replace=False))]
    return w


def _model_shapes(path, size):
    import struct

    from kit.checkpoint import _model_refs
    from kit.tensorpack import MAX_HEADER, parse_header
    with open(path, "rb") as f:
        first = f.read(8)
        n = struct.unpack("<Q", first)[0] if len(first) == 8 else MAX_HEADER + 1
        if n > MAX_HEADER:
            raise ValueError("no readable header")
        head = first + f.read(n)
    entries, meta = parse_header(head, size)
    refs = _model_refs(json.loads(meta.get("tree", "null")))
    if not refs:
        raise ValueError("no model weights in it")
    return [(name, tuple(entries[t][1])) for name, t in refs.items() if t in entries]


@dataclass
class WeightPair:
    a: str
    b: str
    identical: bool
    distance: float  # relative distance (0 when identical)

    @property
    def near(self):
        return self.identical or self.distance < NEAR


def compare_checkpoints(subs):
    import numpy as np
    read = [_read_weights(s) for s in subs if s.checkpoint is not None]
    out = []
    for i, x in enumerate(read):
        for y in read[i + 1:]:
            a, b = sorted((x, y), key=lambda w: w.name)
            if x.digest and x.digest == y.digest:
                out.append(WeightPair(a.name, b.name, True, 0.0))
            elif x.shapes is not None and x.shapes == y.shapes:
                scale = max(np.linalg.norm(x.sketch), np.linalg.norm(y.sketch)) or 1.0
                out.append(WeightPair(a.name, b.name, False, float(np.linalg.norm(x.sketch - y.sketch) / scale)))
    out.sort(key=lambda p: (not p.identical, p.distance, p.a, p.b))
    return out, read


# -- the report -------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#22303f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:21px}
header p{margin:0;color:#c9d3de}.private{display:inline-block;background:#c0392b;color:#fff;border-radius:3px;
padding:1px 7px;font-weight:600;font-size:12px;margin-left:8px;vertical-align:middle}
main{padding:8px 28px 40px;max-width:1280px}h2{font-size:17px;margin:26px 0 8px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0 4px}.card{background:#fff;border:1px solid #dde3ea;
border-radius:6px;padding:10px 16px;min-width:150px}.card b{display:block;font-size:22px}.card.hot b{color:#c0392b}
table{border-collapse:collapse;background:#fff;border:1px solid #dde3ea;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid #eef1f5;text-align:left;vertical-align:middle}
th{background:#eef2f6;font-weight:600;font-size:13px}tr.flag td{background:#fff4f2}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.score{white-space:nowrap;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:9px;background:#d9dee5;border-radius:5px;width:110px;vertical-align:middle;
margin-right:7px;overflow:hidden}.bar i{display:block;height:100%;background:#2e86de}tr.flag .bar i{background:#c0392b}
.chip{display:inline-block;border-radius:10px;padding:0 7px;margin:1px 2px;font-size:12px;background:#eef2f6;
white-space:nowrap}.chip.hi{background:#fadbd8}.tag{color:#c0392b;font-weight:600}
.muted{color:#6b7785}details{background:#fff;border:1px solid #dde3ea;border-radius:6px;margin:10px 0}
summary{cursor:pointer;padding:8px 12px;font-weight:600}.side{display:grid;grid-template-columns:1fr 1fr;gap:0;
border-top:1px solid #eef1f5}.side>div{min-width:0}.side h4{margin:0;padding:6px 10px;font-size:12px;
background:#f7f9fb;border-bottom:1px solid #eef1f5}pre{margin:0;padding:8px 10px;font:12px/1.4 ui-monospace,
SFMono-Regular,Menlo,Consolas,monospace;overflow-x:auto;white-space:pre}mark{background:#ffe08a}
.side>div+div{border-left:1px solid #eef1f5}ul{margin:6px 0 0 18px;padding:0}a{color:#1f6fb2}
"""


def _bar(x):
    return f'<span class="bar"><i style="width:{max(0.0, min(1.0, x)) * 100:.0f}%"></i></span>'


def _highlight(text, slices):
    """``text`` as HTML with the copied ``slices`` (2 x N character offsets) marked."""
    out, pos = [], 0
    for start, end in sorted(zip(*[list(map(int, s)) for s in slices])) if len(slices) and len(slices[0]) else []:
        start, end = max(start, pos), min(end, len(text))
        if start >= end:
            continue
        out += [html.escape(text[pos:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def render(subs, code, removed, weights, read, threshold=THRESHOLD, top=30, title="Similarity report"):
    e = html.escape
    by = {s.name: s for s in subs}
    flagged = [p for p in code if p.flagged]
    near = [p for p in weights if p.near]
    n_ck = sum(s.checkpoint is not None for s in subs)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>",
             f"<header><h1>{e(title)}<span class=private>instructor only</span></h1><p>{len(subs)} submissions · "
             f"{e(syllabus.COURSE)} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · never show this page "
             "to students</p></header><main>",
             "<div class=cards>"
             f"<div class='card{' hot' if flagged else ''}'><b>{len(flagged)}</b>pairs of code flagged</div>"
             f"<div class='card{' hot' if near else ''}'><b>{len(near)}</b>pairs of checkpoints identical or "
             "near-identical</div>"
             f"<div class=card><b>{len(subs)}</b>submissions</div><div class=card><b>{n_ck}</b>checkpoints</div></div>",
             "<p class=muted>A high score is a reason to look, not a verdict: read the code side by side below. "
             "Renamed variables, reformatting and reordered functions do not lower a score; the stub's own text and "
             "code that at least half the class shares do not raise one.</p>"]

    parts.append("<h2 id=code>Code: the most alike pairs</h2>")
    if not code:
        parts.append("<p class=muted>No two submissions share code beyond the stub and the class's common code.</p>")
    else:
        rows = ["<table><tr><th>#</th><th>submission</th><th>submission</th><th>score</th><th></th><th>by file "
                "(share of each side's own code that matches)</th><th></th></tr>"]
        for i, p in enumerate(code[:top], 1):
            chips = "".join(
                f"<span class='chip{' hi' if max(v[0], v[1]) >= threshold else ''}'>{e(f[:-3])} "
                f"{v[0] * 100:.0f}% / {v[1] * 100:.0f}%</span>" for f, v in
                sorted(p.files.items(), key=lambda kv: syllabus.FILES.index(kv[0])))
            link = f"<a href='#pair{i}'>side by side</a>" if i <= SHOWN else ""
            rows.append(f"<tr class='{'flag' if p.flagged else ''}'><td class=num>{i}</td><td>{e(p.a)}</td>"
                        f"<td>{e(p.b)}</td><td class=score>{_bar(p.score)}{p.score * 100:.0f}%</td>"
                        f"<td>{'<span class=tag>flagged</span>' if p.flagged else ''}</td><td>{chips}</td>"
                        f"<td>{link}</td></tr>")
        rows.append("</table>")
        if len(code) > top:
            rows.append(f"<p class=muted>{len(code) - top} more pairs share some code; --top shows more.</p>")
        parts += rows

    parts.append("<h2 id=checkpoints>Checkpoints: identical and closest pairs</h2>")
    if not weights:
        parts.append(f"<p class=muted>No two of the {n_ck} checkpoints could be compared (a pair needs two readable "
                     "files of the same model).</p>")
    else:
        rows = ["<table><tr><th>#</th><th>submission</th><th>submission</th><th>verdict</th>"
                "<th>relative distance of the weights</th></tr>"]
        shown = weights[:min(top, sum(p.near for p in weights) + 10)]  # the close ones, then the next closest
        for i, p in enumerate(shown, 1):
            verdict = ("<span class=tag>identical file</span>" if p.identical else
                       "<span class=tag>near-identical</span>" if p.near else "<span class=muted>independent</span>")
            dist = "0 (same bytes)" if p.identical else f"{p.distance:.3g}"
            rows.append(f"<tr class='{'flag' if p.near else ''}'><td class=num>{i}</td><td>{e(p.a)}</td>"
                        f"<td>{e(p.b)}</td><td>{verdict}</td><td class=num>{dist}</td></tr>")
        rows.append("</table><p class=muted>Distance: |a − b| / max(|a|, |b|) over "
                    f"{SAMPLE:,} weights sampled at the same positions in every file; two independent trainings are "
                    f"about 1 or more apart, a copy trained further or with noise added under {NEAR}. Two students "
                    "who trained with the same seed start from the same weights: read a small distance with that "
                    "in mind.</p>")
        parts += rows

    if code[:SHOWN]:
        parts.append("<h2 id=pairs>Side by side</h2><p class=muted>Marked: the code that matches (after the stub "
                     "and the common code are taken out).</p>")
    for i, p in enumerate(code[:SHOWN], 1):
        blocks = []
        for f in syllabus.FILES:
            if f not in p.files:
                continue
            sa, sb, la, lb = p.files[f]
            blocks.append(f"<div class=side><div><h4>{e(p.a)} · {e(by[p.a].where.get(f, f))} · {sa * 100:.0f}% "
                          f"matches</h4><pre>{_highlight(by[p.a].files[f], la)}</pre></div><div><h4>{e(p.b)} · "
                          f"{e(by[p.b].where.get(f, f))} · {sb * 100:.0f}% matches</h4>"
                          f"<pre>{_highlight(by[p.b].files[f], lb)}</pre></div></div>")
        parts.append(f"<details id=pair{i}{' open' if i == 1 else ''}><summary>#{i} {e(p.a)} and {e(p.b)}: "
                     f"{p.score * 100:.0f}%</summary>{''.join(blocks)}</details>")

    notes = [f"{e(s.name)}: {e(n)}" for s in subs for n in s.notes]
    notes += [f"{e(w.name)}/{CHECKPOINT}: {e(w.note)}" for w in read if w.note]
    missing = [s.name for s in subs if not s.files]
    if missing:
        notes.append("no exercise file found in: " + e(", ".join(missing)))
    notes.append("fingerprints taken out as the stub's or the class's common code: " +
                 ", ".join(f"{f[:-3]} {n}" for f, n in removed.items()) if removed else
                 "too few submissions to compare code")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    parts.append("<p class=muted>Made by <code>python -m grader similarity</code> (copydetect's winnowing). "
                 "The policy on library shortcuts is a separate matter: see each grading.</p></main></body></html>")
    return "".join(parts)


def report(folder, out, stub_dir=STUB, threshold=THRESHOLD, top=30):
    """Compare the submissions in ``folder``, write the HTML report to ``out``; return (code pairs, weight pairs)."""
    from kit.files import write_text
    subs = find_submissions(folder)
    code, removed = compare_code(subs, stub_dir, threshold)
    weights, read = compare_checkpoints(subs)
    write_text(out, render(subs, code, removed, weights, read, threshold, top))
    return code, weights


def beside(csv_path, submissions):
    """The batch's report, next to its CSV (``grades.csv`` -> ``grades-similarity.html``); its path, or None after
    one line on stderr when it could not be made (a missing report never fails the grading)."""
    out = Path(csv_path).with_name(Path(csv_path).stem + "-similarity.html")
    try:
        code, weights = report(submissions, out)
    except Exception as e:  # noqa: BLE001 - the grades are written; the report is extra
        print(f"similarity report: not written ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    print(f"similarity report (instructor only): {out}: {sum(p.flagged for p in code)} pairs of code flagged, "
          f"{sum(p.near for p in weights)} pairs of checkpoints identical or near-identical")
    return out


def parse(argv):
    p = ArgumentParser(prog="python -m grader similarity",
                       description="Pair the submissions whose code or checkpoints are unusually alike (HTML report).")
    p.add_argument("submissions", help="folder with one subfolder per submission (batch, nbgrader, Gradescope export)")
    p.add_argument("--out", required=True, metavar="PATH", help="where to write the report (one HTML file)")
    p.add_argument("--top", type=int, default=30, help="pairs listed in each table (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help="least code score flagged, 0 to 1 (default: %(default)s)")
    p.add_argument("--stub", default=str(STUB), metavar="DIR",
                   help="the stub files whose text is not the students' (default: exercises/)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    root = Path(args.submissions)
    try:
        if not root.is_dir():
            raise UsageError(f"{root}: no such folder (give the folder with one subfolder per submission)")
        if not any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
            raise UsageError(f"{root} has no submission subfolders")
        if not 0 <= args.threshold <= 1 or args.top < 1:
            raise UsageError("--threshold is between 0 and 1, --top at least 1")
        out = writable("--out", args.out, "report.html")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    code, weights = report(root, out, args.stub, args.threshold, args.top)
    print(f"{out}: {sum(p.flagged for p in code)} pairs of code flagged, "
          f"{sum(p.near for p in weights)} pairs of checkpoints identical or near-identical (instructor only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
