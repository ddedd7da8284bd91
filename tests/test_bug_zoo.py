"""The bug zoo: every realistic mistake in tests/mutants loses points on exactly its checks, costs nothing in
other modules, and the grader's message names it. docs/bug-zoo.md is rendered from the same grading.

Each mutant is graded once (its module, plus ``also`` modules for a few), in this process with one shared
sandboxed worker: see ``tests.mutants.Grading``; and once more on another seed, as the graded flows run the checks
on the course's secret one (``grader.harness.seeded``).
"""
import re
from collections import Counter

import pytest
from mutants import Grading, all_mutants, copy_solutions, outcome
from mutants.table import DOC, render

MUTANTS = all_mutants()


@pytest.fixture(scope="module")
def grading(tmp_path_factory):
    g = Grading(tmp_path_factory.mktemp("zoo"))
    yield g
    g.close()


def graded(grading, seed=""):
    """``get(mutant)`` -> its Outcome on ``seed``, graded on first use and remembered."""
    cache = {}

    def get(m):
        if m.slug not in cache:
            folder = m.apply(grading.root / f"{m.slug}{'-' + seed if seed else ''}")
            cache[m.slug] = outcome(m, grading.grade(folder, [m.module, *m.also], seed=seed))
        return cache[m.slug]
    return get


@pytest.fixture(scope="module")
def zoo(grading):
    """The outcomes on the published seed, remembered for the table."""
    return graded(grading)


OTHER_SEED = "zoo-secret-1"
# Mutants whose diagnosis may differ on another seed, with the reason (investigated; none so far: every check
# draws its sizes and values from the seed, but each known mistake stays visible whatever they are).
SEED_SENSITIVE = {}


def check_outcome(o):
    """The assertions every mutant's grading must satisfy; returns the failure text shown when they do not."""
    mutant = o.mutant
    details = "\n\n".join(f"[{k}]\n{v}" for k, v in o.outputs.items())
    assert set(o.lost) == set(mutant.loses), (
        f"{mutant.name}: lost {sorted(o.lost)}, expected {sorted(mutant.loses)}\n{details}")
    assert not o.elsewhere, f"{mutant.name} also costs points in other modules: {o.elsewhere}"
    assert not o.grader_errors, f"{mutant.name} makes the grader fail: {o.grader_errors}\n{details}"
    assert o.how, f"{mutant.name}: no likely:/hint: line contains {mutant.named!r}\n{details}"
    for key, phrase in mutant.says:
        for k in (o.lost if key == "*" else (key,)):
            assert phrase.lower() in o.outputs.get(k, "").lower(), (
                f"{mutant.name}: the message of {k} does not say {phrase!r}\n{details}")
    for phrase in mutant.never:
        wrong = [k for k, text in o.outputs.items() if phrase.lower() in text.lower()]
        assert not wrong, f"{mutant.name}: {', '.join(wrong)} still say {phrase!r}\n{details}"


def test_the_zoo_is_large_and_covers_every_module():
    assert len(MUTANTS) >= 30
    assert len({m.slug for m in MUTANTS}) == len(MUTANTS), "two mutants share a name"
    per = Counter(m.module for m in MUTANTS)
    assert set(per) == {"residual", "rmsnorm", "attention", "block", "decoder"}, per
    assert all(m.loses and m.named for m in MUTANTS)


def scored_checks():
    """``{(unit, check key)}`` of every scored check, read from the ``@check(points)`` decorators of the check files
    (parsed, not imported: importing them outside a grading would register their marker here)."""
    import ast

    from grader.run import CHECKS
    from kit.syllabus import MODULES
    out = set()
    for unit in MODULES:
        for folder in ("properties", "reference"):
            path = CHECKS / folder / f"{unit}.py"
            if not path.exists():
                continue
            for node in ast.parse(path.read_text()).body:
                for d in getattr(node, "decorator_list", ()):
                    if (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "check" and node.name.startswith(
                            "check_") and ast.literal_eval(d.args[0]) > 0):
                        out.add((unit, node.name[len("check_"):]))
    return out


