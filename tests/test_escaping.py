"""Outputs carry only what the grader measured or escaped (issue 27).

Submitted text (file and folder names, printed output, exception messages) reaches every output through
one escaping function per format (kit/text.py): the terminal, Gradescope's results.json ("text" and "html"
outputs), Markdown, the HTML report, notebook feedback, GitHub Classroom's reporter, the batch CSV. The
leaderboard shows only numbers the grader computed, never what a checkpoint says of itself; and the docs
say which of GitHub Classroom's two totals is the grade.
"""
import csv
import io
import json
import math
import re
from html.parser import HTMLParser

import pytest
from conftest import KIT, grade, train_periodic

from grader.report import classroom, csv_row, gradescope, html, notebook, terminal
from grader.run import Grading
from kit.outcome import Failure, Kind, Result
from kit.text import csv_cell, html_text, markdown_text, plain_text

# what a submission controls: a newline that starts a fake line, terminal escapes (clear the screen, set
# the window's title, colour a fake PASS), a bidi override that shows "evil.py" as "yp.live", line and
# paragraph separators, a zero-width space, and markup with a script in it
SPOOFS = {
    "newline": "x\nTOTAL 100/100",
    "escapes": "\x1b[2J\x1b]0;owned\x07\x1b[32mPASS 10/10\x1b[0m",
    "bidi": "report\u202eyp.live",
    "separators": "a\u2028TOTAL 100/100\u2029b\u200b",
    "markup": '<img src=x onerror="alert(1)">',
    "carriage return": "ok\rTOTAL 100/100",
}
RAW = ("\n", "\r", "\x1b", "\x07", "\u202e", "\u2028", "\u2029", "\u200b")  # none of these may reach a field


def spoofed_grading(spoof, note=None):
    """A grading whose failures carry ``spoof`` in every field a submission can reach, as a path that
    missed the worker's own escaping (a folder's name, an upload's file name) would hand it over."""
    crash = Failure(Kind.CRASHED, "RMSNorm(8)(x)", got=f"your code raised ValueError while running it: {spoof}",
                    hint="read the error and the line it points to")
    stub = Failure(Kind.NOT_IMPLEMENTED, "Residual(f)(x)", got=f"not implemented yet: {spoof}")
    results = [
        Result("residual", "residual.adds", "adds the sublayer's output", 2, 0, False, stub),
        Result("rmsnorm", "rmsnorm.values", "matches the reference", 3, 0, True, crash),
        Result("rmsnorm", "rmsnorm.dtype", "keeps the dtype", 0, 0, False, None, note=note or f"measured {spoof}"),
        Result("decoder", "decoder.values", "matches the reference", 5, 5, True, None),
    ]
    return Grading(results, "bubblewrap", 1.0)


def no_raw(text):
    """The raw characters a submission used, found in ``text`` (a rendered output): must be none."""
    return [hex(ord(c)) for c in RAW if c in text]


def fields(text):
    """An output's lines that begin with a fake line's words."""
    return [line for line in text.splitlines() if line.lstrip().startswith(("TOTAL 100/100", "PASS 10/10"))]


# -- the escaping functions, one per format ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_every_format_function_shows_submitted_text_on_one_line_with_visible_escapes(name):
    spoof = SPOOFS[name]
    for escape in (plain_text, html_text, markdown_text, csv_cell):
        out = escape(spoof)
        assert not no_raw(out), (escape.__name__, no_raw(out))
    assert plain_text("a\u202eb") == "a\\u202eb" and plain_text("a\nb") == "a\\nb"
    assert plain_text("\x1b[31m") == "\\x1b[31m"
    assert plain_text("plain words, kept as they are: 2.5 < 3") == "plain words, kept as they are: 2.5 < 3"


def test_html_text_turns_markup_into_text():
    out = html_text('<img src=x onerror="alert(1)"> & \'quoted\'')
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert out.startswith("&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; ")
    assert tags_of(f"<p title=\"{out}\">{out}</p>") == [("p", {"title": '<img src=x onerror="alert(1)"> & \'quoted\''})]


def test_markdown_text_is_shown_as_written_not_parsed():
    text = '<img src=x onerror="alert(1)"> **bold** [link](http://evil.example) `code` # head | cell _x_'
    out = markdown_text(text)
    # every ASCII punctuation character comes escaped (CommonMark reads "\\<" as "<", never as markup)
    assert re.fullmatch(r"(?:[^!-/:-@\[-`{-~\\]|\\[!-/:-@\[-`{-~])*", out), out
    mistune = pytest.importorskip("mistune")
    rendered = mistune.html(out)
    assert [t for t, _ in tags_of(rendered)] == ["p"], rendered  # one paragraph: no img, em, a, code, h1, table
    assert plain_from_html(rendered) == text


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://evil.example","grades")', "+1+cmd|' /C calc'!A0", "-2+3",
                                  "@SUM(A1:A9)", " =1+1", "\t=1+1", "\r=1+1", "\uff1d1+1"])
