"""The reference, recorded: what the student release's checks compare with, with no reference code shipped.

``make release`` grades the solutions once on the published seed with a ``Recorder`` around the
live reference: every question the checks ask the reference (``run``, ``template``, ``variants``;
see grader/reference.py), and the staged attention probe's, is answered live and written down,
keyed by a digest of the question (its request, its tensors' bytes). The release ships that file
(``grader/snapshots/published.pack``); there ``Snapshot`` answers the same questions from it, so
``make check`` runs the very checks and diagnoses of the full grader, offline.

A snapshot knows one seed, the published one: the graded flows (Gradescope, batch, nbgrader
autograde) run the same checks on the course's secret seed against the live reference, so code
tuned to the published values gains nothing. A question the snapshot did not record (one asked
only with values the submission computed) raises ``ReferenceUnavailable``; the checks that can
ask such questions say so.
"""
import hashlib
from pathlib import Path

from kit.files import atomic_write
from kit.outcome import decode, encode
from kit.tensorpack import pack, unpack

from .reference import ReferenceUnavailable

FOLDER = Path(__file__).resolve().parent / "snapshots"
PUBLISHED = FOLDER / "published.pack"
FORMAT = "transformer-kit/snapshot/2"  # 2: variants keep their Texts (name, hint) beside the English
MAX_BYTES = 256 << 20
KEEP = ("keys", "params", "structure", "attrs", "results", "error")  # what an answer keeps (not inputs_after)


def digest(*parts):
    """A stable digest of plain values and tensors (dtype, shape and bytes)."""
    h = hashlib.sha256()

    def walk(x):
        import torch
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            h.update(b"{")
            for k in sorted(x, key=repr):
                walk(k)
                walk(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode() + b";")
    for p in parts:
        walk(p)
    return h.hexdigest()[:32]


def _slim(answer):
    out = {k: v for k, v in answer.items() if k in KEEP}
    if "results" in out:
        out["results"] = [{k: v for k, v in r.items() if k != "inputs_after"} for r in out["results"]]
    return out


class Recorder:
    """The live reference, writing down every answer it gives (``save`` writes the snapshot)."""

    live = True  # the checks see the live reference: the recorder only listens

    def __init__(self, live, seed=""):
        self.ref, self.seed = live, seed
        self.runs, self.templates, self.variant_sets = {}, {}, {}

    def run(self, req, what="the reference"):
        answer = self.ref.run(req, what)
        self.runs[digest(req.key())] = _slim(answer)
        return answer

    def template(self, module, target, args=(), kwargs=None):
        out = self.ref.template(module, target, args, kwargs)
        self.templates[digest(module, target, list(args), kwargs or {})] = [
            {k: [list(s), d] for k, (s, d) in out[0].items()}, out[1]]
        return out

    def variants(self, family, **inputs):
        found = self.ref.variants(family, **inputs)
        recorded = {}
        for name, (make, hint) in found.items():
            try:
                value = make() if callable(make) else make
            except Exception:  # noqa: BLE001 - a variant that does not apply to these shapes
                value = None
            # the mistake's name and hint as English and as Texts, so that the release words them in its language
            recorded[str(name)] = [value, None if hint is None else str(hint), encode(name), encode(hint)]
        self.variant_sets[digest(family, inputs)] = recorded
        return {decode(name, words): (value, decode(hint, hint_words))
                for name, (value, hint, words, hint_words) in recorded.items()}

    def model(self, vocab_size, config):
        return None  # the final check's perplexity needs the student's weights: never recorded

    def module(self, name, standins=()):
        return self.ref.module(name, standins)

    def save(self, path=PUBLISHED):
        data = pack({"format": FORMAT, "seed_digest": hashlib.sha256(self.seed.encode()).hexdigest(),
                     "runs": self.runs, "templates": self.templates, "variants": self.variant_sets})
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return len(data)

    def strings(self):
        """Every string the snapshot holds (for the release's leak scan)."""
        out = []

        def walk(x):
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, dict):
                for k, v in x.items():
                    walk(k)
                    walk(v)
            elif isinstance(x, (list, tuple)):
                for v in x:
                    walk(v)
        walk([self.runs, self.templates, self.variant_sets])
        return out


class Snapshot:
    """The reference as recorded on the published seed (see the module docstring)."""

    live = False

    def __init__(self, data):
        self.runs, self.templates, self.variant_sets = data["runs"], data["templates"], data["variants"]

    @classmethod
    def load(cls, seed="", path=PUBLISHED):
        path = Path(path)
        if seed:
            raise FileNotFoundError("this kit has no reference, only its answers on the published inputs: grade "
                                    "without --seed (the course's own grading uses its seed)")
        try:
            raw = path.read_bytes()
            data = unpack(raw, MAX_BYTES)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{path}: the recorded reference values are missing or unreadable ({e}); this "
                                    "kit has neither solutions/ nor a snapshot: rebuild it with `make release`") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FileNotFoundError(f"{path}: not a snapshot of this kit")
        return cls(data)

    def run(self, req, what="the reference"):
        answer = self.runs.get(digest(req.key()))
        if answer is None:
            raise ReferenceUnavailable(what)
        return answer

    def template(self, module, target, args=(), kwargs=None):
        found = self.templates.get(digest(module, target, list(args), kwargs or {}))
        if found is None:
            raise ReferenceUnavailable(f"{target}'s weights")
        shapes, ties = found
        return {k: (tuple(s), d) for k, (s, d) in shapes.items()}, [list(t) for t in ties]

    def variants(self, family, **inputs):
        found = self.variant_sets.get(digest(family, inputs))
        if found is None:
            return {}  # no diagnosis recorded for these inputs: the check still judges, it names nothing
        return {decode(name, words): (value, decode(hint, hint_words))
                for name, (value, hint, words, hint_words) in found.items()}

    def model(self, vocab_size, config):
        return None


def record(seed="", path=PUBLISHED):
    """Grade the solutions on ``seed`` with a Recorder and write the snapshot; return (its size, Recorder)."""
    from kit.syllabus import CURRICULUM, MODULES

    from .diagnose.probe import staged_attention
    from .reference import Live
    from .run import REFERENCE, grade
    from .sandbox import Sandbox
    rec = Recorder(Live(REFERENCE), seed)
    rec.template("decoder", "TransformerLM", (65,), dict(CURRICULUM))  # the final check's model (TinyShakespeare)
    with Sandbox(REFERENCE, allow_weak=True) as sub:
        grading = grade(REFERENCE, only=MODULES, sandbox=sub, reference=rec, seed=seed)
        failed = [r.check for r in grading.results if not r.passed]
        if failed:
            raise RuntimeError(f"the solutions fail {', '.join(failed)}: no snapshot written")
        # the report's pictures are drawn only on a failure: record their questions too
        from .diagnose.pictures import attention_maps, gradient_norms
        attention_maps(sub, rec, seed)
        for unit in MODULES:
            gradient_norms(sub, rec, unit, seed)
        gradient_norms(sub, rec, "block", seed, "FeedForward")
        # the staged probe runs only on a failure: record its questions for every attention the checks build
        # (the configurations of grader/checks/reference/attention.py: theta 500 in check_matches_reference)
        for cfg in ((32, 4, None, 10000.0), (48, 3, None, 500.0), (32, 4, 2, 10000.0), (32, 4, 1, 10000.0)):
            if staged_attention(sub, rec, *cfg, 16) is not None:
                raise RuntimeError(f"the staged probe finds a difference in the solutions themselves ({cfg})")
    return rec.save(path), rec

