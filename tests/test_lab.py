"""Data, tokenizer, training, resume, checkpoints, sampling and the final check end to end."""
import hashlib
import re
import subprocess
import sys

import pytest
import torch
from conftest import KIT, PERIODIC, by_name, grade, mutate, train_periodic

from kit import checkpoint as ckpt
from kit import corpus as data

CORPUS = KIT / "data" / "tinyshakespeare.txt"
SHARED = KIT.parent / "shared" / "data" / "tinyshakespeare.txt"
FINAL = "final: Your trained model: training-split perplexity < 2.5 on TinyShakespeare, causal, the curriculum's 4 x 256"


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=KIT, capture_output=True, text=True, timeout=timeout)


def corpus():
    for p in (CORPUS, SHARED):
        if p.is_file():
            return p
    pytest.skip("TinyShakespeare is not here: run `make data`")


# -- data ------------------------------------------------------------------------

def test_hash_check_accepts_the_real_file():
    assert data.verify(corpus()) == corpus()


def test_hash_check_rejects_a_wrong_file(tmp_path):
    bad = tmp_path / "input.txt"
    bad.write_text("not shakespeare")
    with pytest.raises(data.DataError, match="sha256"):
        data.verify(bad)


def test_hash_check_rejects_a_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.verify(tmp_path / "nothing.txt")


def test_fetch_from_local_copy_is_atomic_and_verified(tmp_path):
    dest = tmp_path / "data" / "tinyshakespeare.txt"
    assert data.fetch(dest, src=corpus()) == dest
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == data.SHA256
    bad = tmp_path / "bad.txt"
    bad.write_text("x" * 100)
    dest.write_text("keep me")  # a failed fetch must not touch what is there
    with pytest.raises(data.DataError):
        data.fetch(dest, src=bad)
    assert dest.read_text() == "keep me"
    assert [p.name for p in dest.parent.iterdir()] == ["tinyshakespeare.txt"]  # no partial files left