def test_csv_cells_never_start_a_formula(cell):
    out = csv_cell(cell)
    assert out[0] == "'" or out[0] == "\\", out  # the quote spreadsheets read as "text", or an escaped tab/CR
    assert not no_raw(out)
    assert csv_cell("ok; =1+1") == "ok;' =1+1"  # a semicolon locale splits there: that part is text too
    assert csv_cell("alice") == "alice" and csv_cell("a-b=c") == "a-b=c"


# -- each output of a grading ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_the_terminal_table_and_notebook_feedback_show_submitted_text_escaped(name):
    spoof = SPOOFS[name]
    grading = spoofed_grading(spoof)
    out = terminal(grading, f"Grading /submissions/{spoof}")  # the title names the submission's folder
    assert not no_raw(out.replace("\n", "")), no_raw(out)
    assert out.splitlines()[0] == f"Grading /submissions/{plain_text(spoof)}"  # the folder's name, on one line
    assert not fields(out), fields(out)
    assert plain_text(spoof) in out  # shown, escaped, where the student can find it
    for r in grading.results:
        if r.failure is not None:
            text = notebook(r)
            assert not no_raw(text.replace("\n", "")) and not fields(text), text
            parts = [v for v in (r.failure.checked, r.failure.expected, r.failure.got, r.failure.likely,
                                 r.failure.hint) if v]
            assert len(text.splitlines()) == 1 + len(parts)  # the title, then one line per part


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_results_json_says_text_and_shows_submitted_text_escaped(name):
    spoof = SPOOFS[name]
    data = gradescope(spoofed_grading(spoof), extra_output=f"Found: {spoof}")  # the upload's file names
    # Gradescope renders each output as the format says: plain text, never markup it parses
    assert data["output_format"] == data["test_output_format"] == data["test_name_format"] == "text"
    assert all(t["output_format"] == "text" for t in data["tests"])
    for text in [data["output"], *(t["output"] for t in data["tests"]), *(t["name"] for t in data["tests"])]:
        assert not no_raw(text.replace("\n", "")) and not fields(text), text
    assert plain_text(spoof) in data["output"]


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_results_json_html_output_shows_submitted_text_as_text(name):
    spoof = SPOOFS[name]
    page = html(spoofed_grading(spoof), f"Grading {spoof}")
    from grader.report import pictures_part
    fragment = ('<h2>Gradients: rmsnorm, RMSNorm</h2><p class=fail>' + html_text(f"your code raised {spoof}")
                + "</p>")
    assert pictures_part(page) == (None, [])  # no pictures drawn: give the fragment the page would have had
    data = gradescope(spoofed_grading(spoof), pictures=(fragment, ["rmsnorm"]))
    shown = next(t for t in data["tests"] if t.get("output_format") == "html")
    assert shown["name"].startswith("rmsnorm")
    assert not no_raw(shown["output"].replace("\n", ""))
    assert {t for t, _ in tags_of(shown["output"])} <= {"pre", "h2", "p"}, tags_of(shown["output"])
    assert not [a for _, attrs in tags_of(shown["output"]) for a in attrs if a.startswith("on")]


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_the_html_report_shows_submitted_text_as_text(name):
    spoof = SPOOFS[name]
    page = html(spoofed_grading(spoof), f"Grading /submissions/{spoof}")
    assert not no_raw(page.replace("\n", "")), no_raw(page)
    tags = tags_of(page)
    assert "img" not in {t for t, _ in tags} and not [a for _, attrs in tags for a in attrs if a.startswith("on")]
    title = re.search(r"<h1>(.*?)</h1>", page).group(1)
    assert title == html_text(f"Grading /submissions/{spoof}")


def test_the_html_reports_picture_notes_show_submitted_text_as_text():
    from grader.diagnose.pictures import Pictures
    spoof = SPOOFS["markup"] + SPOOFS["bidi"] + SPOOFS["newline"]
    norms = {"names": [], "reference": [], "student": [], "note": f"your code raised {spoof}",
             "module": f"Evil{spoof}"}
    page = html(spoofed_grading(spoof), "Grading", Pictures(gradients={"rmsnorm": norms}))
    assert not no_raw(page.replace("\n", "")), no_raw(page)
    assert not [a for _, attrs in tags_of(page) for a in attrs if a.startswith("on")]
    assert html_text(f"your code raised {spoof}") in page


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_the_classroom_reporters_payload_shows_submitted_text_escaped(name):
    spoof = SPOOFS[name]
    payload = classroom(spoofed_grading(spoof))
    for t in payload["tests"]:
        assert not no_raw(t["message"].replace("\n", "")) and not fields(t["message"]), t
        assert not no_raw(t["name"])


@pytest.mark.parametrize("name", ['=HYPERLINK("http://evil.example","click")', "+SUM(1,2)", "-1+1", "@cmd",
                                  "alice\nbob,=1+1", "\u202eevil", "<img src=x onerror=alert(1)>"])
