"""Comparisons that explain themselves.

Every failed comparison raises ``CheckFailure`` (kit/outcome.py) with its parts: what was
checked, what was expected, what came out, and a hint. ``assert_close`` also tries the known
wrong variants it is given and, when the submission's output matches one of them, names that
mistake. Every comparison counts (``harness.compared``), so a check that compares nothing cannot pass.
"""
from dataclasses import dataclass

import torch

from kit.outcome import CheckFailure, Kind, T, Text

_COUNT = [0]


def compared(n=1):
    """Count a comparison of a value that came back from the submission: a check that made none cannot pass."""
    _COUNT[0] += n


def comparisons():
    return _COUNT[0]


def reset_comparisons():
    _COUNT[0] = 0


@dataclass(frozen=True)
class Tol:
    """Pass when ``max|got - expected| <= atol + rtol * max|expected|``.

    The bound scales with the size of the whole expected tensor rather than of
    each element, because rounding errors of a correct implementation come
    from sums over many terms, not from the element itself.
    """
    atol: float
    rtol: float
    why: str

    def bound(self, expected):
        scale = expected.detach().abs().max().item() if expected.numel() else 0.0
        return self.atol + self.rtol * scale

    def passes(self, g, e):
        """g, e: float64 copies of the finite entries."""
        return (g - e).abs().max().item() <= self.bound(e) if g.numel() else True

    def describe(self):
        """The bound in words (a ``Text``), as the failures that name it show it."""
        return T("max abs error <= {atol:g} + {rtol:g} * max|expected| ({why})", atol=self.atol, rtol=self.rtol,
                 why=self.why)

    def __str__(self):
        return self.describe()


# float32: a correct implementation that sums in another order (einsum, SDPA, a
# loop over heads, float64 inside) differs by a few ulps times the depth.
@dataclass(frozen=True)
class Ulps:
    """Pass when every element is within ``n`` units in the last place of the expected bfloat16 value, and at
    most ``share`` of them differ at all.

    For one rounding at the end of an exact computation, a correct implementation that sums in another
    order lands on the reference's value or, for the rare element near a rounding boundary, on its
    neighbour, which a second rounding (the weight's product) can make 2 ulps; statistics computed in low
    precision put most elements off.
    """
    n: int
    share: float
    why: str

    def passes(self, g, e):
        if not g.numel():
            return True
        ulp = torch.exp2(torch.floor(torch.log2(e.abs().clamp_min(1e-30))) - 7)
        diff = (g - e).abs()
        return bool((diff <= self.n * ulp).all()) and (diff > 0).double().mean().item() <= self.share

    def describe(self):
        """The bound in words (a ``Text``), as the failures that name it show it."""
        return T("every element within {n} ulp of the expected bfloat16 value, and at most {share:.1%} of them off "
                 "at all ({why})", n=self.n, share=self.share, why=self.why)

    def __str__(self):
        return self.describe()


FP32 = Tol(1e-5, 1e-5, T("float32 rounding: other summation orders differ by ~1e-6"))
FP32_DEEP = Tol(1e-5, 1e-4, T("float32 rounding accumulated through several layers"))
# gradients sum over the batch and sequence, so they collect more rounding.
GRAD = Tol(1e-5, 1e-4, T("float32 rounding in sums over batch and sequence"))
# bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.4%); a few roundings
# in a different order stay within a few steps of the largest value.
BF16 = Tol(1e-2, 2e-2, T("bfloat16 keeps 8 significant bits, so a few roundings reach ~1%"))
BF16_ULP = Ulps(2, 0.005, T("statistics in float32, one rounding back to bfloat16, one more for the weight"))


def fmt_shape(t):
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def fmt_dtype(t):
    return str(t.dtype).replace("torch.", "")


def fmt_tensor(t):
    return T("tensor of shape {shape}, {dtype}", shape=fmt_shape(t), dtype=fmt_dtype(t))


def describe_tol(tol):
    """A tolerance in words: its ``describe()`` (a ``Text``) where it has one, else its ``str``."""
    return tol.describe() if hasattr(tol, "describe") else str(tol)


def joined(texts):
    """``"; ".join(texts)`` as one ``Text``: each piece (a ``Text`` or code) worded in the language in force."""
    texts = list(texts)
    out = texts[-1]
    for first in reversed(texts[:-1]):
        out = T("{first}; {rest}", first=first, rest=out)
    return out


def _fmt_index(flat, shape):
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return "(" + ", ".join(str(i) for i in reversed(idx)) + ")"