def test_fetch_without_network_fails_cleanly(tmp_path, monkeypatch):
    dest = tmp_path / "d" / "t.txt"
    assert data.fetch(dest, url="http://127.0.0.1:9/input.txt", timeout=2) == dest  # the shipped copy: no network
    assert data.verify(dest) == dest
    monkeypatch.setattr(data, "DEFAULT_PATH", tmp_path / "no-shipped-copy.txt")  # a kit without data/
    dest = tmp_path / "e" / "t.txt"
    with pytest.raises(data.DataError, match="could not download"):
        data.fetch(dest, url="http://127.0.0.1:9/input.txt", timeout=2)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_make_data_command_reports_one_line_and_exit_code(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("nope")
    p = run("-m", "lab.data", "--src", str(bad), "--dest", str(tmp_path / "out.txt"))
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "sha256" in p.stderr
    p = run("-m", "lab.data", "--src", str(corpus()), "--dest", str(tmp_path / "out.txt"))
    assert p.returncode == 0 and "sha256 verified" in p.stdout


def test_tokenizer_round_trip_and_splits():
    text = corpus().read_text(encoding="utf-8")
    tok = data.CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    sample = text[1000:3000]
    assert tok.decode(tok.encode(sample)) == sample
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("ü")
    assert tok.ids(sample).tolist() == [tok.chars.index(c) for c in sample]  # each id is the character's index
    odd = data.CharTokenizer("zaé\n")  # unsorted, beyond ASCII
    assert odd.ids("aé\nz").tolist() == odd.encode("aé\nz") == [1, 2, 3, 0]
    for bad in ("ü", "aü"):
        with pytest.raises(ValueError, match="'ü' is not in the vocabulary"):
            odd.ids(bad)
    assert data.CharTokenizer("").ids("").tolist() == []
    _, train, val = data.load_splits(corpus())
    assert (len(train), len(val)) == (1_003_854, 111_540)


# -- training ----------------------------------------------------------------------

TINY = ["--layers", "2", "--hidden", "64", "--heads", "4", "--seq-len", "64", "--quiet", "--threads", "1",
        "--compile", "off"]


def train(out, *args):
    """``python -m lab.train`` on the solutions and the real corpus, writing ``out``."""
    return run("-m", "lab.train", "--impl", "solutions", "--data", str(corpus()), "--out", str(out), *args)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_short_training_on_the_real_corpus_lowers_the_loss(tmp_path, optimizer):
    out = tmp_path / "run.pt"
    p = train(out, "--steps", "150", "--eval-every", "150", "--warmup", "10", "--no-early-stop", "--optimizer",
              optimizer, *TINY)
    assert p.returncode == 0, p.stderr
    state = ckpt.load(out)
    assert state["step"] == 150
    # the untrained model predicts about uniformly: perplexity ~ 65
    assert state["metrics"][-1]["train_ppl"] < 20, state["metrics"]


def test_the_default_optimizer_is_muon_on_a_cpu_and_adamw_on_a_gpu(tmp_path):
    from lab.config import SCHEDULE_STEPS, pick_optimizer

    assert [pick_optimizer("auto", d) for d in ("cpu", "cuda", "mps")] == ["muon", "adamw", "adamw"]
    assert pick_optimizer("adamw", "cpu") == "adamw"
    out = tmp_path / "run.pt"
    p = train(out, "--steps", "2", "--eval-every", "2", "--warmup", "1", "--no-early-stop", "--device", "cpu", *TINY)
    assert p.returncode == 0, p.stderr
    saved = ckpt.load(out)["args"]  # what --resume will use: the choice made, not "auto"
    assert (saved["optimizer"], saved["schedule_steps"]) == ("muon", SCHEDULE_STEPS["muon"]), saved


def test_the_schedule_is_capped_in_steps_on_a_fast_machine(tmp_path):
    # --minutes would fit thousands of tiny steps; the schedule stops at --schedule-steps all the same
    out = tmp_path / "run.pt"
    p = train(out, "--minutes", "5", "--schedule-steps", "7", "--eval-every", "100", "--warmup", "2", "--no-early-stop",
              *TINY)
    assert p.returncode == 0, p.stderr
    state = ckpt.load(out)
    assert (state["step"], state["total_steps"]) == (7, 7) and "schedule finished" in p.stdout, p.stdout


def test_a_run_too_short_to_win_back_compiling_stays_eager(monkeypatch):
    from lab import config, train

    monkeypatch.setattr(config.shutil, "which", lambda name: "/usr/bin/" + name)  # a C++ compiler is there
    decide = lambda *argv: config.resolve(train.parse(["--device", "cpu", *argv]))  # noqa: E731
    short = decide("--minutes", "0.1")
    assert not short.compile and any("not compiling" in n and "--compile on" in n for n in short.notes), short.notes
    assert decide().compile and not decide().notes  # make train: 120 minutes
    assert not decide("--steps", "20").compile and decide("--steps", "5000").compile  # steps at ~0.5 s on a CPU
    assert decide("--minutes", "0.1", "--compile", "on").compile and not decide("--compile", "off").compile
    assert config.pick_compile("auto", "mps", 120) == (False, None)
    assert config.pick_compile("auto", "cuda", 0.5)[0] is False and config.pick_compile("auto", "cuda", 5)[0]
    monkeypatch.setattr(config.shutil, "which", lambda name: None)
    assert not decide().compile and "no C++ compiler" in decide().notes[0]
    # resuming: what is left of the checkpoint's plan, within --minutes
    state = {"total_steps": 3000, "step": 2990, "budget_end": None, "elapsed": 100.0}
    assert config.training_minutes(train.parse(["--device", "cpu"]), state) == pytest.approx(10 * 0.5 / 60)
    state.update(budget_end=1900.0, elapsed=100.0)
    assert config.training_minutes(train.parse(["--device", "cpu", "--minutes", "15"]), state) == 15
    assert config.training_minutes(train.parse(["--device", "cpu", "--minutes", "60"]), state) == 30


def test_compiling_happens_before_the_clock_starts_and_says_so(tmp_path, monkeypatch, capsys):
    import time

    from lab import train
    calls = []

    def slow_compile(model):  # torch.compile's cost, in the first call
        def forward(x):
            calls.append(x.shape)
            if len(calls) == 1:
                time.sleep(1.0)
            return model(x)
        return forward

    monkeypatch.setattr(torch, "compile", slow_compile)
    args = train.parse(["--impl", "solutions", "--data", str(corpus()), "--out", str(tmp_path / "run.pt"), "--steps",
                        "3", "--eval-every", "3", "--warmup", "1", "--no-early-stop", *TINY, "--compile", "on"])
    t = train.Trainer(args)
    assert t.run() == 0
    out = capsys.readouterr().out
    assert "compiling the model (torch.compile" in out and re.search(r"compiled in \d+ s", out), out
    assert len(calls) == 4 and t.step == 3  # the compiling call, then the three steps: no step was spent on it
    assert t.elapsed < 0.9, t.elapsed  # the second it took is not training time
    # and the run is the one an eager run makes: same batches, same weights
    args = train.parse(["--impl", "solutions", "--data", str(corpus()), "--out", str(tmp_path / "eager.pt"), "--steps",
                        "3", "--eval-every", "3", "--warmup", "1", "--no-early-stop", *TINY])
    assert train.Trainer(args).run() == 0
    a, b = ckpt.load(tmp_path / "run.pt"), ckpt.load(tmp_path / "eager.pt")
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_exactly(tmp_path, optimizer):
    plan = ["--steps", "12", "--eval-every", "6", "--warmup", "3", "--no-early-stop", "--optimizer", optimizer, *TINY]
    p = train(tmp_path / "straight.pt", *plan)
    assert p.returncode == 0, p.stderr
    p = train(tmp_path / "split.pt", *plan, "--stop-at", "5")
    assert p.returncode == 0 and ckpt.load(tmp_path / "split.pt")["step"] == 5
    p = train(tmp_path / "split.pt", "--resume", "--quiet", "--threads", "1", "--compile", "off")
    assert p.returncode == 0, p.stderr
    a, b = ckpt.load(tmp_path / "straight.pt"), ckpt.load(tmp_path / "split.pt")
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [m["train_ppl"] for m in a["metrics"]] == [m["train_ppl"] for m in b["metrics"]]


def test_a_checkpoint_from_before_the_optimizer_flag_resumes_with_adamw(tmp_path):
    out = tmp_path / "old.pt"
    p = train(out, "--steps", "8", "--stop-at", "4", "--eval-every", "4", "--warmup", "2", "--no-early-stop",
              "--optimizer", "adamw", *TINY)  # the only optimizer there was
    assert p.returncode == 0, p.stderr
    state = ckpt.load(out)
    del state["args"]["optimizer"]  # as written before --optimizer existed
    ckpt.save(state, out)
    p = train(out, "--resume", "--optimizer", "muon", *TINY)  # the checkpoint's optimizer wins over the command line
    assert p.returncode == 0, p.stderr
    assert ckpt.load(out)["step"] == 8 and "adamw" in p.stdout, p.stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_orthogonalizes_tall_wide_and_square_matrices(dtype):
    from lab.muon import orthogonalize
    g = torch.Generator().manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(64, 64, generator=g))
    q2, _ = torch.linalg.qr(torch.randn(64, 64, generator=g))
    square = q1 @ torch.diag(torch.logspace(-2, 0, 64)) @ q2  # singular values from 0.01 to 1
    for G in [torch.randn(3, 64, 176, generator=g) * torch.logspace(-1, 0, 176), torch.randn(2, 176, 64, generator=g),
              square]:
        O = orthogonalize(G, dtype=dtype)
        assert O.shape == G.shape and O.dtype == dtype
        O = O.float()
        s = torch.linalg.svdvals(O)
        assert s.min() > 0.6 and s.max() < 1.25, (tuple(G.shape), s.min().item(), s.max().item())
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        exact = U @ Vh  # what the iteration approximates
        cos = (O * exact).sum(dim=(-2, -1)) / (O.norm(dim=(-2, -1)) * exact.norm(dim=(-2, -1)))
        assert cos.min() > 0.97, (tuple(G.shape), cos)