def test_a_batch_csv_row_holds_the_folder_name_as_text(name):
    grading = spoofed_grading(SPOOFS["newline"])
    rows = [csv_row(name, ["residual", "rmsnorm", "decoder"], grading, "graded", f"see {name}.txt", 1.0),
            csv_row(name, ["residual"], None, "invalid", f"{name}: holds none of the exercise files", 0)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction="ignore")  # as grader/batch.py writes it
    w.writeheader()
    w.writerows(rows)
    back = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(back) == 2 and len(buf.getvalue().splitlines()) == 3  # one line per row: no newline got through
    for row in back:
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@", row
            assert not no_raw(cell)
        assert row["submission"] == csv_cell(name)
    assert back[0]["total"] == "5"


# -- the leaderboard: what the grader measured, nothing the checkpoint says ---------------------------

def final_result(**measured):
    return Result("final", "final.perplexity", "perplexity under 2.5", 15, 15, False, None, note="measured",
                  measured=measured)


def test_the_leaderboard_shows_only_what_the_grader_measured():
    # the final check's record of a checkpoint whose metadata claims -600 s of training: -10.0 minutes
    grading = Grading([final_result(perplexity=2.1, val_perplexity=2.4, minutes=-10.0)], "bubblewrap", 1.0)
    board = gradescope(grading, leaderboard=True)["leaderboard"]
    assert {r["name"]: r["value"] for r in board} == {"Training-split perplexity": 2.1, "Validation perplexity": 2.4}
    assert all(r["order"] == "asc" for r in board)
    assert "-10" not in json.dumps(board) and "Minutes" not in json.dumps(board)
    # a number the grader could not compute (a model whose loss overflowed) is left off, and the JSON stays JSON
    grading = Grading([final_result(perplexity=math.inf, val_perplexity=math.nan)], "bubblewrap", 1.0)
    data = gradescope(grading, leaderboard=True)
    assert data.get("leaderboard", []) == []
    json.dumps(data, allow_nan=False)


def test_a_checkpoint_that_forges_its_training_time_reaches_no_leaderboard(tmp_path):
    """End to end: a trained checkpoint whose metadata says it trained -600 s; the grader's results.json with
    --leaderboard shows the perplexities it measured, and nothing of the forged time."""
    from kit.checkpoint import load, save
    corpus, checkpoint = train_periodic(tmp_path, KIT / "solutions", 2, "forged")  # trained or not: measured
    state = load(checkpoint)
    state["elapsed"] = -600.0
    save(state, checkpoint)
    data, out, _ = grade(KIT / "solutions", "final", extra=["--checkpoint", str(checkpoint), "--corpus", str(corpus),
                                                           "--leaderboard"])
    rows = {r["name"]: r["value"] for r in data["leaderboard"]}
    assert set(rows) == {"Training-split perplexity", "Validation perplexity"}
    assert all(math.isfinite(v) and v > 1.0 for v in rows.values())  # what the grader measured on the weights
    assert "-10" not in json.dumps(data["leaderboard"])


# -- GitHub Classroom: which total is the grade -------------------------------------------------------

def reporter_points(payload):
    """What GitHub Classroom records (the reporter's notify-classroom.js): the tests' scores summed, over
    the runner's max_score."""
    return sum(t["score"] for t in payload["tests"]), payload["max_score"]


def reporter_log_total(payload):
    """What the reporter's own log prints as "Total points for grading" (its helpers/test-helpers.js
    getTestScore): the share of tests marked pass, times max_score."""
    tests = payload["tests"]
    return sum(t["status"] == "pass" for t in tests) / len(tests) * payload["max_score"]


def test_the_classroom_points_are_the_graders_total_and_the_docs_say_the_log_total_is_not():
    # an 85: every check passes but the final one (15 points), with two 0-point INFO checks among them
    results = [Result("unit", f"unit.c{i}", f"check {i}", p, p, False, None) for i, p in enumerate([10, 20, 30, 25])]
    results += [Result("unit", f"unit.info{i}", f"info {i}", 0, 0, False, None) for i in range(2)]
    results.append(Result("final", "final.ppl", "perplexity", 15, 0, False,
                          Failure(Kind.WRONG_VALUE, "perplexity", "< 2.5", "3.1")))
    payload = classroom(Grading(results, "bubblewrap", 1.0))
    assert reporter_points(payload) == (85, 100)  # the grade GitHub Classroom records: the grader's
    assert reporter_log_total(payload) != 85  # 6/7 of 100: the reporter's log cannot weigh checks by points
    section = (KIT / "docs/classroom.md").read_text(encoding="utf-8").split("## 3. GitHub Classroom")[1]
    section = section.split("\n## ")[0]
    assert "the reporter's total is the grader's" not in section
    for words in ("Points", "Total points for grading", "Grand total tests passed", "INFO"):
        assert words in section, words


def test_the_workflow_tells_the_student_which_total_counts():
    from classroom.github import workflow
    text = workflow()
    reporter = text[text.index("- name: Autograding Reporter") - 400:]
    assert "Points" in reporter and "Total points for grading" in reporter


# -- helpers -----------------------------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def tags_of(page):
    """(tag, {attribute: value}) of every element of an HTML page, as a browser's parser sees them."""
    p = _Tags()
    p.feed(page)
    return p.tags


def plain_from_html(page):
    p = _Tags()
    p.feed(page)
    return "".join(p.text).strip()