def test_every_scored_check_is_failed_by_a_mutant():
    """Mutation testing of the checks themselves: every scored check is failed by at least one mistake of the zoo
    (its ``loses``, which test_mutant_is_caught_and_named holds to the grading), so no scored check passes whatever
    the code does. The final check grades a trained checkpoint, not a module: tests/test_lab.py tests it."""
    scored = scored_checks()
    assert len(scored) >= 30 and ("attention", "matches_reference") in scored
    failed = {(m.module, key) for m in MUTANTS for key in m.loses}
    assert not failed - scored, f"mutants claim to fail checks that are not scored: {sorted(failed - scored)}"
    assert not scored - failed, f"scored checks no mutant fails: {sorted(scored - failed)}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.slug)
def test_mutant_is_caught_and_named(zoo, mutant):
    check_outcome(zoo(mutant))


NUMBER = re.compile(r"(?<![A-Za-z_])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def test_every_message_of_the_zoo_reads_in_chinese_with_the_same_fields_and_numbers(zoo):
    """Issue 31: in Chinese, every failure of every mutant (each check of the graded modules, scored or not) has
    the same fields as in English, the same numbers in each, no English sentence outside code and the student's
    own words (tests/english.py), and every check's title in Chinese."""
    from english import english

    from kit import i18n
    from kit.outcome import render
    wrong, seen = [], 0
    for m in MUTANTS:
        for r in zoo(m).results:
            if i18n.translation("zh").gettext(r.title) == r.title:
                wrong.append(f"{r.check}: the title has no Chinese: {r.title!r}")
            if r.failure is None:
                continue
            seen += 1
            for name in ("checked", "expected", "got", "likely", "hint"):
                value = getattr(r.failure, name)
                if value is None:
                    continue
                en, zh = render(value, "en"), render(value, "zh")
                if sorted(NUMBER.findall(en)) != sorted(NUMBER.findall(zh)):
                    wrong.append(f"{m.name} / {r.check} / {name}: other numbers in Chinese\n  {en}\n  {zh}")
                wrong += [f"{m.name} / {r.check} / {name}: English in Chinese ({where}): {words!r}\n  {zh}"
                          for where, words in english(value)]
    assert seen >= len(MUTANTS)
    assert not wrong, f"{len(wrong)} problems:\n" + "\n".join(sorted(set(wrong))[:80])


def test_mutants_are_caught_and_named_on_another_seed(grading):
    """The same mistakes, the same lost checks and the same names on another seed's inputs."""
    get = graded(grading, OTHER_SEED)
    wrong = []
    for m in MUTANTS:
        o = get(m)
        if m.name in SEED_SENSITIVE:
            if not o.caught or o.grader_errors:
                wrong.append(f"{m.name}: not caught on seed {OTHER_SEED!r}")
            continue
        try:
            check_outcome(o)
        except AssertionError as e:
            wrong.append(f"on seed {OTHER_SEED!r}: {str(e)[:3000]}")
    assert not wrong, "\n\n".join(wrong)


# Mistakes that reach the student's code only as the wire format really delivers it, arguments that stop on the
# way, parameters of the student's own, and diagnoses that must single out their cause (issue 29): the desk (the
# student release, whose reference is a recording) must lose the same checks with the same messages.
AT_THE_DESK = (
    "Residual flattens x with view (fails on a non-contiguous x)",
    "the sublayer's output detached from the graph (x + self.sublayer(x).detach())",
    "the input flattened with x.view(-1, dim) (fails on a non-contiguous x)",
    "the weight created with requires_grad=False",
    "a default eps of 1e-5 (the API's is 1e-6)",
    "x flattened with x.view(B * T, C) before the projections (fails on a non-contiguous x)",
    "apply_rope rotates x in place (x.mul_(cos), then adds)",
    "RoPE tables kept as plain attributes, not buffers (they do not follow model.to(...))",
    "rope_theta ignored (precompute_rope called with its default theta)",
    "head_dim computed from num_kv_heads (hidden_size // num_kv_heads)",
    "an inverted boolean mask given to scaled_dot_product_attention (True above the diagonal)",
    "the RoPE tables sliced from row 1 in forward (cos[1:T + 1])",
    "max_seq_len not passed on to the attention",
    "only post_attention_layernorm gets rms_norm_eps",
    "TransformerLM does not pass rms_norm_eps and rope_theta on to the decoder",
    "the final norm does not get rms_norm_eps (RMSNorm(hidden_size))",
    "a learned positional embedding added to TransformerLM (RoPE already encodes positions)",
    "padding_idx=0 in the embedding (token 0 gets no gradient through it)",
)


def chinese(o):
    """An outcome's failures as a zh release shows them (the desk's recorded diagnoses keep their Texts too)."""
    from grader.report import failure_text
    from kit import i18n
    i18n.use("zh")
    try:
        return {r.check: failure_text(r.failure) for r in o.results if r.failure is not None}
    finally:
        i18n.use(None)


def test_the_desk_loses_the_same_checks_with_the_same_messages(zoo, tmp_path_factory):
    from grader.snapshot import Snapshot, record
    path = tmp_path_factory.mktemp("desk") / "published.pack"
    record(path=path)
    desk = Grading(tmp_path_factory.mktemp("desk-zoo"), reference=Snapshot.load(path=path))
    try:
        by_name = {m.name: m for m in MUTANTS}
        wrong = []
        for name in AT_THE_DESK:
            m = by_name[name]
            o = outcome(m, desk.grade(m.apply(desk.root / m.slug), [m.module]))
            live = zoo(m)
            if o.lost != live.lost or o.outputs != live.outputs or o.grader_errors or chinese(o) != chinese(live):
                wrong.append(f"{name}: at the desk lost {o.lost} {o.grader_errors}, the full grader {live.lost}\n"
                             + "\n".join(f"[{k}] desk:\n{o.outputs.get(k)}\nfull:\n{live.outputs.get(k)}"
                                         for k in sorted(set(o.outputs) | set(live.outputs))
                                         if o.outputs.get(k) != live.outputs.get(k)))
        assert not wrong, "\n\n".join(wrong)
    finally:
        desk.close()


# The staged diagnosis is the fallback when no variant matches; here it is run directly on mutants that a
# variant names anyway, to show that its guess points at the right step (and at nothing in a correct module).
STAGED = {
    "no causal mask": "the mask: queries give weight to later positions",
    "the mask hides the diagonal too (triu() without diagonal=1)": "the mask: at T = 1 the output is NaN",
    "the mask is applied after the softmax (weights zeroed, not renormalised)": "the softmax",
    "softmax over the wrong axis (dim=-2)": "the softmax: the weights of each key sum to one",
    "scores scaled by sqrt(hidden_size)": "times sqrt(head_dim / hidden_size)",
    "scores not scaled": "times sqrt(head_dim) (about",
    "heads merged without transposing back": "the head split or merge",
    "o_proj not applied": "o_proj",
    "the scale applied after the softmax (weights divided by sqrt(head_dim))": "rescales the weights after the softmax",
    "RoPE applied to v as well": "RoPE: the values come out rotated",
    "RoPE in the interleaved layout (pairs 2i, 2i+1)": "RoPE: the weights differ only once",
    "RoPE applied to q only": "RoPE: the weights differ only once",
}


def test_staged_diagnosis_points_at_the_step(grading):
    from grader.diagnose.probe import staged_attention
    from grader.reference import Live
    from grader.run import REFERENCE
    ref = Live(REFERENCE)
    by_name = {m.name: m for m in MUTANTS}
    cases = [(by_name[name], expected) for name, expected in STAGED.items()] + [(None, None)]
    wrong = []
    for m, expected in cases:
        folder = m.apply(grading.root / f"staged-{m.slug}") if m else copy_solutions(grading.root / "staged-ok")
        sub = grading.submission(folder)
        for cfg in ((32, 4, None, 10000.0), (48, 3, None, 500.0)):
            found = staged_attention(sub, ref, *cfg, 16)
            text = found[0] if found else None
            if (expected is None and text is not None) or (expected and not (text and expected in text
                                                                                 and "best guess" in text)):
                wrong.append(f"{m.name if m else 'solutions'} {cfg}: {text!r}, expected {expected!r}")
    assert not wrong, "\n".join(wrong)


def test_rates_and_the_docs_table_are_current(zoo):
    """100% caught, at least 90% named; docs/bug-zoo.md is what this grading renders (reuses the results above)."""
    outcomes = [zoo(m) for m in MUTANTS]
    assert all(o.caught for o in outcomes)
    assert sum(bool(o.how) for o in outcomes) >= 0.9 * len(outcomes)
    assert any(o.how == "staged guess" for o in outcomes), "no mutant exercises the staged attention diagnosis"
    expected = render(outcomes)
    assert DOC.exists() and DOC.read_text() == expected, (
        "docs/bug-zoo.md is stale: run `python -m tests.mutants.table` (or copy the text below)\n" + expected)
