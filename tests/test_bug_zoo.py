"""The bug zoo: every realistic mistake in tests/mutants loses points on exactly its checks, costs nothing in
other modules, and the grader's message names it. docs/bug-zoo.md is rendered from the same grading.

Each mutant is graded once (its module, plus ``also`` modules for a few), in this process with one shared
sandboxed worker: see ``tests.mutants.Grading``; and once more on another seed, as the graded flows run the checks
on the course's secret one (``grader.harness.seeded``).
"""
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


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.slug)
def test_mutant_is_caught_and_named(zoo, mutant):
    check_outcome(zoo(mutant))


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
        for cfg in ((32, 4, None, 10000.0), (48, 3, None, 100.0)):
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