def test_muon_steps_the_embedding_and_norms_at_three_times_the_learning_rate():
    from lab.muon import MuonAdamW

    def one_step(**kw):
        torch.manual_seed(0)
        model = torch.nn.ModuleDict({"embed_tokens": torch.nn.Embedding(5, 8), "q_proj": torch.nn.Linear(8, 8)})
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = MuonAdamW(model, lr=1e-2, **kw)
        (model["q_proj"](model["embed_tokens"](torch.arange(5))) ** 2).sum().backward()
        opt.step()
        return {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}, opt

    base, _ = one_step(adamw_lr_scale=1.0)
    scaled, opt = one_step()
    # AdamW's first step moves each weight by lr (m / sqrt(v) = +-1); Muon's matrix step does not change
    assert scaled["embed_tokens.weight"] == pytest.approx(3 * base["embed_tokens.weight"], rel=1e-4), (base, scaled)
    assert base["embed_tokens.weight"] == pytest.approx(1e-2, rel=1e-3)
    assert scaled["q_proj.weight"] == pytest.approx(base["q_proj.weight"], rel=1e-6)
    # a state saved before the scale existed (no "lr_scale") resumes at the scale it trained with: 1
    state = opt.state_dict()
    for g in state["param_groups"]:
        del g["lr_scale"]
    opt.load_state_dict(state)
    assert all("lr_scale" not in g for g in opt.param_groups)
    opt.step()  # no KeyError


