"""The edges where outcomes become text: the terminal table, results.json, the batch CSV, notebook feedback.

Everything upstream passes ``Result`` and ``Failure`` values (kit/outcome.py); only the functions
here word them. A new output format is a new function here (docs/architecture.md). Every piece of text
that may hold submitted text (a failure's values, a note, the title with the folder's name) goes
through its format's escaping function of ``kit/text.py`` (``plain_text``, ``html_text``, ``csv_cell``),
and the leaderboard shows only numbers the grader measured.
"""
import json
import math

from kit.files import write_text
from kit.i18n import N_, _, ngettext
from kit.i18n import ljust as pad
from kit.i18n import width as columns
from kit.outcome import Kind, by_unit, render, totals
from kit.text import csv_cell, html_text, plain_text

# What the table says under a check, on one line, instead of a block in "What went wrong"
SHORT = (Kind.NOT_IMPLEMENTED, Kind.NOT_RUN)
SNAPSHOT_NOTE = N_("These are the checks your grade uses, run on published inputs and compared with recorded "
                 "reference values; the grade runs the same checks on other inputs.")


# A failure's labels, in the order shown (kit/i18n.py words them; the values are the check's own)
LABELS = (N_("checked:"), N_("expected:"), N_("got:"), N_("likely:"), N_("hint:"))


def failure_lines(f):
    """A failure's parts, one per line, as every text output shows them: labels in the language in force,
    the values after them aligned in terminal columns."""
    labels = [_(label) for label in LABELS]
    column = max(columns(label) for label in labels) + 1
    values = [f.checked, f.expected, f.got, f.likely, f.hint or None]
    return [pad(label, column) + plain_text(render(value)) for label, value in zip(labels, values) if value is not None]


def title(r):
    """A check's title (its docstring's first line, extracted into the catalog by ``make locale``) in the language
    in force."""
    return _(r.title)


def note(r):
    """What a passing check shows (a measured perplexity, say), in the language in force, as plain text."""
    return plain_text(render(r.note or ""))


def failure_text(f):
    return "\n".join(failure_lines(f))


def clip(text, width):
    """``text`` cut to ``width`` terminal columns (a wide character takes two)."""
    while columns(text) > width:
        text = text[:-1]
    return text


def num(x):
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def terminal(grading, heading, color=False):
    """The table (one line per check, grouped by unit), then one block per failure."""
    results = grading.results

    def paint(text, code):
        return f"\033[{code}m{text}\033[0m" if color else text

    width = min(max([columns(title(r)) for r in results] + [20]), 90)
    lines = [plain_text(heading), _("isolation: {isolation}").format(isolation=render(grading.isolation))]
    if grading.reference == "snapshot":
        lines.append(_(SNAPSHOT_NOTE))
    lines.append("")
    unit = None
    for r in results:
        if r.unit != unit:
            unit = r.unit
            got, total = totals([x for x in results if x.unit == unit])
            lines.append(paint(f"{unit} ({num(got)}/{num(total)})", "1"))
        mark = paint(_("INFO"), "36") if r.points == 0 else paint(_("PASS"), "32") if r.passed else \
            paint(_("FAIL"), "31")
        lines.append(f"  {mark} {num(r.score):>2}/{num(r.points):<2} {clip(title(r), width)}")
        if r.failure is not None and r.failure.kind in SHORT:
            lines.append(f"              {plain_text(render(r.failure.got))}")
        elif r.passed and r.note:
            lines.append(f"              {note(r)}")
    got, total = totals(results)
    lines += ["", paint(_("TOTAL {got}/{total}").format(got=num(got), total=num(total)), "1")]
    details = [r for r in results if r.failure is not None and r.failure.kind not in SHORT]
    if details:
        what = _("What went wrong")
        lines += ["", what, "=" * columns(what)]
        for r in details:
            lines.append(paint(f"[{r.unit}] {title(r)}", "1"))
            lines += ["  " + line for line in failure_lines(r.failure)]
            lines.append("")
    return "\n".join(lines)