def describe_error(got, expected):
    """``max abs error 0.31 at index (1, 3, 17): got 1.204, expected 0.894``."""
    g, e = got.detach().double(), expected.detach().double()
    diff = (g - e).abs()
    diff[torch.isnan(g) != torch.isnan(e)] = float("inf")
    diff[torch.isnan(g) & torch.isnan(e)] = 0.0
    flat = int(torch.argmax(diff.flatten()).item()) if diff.numel() else 0
    i = _fmt_index(flat, list(diff.shape))
    return T("max abs error {err:.3g} at index {index}: got {got:.6g}, expected {expected:.6g}",
             err=diff.flatten()[flat].item(), index=i, got=g.flatten()[flat].item(), expected=e.flatten()[flat].item())


def where_it_differs(got, expected, tol):
    """What the difference looks like, when a plain pattern describes it (an observation, not a guess), else None:
    each vector of the last dimension off by a factor of its own (its scale), each channel off by one factor (a
    per-feature weight), or only some positions along dimension 1 (the sequence)."""
    if got.shape != expected.shape or got.dim() < 2 or got.numel() < 4:
        return None
    g, e = got.detach().double(), expected.detach().double()
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(e).all())):
        return None
    bound = tol.bound(e) if isinstance(tol, Tol) else 1e-5 + 1e-5 * float(e.abs().max())

    def fits(c, axis):  # g == c * e within the tolerance, c one factor per slice along ``axis``
        return float((g - c * e).abs().max()) <= bound and float((c - 1).abs().max()) > 1e-3

    vec = (g * e).sum(-1, keepdim=True) / (e * e).sum(-1, keepdim=True).clamp_min(1e-30)  # (..., 1)
    if fits(vec, -1) and float(vec.max() - vec.min()) <= 1e-3 * float(vec.abs().mean()):
        return T("the whole output is the reference's times {factor:.4g}", factor=float(vec.mean()))
    if fits(vec, -1):
        return T("each vector along the last dimension is the reference's times a factor of its own (from {low:.3g} "
                 "to {high:.3g}): the directions are right, the scale of each vector differs", low=float(vec.min()),
                 high=float(vec.max()))
    flat_g, flat_e = g.reshape(-1, g.shape[-1]), e.reshape(-1, e.shape[-1])
    chan = (flat_g * flat_e).sum(0) / (flat_e * flat_e).sum(0).clamp_min(1e-30)  # (C,)
    if fits(chan, 0):
        return T("each channel (last dimension) is the reference's times a factor of its own (from {low:.3g} to "
                 "{high:.3g}): a per-feature weight differs", low=float(chan.min()), high=float(chan.max()))
    if g.dim() >= 3 and g.shape[1] > 1:
        off = ((g - e).abs().transpose(0, 1).reshape(g.shape[1], -1).amax(-1) > bound).nonzero().flatten().tolist()
        if off and len(off) < g.shape[1]:
            n, total, first = len(off), g.shape[1], off[0]
            if first == 0:
                return T("only {n} of the {total} positions along dimension 1 differ, the first at {first}", n=n,
                         total=total, first=first)
            if first == 1:
                return T("only {n} of the {total} positions along dimension 1 differ, the first at {first}: position 0 "
                         "matches", n=n, total=total, first=first)
            return T("only {n} of the {total} positions along dimension 1 differ, the first at {first}: positions 0 to "
                     "{last} match", n=n, total=total, first=first, last=first - 1)
    return None


def is_close(got, expected, tol):
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    g, e = got.detach().double(), expected.detach().double()
    if not torch.equal(torch.isnan(g), torch.isnan(e)):
        return False
    finite = torch.isfinite(e)
    if not torch.equal(torch.isfinite(g), finite) or not torch.equal(g[torch.isinf(e)], e[torch.isinf(e)]):
        return False
    return tol.passes(g[finite], e[finite])


def match_variant(got, variants, tol):
    """The first known-wrong variant (name, hint) that the output matches, else None."""
    for name, (make, hint) in (variants or {}).items():
        try:
            candidate = make() if callable(make) else make
        except Exception:  # noqa: BLE001 - a variant that does not apply to these shapes
            continue
        if isinstance(candidate, torch.Tensor) and candidate.shape == got.shape and is_close(got, candidate, tol):
            return name, hint
    return None