def test_muon_runs_newton_schulz_in_bf16_only_where_training_does(tmp_path, monkeypatch, capsys):
    from lab import muon
    from lab.config import pick_precision

    # auto: bf16 on a CPU with native bf16 arithmetic, float32 elsewhere (emulated bf16 is ~20x slower)
    monkeypatch.setattr("lab.config.cpu_has_bf16", lambda: False)
    assert pick_precision("auto", "cpu") == "fp32" and pick_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr("lab.config.cpu_has_bf16", lambda: True)
    assert pick_precision("auto", "cpu") == "bf16" and pick_precision("fp32", "cpu") == "fp32"
    plan = ["--steps", "6", "--eval-every", "2", "--warmup", "1", "--no-early-stop", "--optimizer", "muon", *TINY]
    for precision, ns in [("fp32", "float32"), ("bf16", "bfloat16")]:
        out = tmp_path / f"{precision}.pt"
        p = train(out, *plan, "--precision", precision, "--stop-at", "2")
        assert p.returncode == 0, p.stderr
        state = ckpt.load(out)
        assert state["precision"] == precision
        assert [g.get("ns_dtype") for g in state["optimizer"]["param_groups"]] == [ns, None]
        # a precision named on the command line wins over the checkpoint's, and Newton-Schulz follows it
        other, other_ns = ("bf16", "bfloat16") if precision == "fp32" else ("fp32", "float32")
        p = train(out, "--resume", "--precision", other, "--stop-at", "4", *TINY)
        assert p.returncode == 0, p.stderr
        assert f"trained in {precision}; resuming in {other}" in p.stdout, p.stdout
        state = ckpt.load(out)
        assert state["step"] == 4 and state["precision"] == other, state["precision"]
        assert [g.get("ns_dtype") for g in state["optimizer"]["param_groups"]] == [other_ns, None]
    # with auto, a resumed run keeps its checkpoint's precision (it continues exactly) ...
    from lab.config import resume_precision
    from lab.train import Trainer, parse
    for saved in ("fp32", "bf16"):
        assert resume_precision(saved, "auto", "cpu") == saved
    # ... except bf16 on a CPU without native bf16, which would emulate it ~20x slower: float32 there
    monkeypatch.setattr("lab.config.cpu_has_bf16", lambda: False)
    assert resume_precision("bf16", "auto", "cpu") == "fp32" and resume_precision("fp32", "auto", "cpu") == "fp32"
    assert resume_precision("bf16", "bf16", "cpu") == "bf16"  # asked for by name: as asked
    out = tmp_path / "fp32.pt"  # the loop above left it in bf16, at step 4
    t = Trainer(parse(["--impl", "solutions", "--data", str(corpus()), "--out", str(out), "--resume", *TINY]))
    assert (t.step, t.precision) == (4, "fp32")
    assert [g.get("ns_dtype") for g in t.opt.param_groups] == ["float32", None]
    assert "trained in bf16; resuming in fp32 (no native bf16 on this cpu)" in capsys.readouterr().out
    # a state saved before the choice (no "ns_dtype") runs Newton-Schulz in float32, as it was trained
    seen = []
    monkeypatch.setattr(muon, "orthogonalize", lambda G, steps, dtype: seen.append(dtype) or G)
    model = torch.nn.ModuleDict({"embed_tokens": torch.nn.Embedding(5, 8), "q_proj": torch.nn.Linear(8, 8)})
    opt = muon.MuonAdamW(model, lr=1e-2, ns_dtype="bfloat16")
    state = opt.state_dict()
    del state["param_groups"][0]["ns_dtype"]
    opt.load_state_dict(state)
    model["q_proj"](model["embed_tokens"](torch.arange(5))).sum().backward()
    opt.step()
    assert seen == [torch.float32], seen
    with pytest.raises(ValueError, match="ns_dtype"):
        muon.MuonAdamW(model, lr=1e-2, ns_dtype="float16")
    state["param_groups"][0]["ns_dtype"] = "float16"  # a tampered state fails on loading, not at the first step
    with pytest.raises(ValueError, match="ns_dtype"):
        opt.load_state_dict(state)