def gradescope(grading, reference_visibility="visible", extra_output="", leaderboard=False, pictures=None):
    """Gradescope's results.json: per-check score, max_score, status, output and visibility.

    Property checks are always visible; the reference checks' visibility is the instructor's choice
    (visible by default). When some are hidden, the top-level output says how many points are still
    to be shown. With ``leaderboard`` the final check's perplexities, which the grader measured on the weights,
    go to Gradescope's leaderboard (nothing the checkpoint says of itself). Every output is plain text
    (``output_format`` "text", submitted text through ``plain_text``) but the one that shows pictures.
    ``pictures`` (``pictures_part`` of the grading's html page) go, as HTML, under the first failed check of
    a unit they draw.
    """
    results = grading.results
    tests = [{"name": f"{r.unit}: {title(r)}", "score": r.score, "max_score": r.points,
              "status": "passed" if r.passed else "failed",
              "output": note(r) if r.passed else failure_text(r.failure), "output_format": "text",
              "visibility": reference_visibility if r.reference else "visible"} for r in results]
    fragment, units = pictures or (None, [])
    if fragment:
        from html import escape
        first = next((t for t, r in zip(tests, results) if not r.passed and r.points and r.unit in units), None)
        if first is not None:
            first["output_format"] = "html"
            first["output"] = f"<pre>{escape(first['output'])}</pre>{fragment}"  # its values are plain_text already
    hidden = sum(r.points for r in results if r.reference) if reference_visibility != "visible" else 0
    notes = [plain_text(extra_output)] if extra_output else []
    if hidden:
        when = {"hidden": _("never shown here"), "after_due_date": _("shown after the due date"),
                "after_published": _("shown once grades are published")}.get(reference_visibility,
                                                                              reference_visibility)
        notes.append(_("{hidden} of the {total} points are in checks {when}; the total above counts them.").format(
            hidden=num(hidden), total=num(totals(results)[1]), when=when))
    score, max_score = totals(results)
    # "text" said, not left to Gradescope's default: outputs are plain text, shown as written, never markup
    out = {"score": score, "max_score": max_score, "output": " ".join(notes), "output_format": "text",
           "test_output_format": "text", "test_name_format": "text", "visibility": "visible",
           "stdout_visibility": "hidden", "tests": tests}
    if leaderboard:
        board = next((r.measured for r in results if r.unit == "final" and r.measured), None)
        if board:
            # only what the grader measured itself, from the weights (grader/measure.py); what the checkpoint
            # says of itself (its minutes of training, say) is the submission's word and never shown
            rows = [(_("Training-split perplexity"), board.get("perplexity")),
                    (_("Validation perplexity"), board.get("val_perplexity"))]
            out["leaderboard"] = [{"name": name, "value": value, "order": "asc"} for name, value in rows
                                  if isinstance(value, (int, float)) and math.isfinite(value)]
    return out


def classroom(grading):
    """The payload of GitHub Classroom's grading reporter (classroom-resources/autograding-grading-reporter):
    one test per check with its own score, so the total is the grader's; a grader error is an error."""
    results = grading.results

    def status(r):
        if r.failure is None:
            return "pass"
        return "error" if r.failure.kind is Kind.GRADER_ERROR else "fail"
    tests = [{"name": f"{r.unit}: {title(r)}", "status": status(r), "score": r.score, "max_score": r.points,
              "message": note(r) if r.passed else failure_text(r.failure), "line_no": 0}
             for r in results]
    scored = [t for t, r in zip(tests, results) if r.points > 0]
    overall = "error" if any(t["status"] == "error" for t in scored) else \
        "fail" if any(t["status"] == "fail" for t in scored) else "pass"
    return {"version": 1, "status": overall, "max_score": totals(results)[1], "tests": tests}


def csv_row(name, units, grading, status, message, seconds):
    """One row of the batch CSV: the submission, each unit's score, total, status, seconds, message; the
    submission's name and the message as CSV cells (``kit.text.csv_cell``: no formula, one line)."""
    row = {"submission": csv_cell(name)}
    per = by_unit(grading.results) if grading else {}
    for u in units:
        row[u] = num(per.get(u, 0)) if grading else ""
    score, max_score = totals(grading.results) if grading else (0, None)
    row.update(total=num(score), max_score=num(max_score) if max_score is not None else "", status=status,
               seconds=f"{seconds:.1f}", message=csv_cell(message))
    return row


