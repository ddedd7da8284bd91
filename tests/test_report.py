"""The HTML report: pictures of attention weights and gradient norms where a check failed, seen in a browser."""
import re
import shutil
import subprocess

import pytest
import torch
from conftest import KIT, SOLUTIONS, copy_solutions, grade, mutate

NO_MASK = ("attention.py", 'scores = scores.masked_fill(mask, float("-inf"))', "pass")


def pictures_of(folder, reference=None):
    from grader.diagnose.pictures import attention_maps, gradient_norms
    from grader.reference import Live
    from grader.sandbox import Sandbox
    ref = reference or Live(SOLUTIONS)
    with Sandbox(folder, allow_weak=True) as sub:
        return attention_maps(sub, ref), gradient_norms(sub, ref, "attention")


def above_diagonal(maps):
    T = maps.shape[-1]
    return float(maps[:, torch.ones(T, T, dtype=torch.bool).triu(1)].sum(-1).mean())


def test_the_pictures_show_a_missing_mask_and_match_for_correct_code(tmp_path):
    maps, grads = pictures_of(mutate(tmp_path / "nomask", *NO_MASK))
    assert maps["student"].shape == maps["reference"].shape == (4, 12, 12)
    assert above_diagonal(maps["reference"]) < 1e-6 and above_diagonal(maps["student"]) > 2.0  # of 12 rows
    assert torch.allclose(maps["student"].sum(-1), torch.ones(4, 12), atol=1e-5)  # still a softmax over keys
    assert grads["names"] == ["k_proj.weight", "o_proj.weight", "q_proj.weight", "v_proj.weight"]
    assert grads["student"] != grads["reference"]
    fused = copy_solutions(tmp_path / "sdpa")  # scaled_dot_product_attention is seen too
    shutil.copy(KIT / "tests" / "alternatives" / "attention_sdpa.py", fused / "attention.py")
    for folder in (SOLUTIONS, fused):
        maps, grads = pictures_of(folder)
        assert maps["note"] == "" and torch.allclose(maps["student"], maps["reference"], atol=1e-5), folder
        assert grads["student"] == pytest.approx(grads["reference"], rel=1e-4)


def test_make_check_writes_a_report_whose_pictures_a_browser_shows(tmp_path):
    folder = mutate(tmp_path / "nomask", *NO_MASK)
    report = tmp_path / "report.html"
    data, out, code = grade(folder, "attention", extra=["--html", str(report)])
    assert code == 1 and "report with pictures of what failed" in out
    page = report.read_text()
    assert "Attention weights" in page and "Gradients: attention" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2  # self-contained: nothing to fetch
    assert "no causal mask" in page  # the check's own diagnosis, beside the picture
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here to look at the report")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1400",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 50_000  # a page of pictures, not a blank one


def test_a_feedforward_whose_gradient_is_wrong_gets_its_own_picture(tmp_path):
    """The block's own picture runs over a stand-in FeedForward: a FeedForward gradient bug is drawn on the
    FeedForward itself, where the gate's bar stands apart from the reference's."""
    from grader.diagnose.pictures import gradient_norms
    from grader.reference import Live
    from grader.sandbox import Sandbox
    folder = mutate(tmp_path / "ffn", "block.py", "F.silu(self.gate_proj(x))", "F.silu(self.gate_proj(x).detach())")
    report = tmp_path / "report.html"
    data, out, code = grade(folder, "block", extra=["--html", str(report)])
    assert code == 1 and "Gradients: block, FeedForward" in report.read_text()
    with Sandbox(folder, allow_weak=True) as sub:
        grads = gradient_norms(sub, Live(SOLUTIONS), "block", module="FeedForward")
    bars = dict(zip(grads["names"], zip(grads["student"], grads["reference"])))
    assert set(bars) == {"down_proj.weight", "gate_proj.weight", "up_proj.weight"}
    assert bars["gate_proj.weight"][0] in (None, 0.0) and bars["gate_proj.weight"][1] > 0
    assert bars["up_proj.weight"][0] == pytest.approx(bars["up_proj.weight"][1], rel=1e-4)


def test_a_passing_grading_writes_a_report_without_pictures(tmp_path):
    report = tmp_path / "report.html"
    data, out, code = grade(SOLUTIONS, "residual", extra=["--html", str(report)])
    assert code == 0 and "report: " in out and "data:image" not in report.read_text()


def test_the_desks_recorded_reference_answers_the_pictures(tmp_path):
    """At the desk (the student release) the reference is a recording: it holds the pictures' answers too."""
    from grader.snapshot import Snapshot, record
    path = tmp_path / "published.pack"
    record(path=path)
    maps, grads = pictures_of(mutate(tmp_path / "nomask", *NO_MASK), Snapshot.load(path=path))
    assert above_diagonal(maps["reference"]) < 1e-6 and above_diagonal(maps["student"]) > 2.0
    assert grads["reference"] and all(v is not None for v in grads["reference"])
    from grader.diagnose.pictures import gradient_norms
    from grader.sandbox import Sandbox
    with Sandbox(SOLUTIONS, allow_weak=True) as sub:
        ffn = gradient_norms(sub, Snapshot.load(path=path), "block", module="FeedForward")
    assert ffn["note"] == "" and ffn["student"] == pytest.approx(ffn["reference"], rel=1e-4)


def test_the_leaderboard_is_in_results_json_only_when_asked(tmp_path, trained):
    corpus, checkpoint = trained
    extra = ["--checkpoint", str(checkpoint), "--corpus", str(corpus)]
    plain, _, _ = grade(SOLUTIONS, "final", extra=extra)
    assert "leaderboard" not in plain
    board, _, _ = grade(SOLUTIONS, "final", extra=[*extra, "--leaderboard"])
    rows = {r["name"]: r for r in board["leaderboard"]}
    assert set(rows) == {"Training-split perplexity", "Validation perplexity"}  # nothing the checkpoint says
    assert 1.0 < rows["Training-split perplexity"]["value"] < 2.5 and rows["Training-split perplexity"]["order"] == "asc"
    assert "Minutes of training" not in rows  # the checkpoint's own word (tests/test_escaping.py forges it)