def assert_close(got, expected, what, tol=FP32, hint=None, variants=None, dtype=True):
    """Raise CheckFailure unless ``got`` is a tensor of ``expected``'s shape (and dtype) within ``tol``.

    ``variants`` maps a mistake's name to ``(make, hint)``: ``make()`` computes (or is) what that
    mistake would output on the same input; a match is named.
    """
    compared()
    if isinstance(got, dict) and "__unsupported__" in got:
        raise CheckFailure(what, fmt_tensor(expected), describe_value(got), RETURN_TENSOR, kind=Kind.WRONG_STRUCTURE)
    if not isinstance(got, torch.Tensor):
        raise CheckFailure(what, fmt_tensor(expected), describe_value(got), RETURN_TENSOR, kind=Kind.WRONG_STRUCTURE)
    if got.shape != expected.shape:
        found = match_variant(got, variants, tol)
        raise CheckFailure(what, T("shape {shape}", shape=fmt_shape(expected)),
                           T("shape {shape}", shape=fmt_shape(got)), found[1] if found else hint, found[0] if found else None, kind=Kind.WRONG_STRUCTURE)
    if dtype and got.dtype != expected.dtype:
        raise CheckFailure(what, T("dtype {dtype}", dtype=fmt_dtype(expected)),
                           T("dtype {dtype}", dtype=fmt_dtype(got)),
                           T("keep the input's dtype (compute in float32 if you like, then cast back with .type_as(x))"),
                           kind=Kind.WRONG_STRUCTURE)
    if not is_close(got, expected, tol):
        found = match_variant(got, variants, tol)
        if found is None and bool(torch.isnan(got).any()) and not bool(torch.isnan(expected).any()):
            n = int(torch.isnan(got).sum())
            raise CheckFailure(what, T("finite values ({tol})", tol=describe_tol(tol)),
                               T("{n} NaN values of {total}", n=n, total=got.numel()),
                               T("NaN usually comes from a softmax over a row that is all -inf, "
                                 "a division by zero, or the square root of a negative number"))
        seen = None if found else where_it_differs(got, expected, tol)
        error = describe_error(got, expected)
        raise CheckFailure(what, T("the reference's values, {tol}", tol=describe_tol(tol)),
                           joined([error, seen]) if seen else error,
                           found[1] if found else hint, found[0] if found else None)


RETURN_TENSOR = T("return a torch.Tensor")


def describe_value(v):
    """A value that is not a tensor, in plain words (never an internal marker): a ``Text``."""
    if isinstance(v, dict) and v.get("__missing__"):
        return T("nothing (the attribute does not exist)")
    if isinstance(v, dict) and "__unsupported__" in v:
        return T("an object of type {type_name}", type_name=str(v["__unsupported__"]))
    if isinstance(v, (list, tuple)):  # the worker's answers carry tuples as lists: say what is known
        return T("a tuple or list of {n} items", n=len(v))
    name = type(v).__name__
    return T("{type_name}: {value_code}", type_name=name, value_code=repr(v)[:max(0, 198 - len(name))])


def require(ok, what, expected=None, got=None, hint=None, kind=Kind.WRONG_VALUE):
    """Count a comparison; raise CheckFailure with these parts unless ``ok``."""
    compared()
    if not ok:
        raise CheckFailure(what, expected, got, hint, kind=kind)


def assert_equal(got, expected, what, hint=None, kind=Kind.WRONG_STRUCTURE):
    compared()
    if got != expected:
        raise CheckFailure(what, _plain(expected), _plain(got), hint, kind=kind)


def _plain(v):
    if isinstance(v, dict) and (v.get("__missing__") or "__unsupported__" in v):
        return describe_value(v)
    if isinstance(v, Text) and repr(v) == f"'{v}'":  # words (describe_value's, say): quoted as repr quotes them
        return T("'{text}'", text=v)
    return repr(v)


def keys_message(got_keys, expected_keys):
    """Explain a state_dict mismatch: missing keys, unexpected keys, wrong shapes."""
    missing = [k for k in expected_keys if k not in got_keys]
    unexpected = [k for k in got_keys if k not in expected_keys]
    shapes = [T("{name}: {got} instead of {expected}", name=k, got=str(tuple(got_keys[k][0])),
                expected=str(tuple(expected_keys[k][0])))
              for k in expected_keys if k in got_keys and list(got_keys[k][0]) != list(expected_keys[k][0])]
    parts = []
    if missing:
        parts.append(T("missing {names}", names=", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")))
    if unexpected:
        parts.append(T("unexpected {names}", names=", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")))
    if shapes:
        parts.append(T("wrong shape {shapes}", shapes=joined(shapes[:6])))
    return joined(parts) if parts else ""


def require_tensor(y, shape, what, hint=None):
    """Count a comparison; fail unless ``y`` is a floating-point tensor of ``shape`` (before any arithmetic on it)."""
    compared()
    shape = tuple(shape)
    if not isinstance(y, torch.Tensor):
        raise CheckFailure(what, T("a tensor of shape {shape}", shape=fmt_shape_of(shape)), describe_value(y),
                           hint or RETURN_TENSOR, kind=Kind.WRONG_STRUCTURE)
    if tuple(y.shape) != shape:
        raise CheckFailure(what, T("shape {shape}", shape=fmt_shape_of(shape)), T("shape {shape}", shape=fmt_shape(y)),
                           hint, kind=Kind.WRONG_STRUCTURE)
    if not y.is_floating_point():
        raise CheckFailure(what, T("floating-point values"), T("dtype {dtype}", dtype=fmt_dtype(y)),
                           T("keep the computation in floating point"), kind=Kind.WRONG_STRUCTURE)
    return y


def fmt_shape_of(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"