def test_bad_checkpoints_give_one_clear_line(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage")
    foreign = tmp_path / "foreign.pt"
    torch.save({"hello": torch.zeros(2)}, foreign)
    for path, msg in ((corrupt, "not a readable checkpoint"), (foreign, "not a checkpoint of this kit"),
                      (tmp_path / "missing.pt", "no such checkpoint")):
        with pytest.raises(ckpt.CheckpointError, match=msg):
            ckpt.load(path, legacy=True)  # a torch.save zip is read only where it is the user's own
        for cmd in (["-m", "lab.sample", "--checkpoint", str(path)],
                    ["-m", "lab.train", "--impl", "solutions", "--out", str(path), "--resume", "--quiet"]):
            p = run(*cmd)
            assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and msg in p.stderr, (cmd, p.stderr)
    assert corrupt.read_bytes() == b"\x80\x02garbage"  # nothing overwritten


def test_unknown_flag_is_refused():
    p = run("-m", "lab.train", "--no-such-flag")
    assert p.returncode == 2 and "unrecognized arguments" in p.stderr


def divergent_trainer(tmp_path, blow_up):
    """A tiny run on the periodic corpus whose train_step is wrapped by ``blow_up(trainer, loss) -> loss``."""
    from lab import train
    text = tmp_path / "periodic.txt"
    text.write_text(PERIODIC)
    args = train.parse(["--impl", "solutions", "--data", str(text), "--out", str(tmp_path / "run.pt"), "--steps", "12",
                        "--eval-every", "3", "--warmup", "2", "--no-early-stop", *TINY])
    t = train.Trainer(args)
    real = t.train_step
    t.train_step = lambda: blow_up(t, real())
    return t


def test_a_nan_loss_rolls_back_to_the_last_healthy_state_at_half_the_lr(tmp_path, capsys):
    hits = []

    def nan_once_at_step_5(t, loss):
        if t.step == 5 and not hits:
            hits.append(t.step)
            return float("nan")
        return loss
    t = divergent_trainer(tmp_path, nan_once_at_step_5)
    assert t.run() == 0
    out = capsys.readouterr().out
    assert "step      5  loss is nan: back to step 3, learning rate halved" in out, out
    assert (t.step, t.rollbacks, t.lr_scale) == (12, 1, 0.5)
    state = ckpt.load(tmp_path / "run.pt")
    assert state["lr_scale"] == 0.5 and [m["step"] for m in state["metrics"]] == [3, 6, 9, 12]
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_perplexity_spike_rolls_back_to_the_last_healthy_evaluation(tmp_path, capsys):
    def wreck_once_after_step_7(t, loss):
        if t.step == 7 and t.rollbacks == 0:  # confidently wrong logits: finite loss, perplexity far above the best
            with torch.no_grad():
                t.model.embed_tokens.weight.mul_(20.0)
        return loss
    t = divergent_trainer(tmp_path, wreck_once_after_step_7)
    assert t.run() == 0
    out = capsys.readouterr().out
    assert "step      9  training-split perplexity jumped to" in out and "back to step 6" in out, out
    assert (t.step, t.rollbacks, t.lr_scale) == (12, 1, 0.5)
    assert [m["step"] for m in ckpt.load(tmp_path / "run.pt")["metrics"]] == [3, 6, 9, 12]


def test_a_run_that_keeps_diverging_stops_and_keeps_its_last_healthy_state(tmp_path, capsys):
    t = divergent_trainer(tmp_path, lambda t, loss: float("nan") if t.step > 4 else loss)
    assert t.run() == 1
    err = capsys.readouterr().err
    assert "error: training diverged 4 times" in err and "saved the last healthy state (step 3)" in err, err
    state = ckpt.load(tmp_path / "run.pt")
    assert state["step"] == 3 and state["lr_scale"] == 0.5 ** 3 and [m["step"] for m in state["metrics"]] == [3]
    assert all(torch.isfinite(v).all() for v in state["model"].values())


# -- the final check, end to end on a tiny corpus ----------------------------------------------

def test_final_check_passes_a_trained_model_and_fails_a_short_run(tmp_path, trained):
    text, good = trained
    result, out, _ = grade(KIT / "solutions", "final", extra=["--checkpoint", str(good), "--corpus", str(text)])
    final = by_name(result)[FINAL]
    assert final["status"] == "passed" and final["score"] == 15, final["output"]
    assert "training-split perplexity" in final["output"] and "validation split" in final["output"]
    # near the target at the end of its schedule, the trainer measures as the final check does
    assert ckpt.load(good)["metrics"][-1]["confirmed_train_ppl"] < 2.5
    _, short = train_periodic(tmp_path, KIT / "solutions", 2, "short")
    assert "confirmed_train_ppl" not in ckpt.load(short)["metrics"][-1]  # far from it: 32 windows say enough
    result, _, code = grade(KIT / "solutions", "final", extra=["--checkpoint", str(short), "--corpus", str(text)])
    final = by_name(result)[FINAL]
    assert code == 1 and final["status"] == "failed" and "< 2.5" in final["output"], final["output"]


def test_final_check_rejects_a_non_causal_model(tmp_path):
    leaky = mutate(tmp_path / "leaky", "attention.py", "scores = scores.masked_fill(mask, float(\"-inf\"))", "")
    text, ckp = train_periodic(tmp_path, leaky, 30, "leaky")
    result, _, _ = grade(leaky, "final", extra=["--checkpoint", str(ckp), "--corpus", str(text)])
    final = by_name(result)[FINAL]
    assert final["status"] == "failed" and "must not see the future" in final["output"], final["output"]


def test_final_check_without_checkpoint_says_how_to_train(tmp_path):
    result, _, _ = grade(KIT / "solutions", "final", extra=["--checkpoint", str(tmp_path / "none.pt")])
    final = by_name(result)[FINAL]
    assert final["score"] == 0 and "make train" in final["output"] and "no file at" in final["output"]


# -- sampling ---------------------------------------------------------------------------

def test_sample_prints_text_from_a_checkpoint(tmp_path):
    text, ckp = train_periodic(tmp_path, KIT / "solutions", 2, "s")
    p = run("-m", "lab.sample", "--checkpoint", str(ckp), "--prompt", "to be", "--length", "40", "--seed", "1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("to be") and len(p.stdout.rstrip("\n")) == 45
    again = run("-m", "lab.sample", "--checkpoint", str(ckp), "--prompt", "to be", "--length", "40", "--seed", "1")
    assert again.stdout == p.stdout  # seeded
    bad = run("-m", "lab.sample", "--checkpoint", str(ckp), "--prompt", "Zebra")
    assert bad.returncode == 1 and "not in the vocabulary" in bad.stderr


# -- the speed benchmark's report ----------------------------------------------------------

def test_bench_names_sections_by_what_differs_from_the_trainers_choice(monkeypatch):
    from lab.bench import flag, section

    monkeypatch.setattr("lab.config.cpu_has_bf16", lambda: False)
    assert section("target", "cpu", "muon", "fp32") == "target" and flag("cpu", "muon", "fp32") == ""
    assert section("target", "cpu", "adamw", "fp32") == "target-adamw"
    assert flag("cpu", "adamw", "fp32") == " --optimizer adamw"
    assert section("target", "cuda", "adamw") == "target-cuda" and flag("cuda", "adamw") == " --device cuda"
    # a CPU with native bf16 trains in it (auto): its numbers go beside the float32 CPU's, not over them
    assert section("target", "cpu", "muon", "bf16") == "target-bf16" and flag("cpu", precision="bf16") == (
        " --precision bf16")
    monkeypatch.setattr("lab.config.cpu_has_bf16", lambda: False)
    assert section("throughput", "cpu") == "throughput"
    monkeypatch.setattr("lab.config.cpu_has_bf16", lambda: True)
    assert section("throughput", "cpu") == "throughput-bf16"
    # float32 measured where bf16 is native: the float32 section, and a command that asks for float32
    assert section("target", "cpu", "muon", "fp32") == "target" and flag("cpu", "muon", "fp32") == " --precision fp32"


def test_bench_target_report_counts_only_a_confirmed_crossing(tmp_path, monkeypatch):
    from lab import bench

    monkeypatch.setattr(bench, "OUT", tmp_path / "BENCHMARKS.md")
    hist = [{"step": 250 * i, "elapsed": 140.0 * i, "train_ppl": 6.0 - 0.25 * i, "val_ppl": 4.5} for i in range(1, 14)]
    hist[-1]["train_ppl"] = 2.49  # under 2.5 on 32 windows only: not a hit
    assert bench.report_target(hist, 120, 1900, 2048, "cpu", "muon") is None
    assert "not under 2.5 within 120 min" in (tmp_path / "BENCHMARKS.md").read_text()
    hist[-1]["confirmed_train_ppl"] = 2.47
    hit = bench.report_target(hist, 120, 1900, 2048, "cpu", "muon")
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert hit is hist[-1] and "after **30.3 min** of training" in text and "within the goal" not in text, text
    assert text.count("<!-- bench:target -->") == 1 and "(optimizer: muon, fp32)" in text
    assert "The goal of 15 minutes is not met" in text
    hist[-1]["elapsed"] = 14.5 * 60
    bench.report_target(hist, 120, 1900, 2048, "cpu", "muon")
    assert "within the goal of 15 minutes" in (tmp_path / "BENCHMARKS.md").read_text()
    bench.report_target(hist, 120, 1900, 2048, "cpu", "muon", "bf16")  # 5 minutes with native bf16
    assert "The goal of 5 minutes is not met" in (tmp_path / "BENCHMARKS.md").read_text()
    (tmp_path / "BENCHMARKS.md").unlink()
    # a long history (evaluations every 50 steps) shows ~15 rows, and every row measured on 200,000 characters
    hist = [{"step": 50 * i, "elapsed": 28.0 * i, "train_ppl": 6.0 - 0.05 * i, "val_ppl": 4.5} for i in range(1, 71)]
    hist[62]["confirmed_train_ppl"], hist[63]["confirmed_train_ppl"] = 2.51, 2.49
    assert bench.report_target(hist, 120, 2100, 2048, "cpu", "muon") is hist[63]
    rows = [r for r in (tmp_path / "BENCHMARKS.md").read_text().splitlines() if r.startswith("| ") and "step" not in r]
    assert 15 <= len(rows) <= 22 and "| 3150 | 29.4 |" in "\n".join(rows) and rows[-1].startswith("| 3500 |"), rows


def test_bench_versus_writes_both_curves_side_by_side(tmp_path, monkeypatch):
    from lab import bench

    monkeypatch.setattr(bench, "OUT", tmp_path / "BENCHMARKS.md")
    hists = {}
    for name, f in (("today", 0.8), ("previous", 1.0)):
        hists[tmp_path / f"{name}.pt"] = [{"step": 50 * i, "elapsed": 30.0 * i, "train_ppl": 6.0 * f - 0.05 * i,
                                           "val_ppl": 4.5} for i in range(1, 61)]
    hists[tmp_path / "today.pt"][49]["confirmed_train_ppl"] = 2.49  # step 2,500
    monkeypatch.setattr("kit.checkpoint.load", lambda path: {"metrics": hists[path]})
    for path in hists:
        path.write_bytes(b"")
    runs = {n: (None, tmp_path / f"{n}.pt", None, f"python -m lab.train {n}") for n in ("today", "previous")}
    runs = {n: r for n, r in zip(("today", "peak-4e-3"), runs.values())}
    hits = bench.report_versus(runs, "peak-4e-3", 600, "cpu", "fp32", 1, ["load average 9.5 on 2 CPUs"], 3600, True)
    assert hits["today"]["step"] == 2500 and hits["peak-4e-3"] is None
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- bench:target-versus-peak-4e-3 -->" in text and "Today: under 2.5 at step **2500**" in text, text
    assert "peak-4e-3: not under 2.5: step 3000" in text and "load average 9.5 on 2 CPUs" in text
    assert "| 2500 | 2.300 (2.490), 25.0 min | 3.500, 25.0 min |" in text, text


# -- in Chinese (issue 31) ----------------------------------------------------------------------------

@pytest.fixture
def speak():
    """``speak(lang)`` chooses the language of what lab/ prints; the environment's (English) again afterwards."""
    from kit import i18n
    yield i18n.use
    i18n.use(None)


def numbers(text):
    """The numbers ``text`` shows, in order of size: the same in every language."""
    return sorted(re.findall(r"\d+(?:[.,]\d+)*", text))


def zh_lines(text, tmp_path):
    """``text``'s lines without the run's paths, each checked to be Chinese with no English sentence outside code."""
    from english import runs
    lines = [line.replace(str(tmp_path), "") for line in text.splitlines() if line.strip()]
    for line in lines:
        assert re.search(r"[\u4e00-\u9fff]", line) and not runs(line), line
    return lines


def test_a_training_run_speaks_chinese_with_the_numbers_of_the_english_one(tmp_path, capsys, speak):
    """``--lang zh``: every line lab.train prints (the model, evaluations, the confirmation, the stop, what to do
    next, a rollback, an error) is Chinese, with the numbers the English run prints."""
    from lab import train
    text = tmp_path / "periodic.txt"
    text.write_text(PERIODIC)
    said = {}
    for lang in ("en", "zh"):
        common = ["--impl", "solutions", "--data", str(text), "--steps", "4", "--eval-every", "2", "--warmup", "1",
                  *TINY, "--lang", lang]
        assert train.main([*common, "--out", str(tmp_path / "short.pt"), "--no-early-stop"]) == 0
        assert train.main([*common, "--out", str(tmp_path / "target.pt"), "--target", "1000"]) == 0
        assert train.main([*common, "--out", str(tmp_path / "bad.pt"), "--hidden", "30", "--heads", "4"]) == 2
        speak(lang)

        def nan_once_at_step_5(t, loss):
            return float("nan") if t.step == 5 and t.rollbacks == 0 else loss
        (tmp_path / lang).mkdir()
        assert divergent_trainer(tmp_path / lang, nan_once_at_step_5).run() == 0
        out = capsys.readouterr()
        said[lang] = out.out.replace(str(tmp_path), "") + out.err.replace(str(tmp_path), "")
    en, zh = said["en"], said["zh"]
    assert "confirmed on 200,000 training characters" in en and "back to step 3, learning rate halved" in en, en
    assert "error: --hidden 30 is not divisible by --heads 4" in en
    assert numbers(zh) == numbers(en) and len(zh.splitlines()) == len(en.splitlines()), (en, zh)
    lines = zh_lines(zh, tmp_path)
    assert any("在 200,000 个训练字符上确认" in line for line in lines) and any("学习率减半" in line for line in lines)
    assert any(line.startswith("错误：--hidden 30") for line in lines), lines