def notebook(result):
    """A failed check as a notebook test cell shows it: its title and points, then the failure's parts."""
    points = ngettext("{n} point", "{n} points", 1 if result.points == 1 else 2).format(n=num(result.points))
    return f"{title(result)} ({points})\n" + failure_text(result.failure)


_STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
.pass{color:#1a7f37}.fail{color:#c62828}.info{color:#0277bd}pre{background:#f6f8fa;padding:.6em;white-space:pre-wrap}
img{max-width:100%;border:1px solid #eee}h2{margin-top:1.6em}.note{color:#666}"""


def html(grading, heading, pictures=None):
    """One self-contained HTML page: the table, every failure, and the pictures the failures call for
    (grader/diagnose/pictures.py), embedded as images."""
    from html import escape

    from .figures import attention_figure, gradient_figure
    results = grading.results
    got, total = totals(results)
    out = [f"<!doctype html><meta charset=utf-8><title>{html_text(heading)}</title><style>{_STYLE}</style>",
           f"<h1>{html_text(heading)}</h1><p>" + _("Total {score}").format(score=f"<b>{num(got)}/{num(total)}</b>")
           + " &middot; " + _("isolation: {isolation}").format(isolation=escape(render(grading.isolation))) + "</p>"]
    if grading.reference == "snapshot":
        out.append(f"<p class=note>{escape(_(SNAPSHOT_NOTE))}</p>")
    drawn = ([] if pictures is None else (["attention"] if pictures.attention is not None else []) +
             sorted(pictures.gradients))
    # the notebooks and Gradescope show this part under a failed check of these units (pictures_part)
    out.append(f'<section id=pictures data-units="{" ".join(drawn)}">')
    if pictures is not None and pictures.attention is not None:
        a = pictures.attention
        out.append("<h2>" + _("Attention weights") + "</h2><p>" + _(
            "CausalSelfAttention(32, 4) on one input of {T} positions, loaded with the same weights on both sides: "
            "one map per head, query positions down, key positions across, bright = weight near 1. The reference "
            "is zero above the diagonal (no position sees the future) and every row sums to 1.").format(T=a["T"])
            + "</p>")
        if a.get("note"):
            out.append(f"<p class=fail>{html_text(render(a['note']))}</p>")
        alt = escape(_("attention weights, yours and the reference's"))
        out.append(f'<img alt="{alt}" src="{attention_figure(a)}">')
    for unit, norms in (pictures.gradients.items() if pictures is not None else ()):
        out.append("<h2>" + _("Gradients: {unit}, {module}").format(
            unit=html_text(unit), module=html_text(norms.get('module') or unit)) + "</h2><p>" + _(
            "One backward pass through the module with the same weights, input and output gradient on both sides: "
            "a bar that differs names the parameter whose gradient is wrong; a missing one was never used.") + "</p>")
        if norms.get("note"):
            out.append(f"<p class=fail>{html_text(render(norms['note']))}</p>")
        alt = escape(_("gradient norms of {unit}").format(unit=unit))
        out.append(f'<img alt="{alt}" src="{gradient_figure(unit, norms)}">')
    out.append("</section>")
    for unit, rows in by_unit_results(results).items():
        u_got, u_total = totals(rows)
        out.append(f"<h2>{escape(unit)} ({num(u_got)}/{num(u_total)})</h2><table>")
        for r in rows:
            mark, cls = (_("INFO"), "info") if r.points == 0 else (_("PASS"), "pass") if r.passed else \
                (_("FAIL"), "fail")
            out.append(f"<tr><td class={cls}>{mark}</td><td>{num(r.score)}/{num(r.points)}</td>"
                       f"<td>{escape(title(r))}</td></tr>")
        out.append("</table>")
        for r in rows:
            if r.failure is not None:
                out.append(f"<h3>{escape(title(r))}</h3><pre>{escape(failure_text(r.failure))}</pre>")
    return "\n".join(out) + "\n"


def pictures_part(page):
    """``(the pictures section of an html() page, the units it draws)``, or ``(None, [])``."""
    import re
    m = re.search(r'<section id=pictures data-units="([a-z ]*)">(.*?)</section>', page or "", re.S)
    if not m or not m.group(1).strip():
        return None, []
    return m.group(2), m.group(1).split()


def by_unit_results(results):
    groups = {}
    for r in results:
        groups.setdefault(r.unit, []).append(r)
    return groups


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")
