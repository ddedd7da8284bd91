"""Bad input to every command: one clear line on stderr, a non-zero exit, no traceback, nothing lost.

Unwritable places are made for real: as root (where permissions say nothing) a read-only tmpfs and
a full one; otherwise a folder without write permission, and the full-disk cases are skipped.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KIT, SOLUTIONS, copy_solutions

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], cwd=KIT, capture_output=True, text=True,
                          timeout=timeout)


def one_line(p, code=None, says=None):
    """The command failed with exactly one line on stderr, no traceback (and ``says`` in it)."""
    err = p.stderr.strip()
    assert p.returncode != 0 and (code is None or p.returncode == code), (p.returncode, p.stdout[-500:], err)
    assert "Traceback" not in p.stderr and err.count("\n") == 0 and err.startswith("error:"), err
    assert says is None or says in err, err
    return err


def _mount(path, options):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    return path


@pytest.fixture
def places(tmp_path):
    """{"folder": an existing folder, "readonly": a read-only one, "full": one on a full disk (or None)}."""
    folder = tmp_path / "folder"
    folder.mkdir()
    mounted = []
    if ROOT:
        ro = _mount(tmp_path / "ro", "ro,size=1m")
        full = _mount(tmp_path / "full", "size=64k")
        mounted += [ro, full]
        (full / "kept.txt").write_text("kept")
        with open(full / "filler", "wb") as f:
            try:
                f.write(bytes(1 << 20))
            except OSError:
                pass
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        full = None
    yield {"folder": folder, "readonly": ro, "full": full}
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)])
    if not ROOT:
        ro.chmod(0o755)


def unwritable(places):
    out = [("read-only", places["readonly"])]
    if places["full"] is not None:
        out.append(("full", places["full"]))
    return out


@pytest.fixture
def broken(tmp_path):
    """The solutions with a syntax error in attention.py."""
    folder = copy_solutions(tmp_path / "broken")
    (folder / "attention.py").write_text((SOLUTIONS / "attention.py").read_text() + "\ndef (\n")
    return folder


# -- the grader --------------------------------------------------------------------------------

def test_grader_output_paths_that_cannot_be_written(places):
    p = run("-m", "grader", "--impl", SOLUTIONS, "--json", places["folder"])
    one_line(p, 2, "is a folder")
    for name, where in unwritable(places):
        for option in ("--json", "--record", "--classroom"):
            one_line(run("-m", "grader", "--impl", SOLUTIONS, option, where / "r.json"), 2, "cannot write there")
    one_line(run("-m", "grader", "--impl", SOLUTIONS, "--json", places["folder"] / "no" / "r.json"), 2,
             "does not exist")
    if places["full"] is not None:
        assert (places["full"] / "kept.txt").read_text() == "kept"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_grader_time_limits_must_be_positive_numbers(value, tmp_path):
    one_line(run("-m", "grader", "--impl", SOLUTIONS, "--timeout", value), 2, "--timeout")
    one_line(run("-m", "grader", "batch", KIT, "--csv", "/tmp/x.csv", "--timeout", value), 2, "--timeout")
    one_line(run("-m", "classroom.gradescope", "--out", tmp_path / "g.zip", "--timeout", value), 2, "--timeout")
    assert not (tmp_path / "g.zip").exists()


def test_grader_folders_and_options(tmp_path):
    one_line(run("-m", "grader", "--impl", tmp_path / "nowhere"), 2, "no such folder")
    (tmp_path / "empty").mkdir()
    one_line(run("-m", "grader", "--impl", tmp_path / "empty"), 2, "holds none of")
    one_line(run("-m", "grader", "--impl", SOLUTIONS, "--checkpoint", tmp_path), 2, "is a folder")
    one_line(run("-m", "grader", "--impl", SOLUTIONS, "--only", "attention2"), 2, "--only")
    one_line(run("-m", "grader", "--no-such-flag"), 2, "unrecognized arguments")


@pytest.mark.skipif(not ROOT, reason="--user needs root")
def test_grader_user_that_cannot_run_the_kits_python():
    import pwd
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    from grader.sandbox import user_problem
    problem = user_problem("nobody")
    if problem is None:
        pytest.skip("nobody can run this Python here")
    err = one_line(run("-m", "grader", "--impl", SOLUTIONS, "--user", "nobody"), 2, "--user nobody")
    assert "cannot run" in err or "cannot start" in err, err
    one_line(run("-m", "grader", "--impl", SOLUTIONS, "--user", "no-such-user-here"), 2, "no such user")


def test_batch_csv_that_cannot_be_written(places, tmp_path):
    subs = tmp_path / "subs"
    copy_solutions(subs / "a")
    one_line(run("-m", "grader", "batch", subs, "--csv", places["folder"]), 2, "is a folder")
    for name, where in unwritable(places):
        one_line(run("-m", "grader", "batch", subs, "--csv", where / "g.csv"), 2, "cannot write there")
    one_line(run("-m", "grader", "batch", subs, "--csv", tmp_path / "g.csv", "--jobs", "0"), 2, "--jobs")
    one_line(run("-m", "grader", "batch", tmp_path / "nowhere", "--csv", tmp_path / "g.csv"), 2, "no such folder")
    one_line(run("-m", "grader", "batch"), 2, "SUBMISSIONS_DIR")
    assert not (tmp_path / "g.csv").exists()


# -- training, sampling, data --------------------------------------------------------------------

@pytest.fixture
def corpus(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("to be, or not to be: that is the question. " * 40)
    return text


TINY = ["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "16", "--batch-size", "2", "--quiet",
        "--compile", "off"]


def train(*args, corpus=None, out=None):
    return run("-m", "lab.train", *(["--data", corpus] if corpus else []), *(["--out", out] if out else []),
               *TINY, *args)


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--lr", "nan"), ("--lr", "-1"), ("--steps", "-1"),
                                          ("--steps", "0"), ("--threads", "0"), ("--minutes", "0"),
                                          ("--warmup", "-3"), ("--eval-every", "x")])
def test_train_numbers_out_of_range(option, value, tmp_path):
    err = one_line(run("-m", "lab.train", option, value, "--out", tmp_path / "f.pt"), 2, option)
    assert not (tmp_path / "f.pt").exists(), err


def test_train_folders_files_and_devices(tmp_path, corpus, broken, places):
    out = tmp_path / "f.pt"
    one_line(train("--impl", tmp_path / "nowhere", "--steps", "1", corpus=corpus, out=out), None, "no such folder")
    one_line(train("--impl", broken, "--steps", "1", corpus=corpus, out=out), None, "attention.py line")
    one_line(train("--impl", SOLUTIONS, "--steps", "1", corpus=tmp_path, out=out), 2, "is a folder")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 40)
    one_line(train("--impl", SOLUTIONS, "--steps", "1", corpus=binary, out=out), None, "not UTF-8")
    import torch
    if not torch.cuda.is_available():
        one_line(train("--impl", SOLUTIONS, "--device", "cuda", corpus=corpus, out=out), 2, "no CUDA device")
    one_line(train("--impl", SOLUTIONS, "--steps", "1", corpus=corpus, out=places["folder"]), 2, "is a folder")
    for name, where in unwritable(places):  # found before training, not after it
        one_line(train("--impl", SOLUTIONS, "--steps", "1", corpus=corpus, out=where / "f.pt"), 2,
                 "cannot write there")
    assert not out.exists()


@pytest.mark.skipif(not ROOT, reason="a disk that fills during the run needs a tmpfs (root)")
def test_a_checkpoint_that_no_longer_fits_is_kept_in_a_rescue_file(tmp_path, corpus):
    """Room for the check before training, not for the checkpoint after it: the run is kept elsewhere."""
    small = _mount(tmp_path / "small", "size=1200k")
    try:
        env_tmp = tmp_path / "rescue"
        env_tmp.mkdir()
        p = subprocess.run([sys.executable, "-m", "lab.train", "--impl", SOLUTIONS, "--data", corpus,
                            "--out", small / "f.pt", "--steps", "2", "--layers", "2", "--hidden", "128", "--heads", "2",
                            "--seq-len", "16", "--batch-size", "2", "--quiet", "--compile", "off"],
                           cwd=KIT, capture_output=True, text=True, timeout=600, env={**os.environ,
                                                                                     "TMPDIR": str(env_tmp)})
        assert p.returncode == 1, (p.stdout, p.stderr)
        rescued = list(env_tmp.glob("f-rescue-*.pt"))
        assert len(rescued) == 1 and str(rescued[0]) in p.stderr and "--resume" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        from kit import checkpoint
        assert checkpoint.load(rescued[0])["step"] == 2
    finally:
        subprocess.run(["umount", "-l", str(small)])


@pytest.mark.parametrize("option,value", [("--temperature", "nan"), ("--temperature", "-1"), ("--top-k", "-5"),
                                          ("--length", "0")])
def test_sample_numbers_out_of_range(option, value):
    one_line(run("-m", "lab.sample", option, value), 2, option)


def test_sample_with_a_broken_implementation(trained, broken):
    _, checkpoint = trained
    one_line(run("-m", "lab.sample", "--checkpoint", checkpoint, "--impl", broken, "--prompt", "to be"), 1,
             "attention.py line")


def test_data_destinations_that_cannot_be_written(places):
    one_line(run("-m", "lab.data", "--dest", places["folder"]), 1, "is a folder")
    for name, where in unwritable(places):
        one_line(run("-m", "lab.data", "--dest", where / "t.txt"), 1, "cannot write")
    if places["full"] is not None:
        assert (places["full"] / "kept.txt").read_text() == "kept"


# -- the classroom builders ------------------------------------------------------------------------

@pytest.mark.parametrize("builder,target", [("classroom.release", "student"), ("classroom.gradescope", "g.zip"),
                                            ("classroom.nbgrader", "nb")])
def test_builders_refuse_a_place_they_cannot_write(builder, target, places):
    for name, where in unwritable(places):
        one_line(run("-m", builder, "--out", where / target), None, "cannot write")
    if places["full"] is not None:
        assert (places["full"] / "kept.txt").read_text() == "kept"
        assert sorted(p.name for p in places["full"].iterdir()) == ["filler", "kept.txt"]  # nothing half-written
    one_line(run("-m", builder, "--no-such-flag"), 2, "unrecognized arguments")


def test_builders_name_solution_markers_that_do_not_pair_up(tmp_path):
    """An instructor's slip in solutions/ (an END without its BEGIN): the file and line, not a traceback."""
    import shutil
    kit = tmp_path / "kit"
    files = subprocess.run(["git", "ls-files"], cwd=KIT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (KIT / f).is_file():
            (kit / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(KIT / f, kit / f)
    broken = kit / "solutions" / "residual.py"
    broken.write_text(broken.read_text().replace("### BEGIN SOLUTION", "# (marker removed)", 1))
    for args in (["classroom.stubs", "--check"], ["classroom.stubs", "--out", tmp_path / "ex"],
                 ["classroom.release", "--out", tmp_path / "student"], ["classroom.nbgrader", "--out", tmp_path / "nb"]):
        p = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=kit, capture_output=True, text=True,
                           timeout=300)
        one_line(p, 1, "residual.py:")
    assert not any((tmp_path / d).exists() for d in ("ex", "student", "nb"))


def test_the_benches_refuse_a_checkout_that_is_not_nanogpts(tmp_path):
    """`python -m lab.bench --nanogpt DIR` wants a checkout of nanoGPT: said before anything is measured."""
    one_line(run("-m", "lab.bench", "--nanogpt", tmp_path, timeout=120), 2, "not a checkout of nanoGPT")


def test_every_command_answers_an_unknown_flag_on_one_line():
    for module in ("grader", "lab.train", "lab.sample", "lab.data", "lab.bench", "grader.bench", "classroom.docs",
                   "classroom.github", "classroom.stubs"):
        one_line(run("-m", module, "--no-such-flag", timeout=120), 2, "unrecognized arguments")
    assert Path(KIT / "exercises").is_dir()
