"""What the sandboxed worker reports about an exception is fields, worded by the grader (grader/harness.py): a
fence's refusal (its action and subject), a blocked import, SystemExit's code; never its message read back by
pattern. A submission's own ``class Refused(Exception)`` is an exception of its own like any other."""
import textwrap

import pytest
from conftest import KIT

from kit.outcome import Kind, render
from tests.english import english

CJK = "\u4e00-\u9fff"
RESIDUAL = (KIT / "solutions" / "residual.py").read_text()
LINE = "        return x + self.sublayer(x, *args, **kwargs)"


def failure(tmp_path, body, at_import=False):
    """The failure of one Residual forward call whose body starts with ``body`` (or whose module does, at import)."""
    import torch

    from grader import harness
    from grader.sandbox import Sandbox
    folder = tmp_path / "sub"
    folder.mkdir()
    src = RESIDUAL.replace(LINE, textwrap.indent(body, " " * 8) + "\n" + LINE)
    (folder / "residual.py").write_text(body + "\n" + RESIDUAL if at_import else src)
    with Sandbox(folder, allow_weak=True) as sub:
        with pytest.raises(harness.StudentError) as e:
            harness.only(sub, "residual", "Residual", "Residual(f)(x)",
                         init=([{"__obj__": "torch.nn.Identity"}], {}), calls=[harness.call(torch.ones(2, 3))])
    return e.value.failure


@pytest.mark.parametrize("body,at_import,kind,en", [
    ("import lab", True, Kind.CRASHED,
     "importing your module failed: ImportError: the grader's sandbox refuses to import 'lab': a submission may only "
     "use its own files, torch and the standard library"),
    ("from kit.outcome import T", False, Kind.CRASHED,
     "your code raised ImportError while running it: the grader's sandbox refuses to import 'kit': a submission may "
     "only use its own files, torch and the standard library"),
    ("open('/etc/kit-pwned', 'w')", False, Kind.REFUSED, "the grader's sandbox refuses to write /etc/kit-pwned"),
    ("import os; os.remove('/etc/kit-pwned')", False, Kind.REFUSED,
     "the grader's sandbox refuses os.remove on /etc/kit-pwned"),
    ("import sys; sys.exit(3)", False, Kind.CRASHED, "sys.exit(3) was called"),
    ("import sys; sys.exit(3)", True, Kind.CRASHED, "importing your module failed: SystemExit: sys.exit(3) was called"),
])
def test_the_workers_reports_are_fields_worded_in_chinese(tmp_path, body, at_import, kind, en):
    f = failure(tmp_path, body, at_import)
    assert f.kind == kind and str(f.got).startswith(en), (f.kind, str(f.got))
    for field in (f.checked, f.got, f.hint):
        assert not english(field), (english(field), render(field, "zh"))
    zh = render(f.got, "zh")
    assert any(CJK[0] <= c <= CJK[-1] for c in zh) and "sandbox" not in zh, zh


def test_a_submissions_own_refused_is_its_own_exception(tmp_path):
    body = ("class Refused(Exception):\n    pass\n"
            "raise Refused(\"the grader's sandbox refuses to write /etc/passwd\")")
    f = failure(tmp_path, body)
    assert f.kind == Kind.CRASHED, f
    assert str(f.got).startswith("your code raised Refused while running it: the grader's sandbox refuses to write "
                                 "/etc/passwd"), str(f.got)
    raised = f.got.params["error"]  # within "(residual.py line N, in forward: `...`)"
    assert raised.params["kind_code"] == "Refused"
    assert raised.params["error"] == "the grader's sandbox refuses to write /etc/passwd"  # their words, as they are
    assert not english(f.got) and not english(f.hint)
    assert render(f.got, "zh").startswith("你的代码")


@pytest.mark.parametrize("err,en", [
    # a hostile worker: unknown actions, wrong types, long subjects
    ({"refusal": {"action": "launch", "subject": "rockets"}}, "the grader's sandbox refuses rockets"),
    ({"refusal": {"action": "write", "subject": 7}}, "your code raised PermissionError while running it: boom"),
    ({"refusal": ["write", "/x"]}, "your code raised PermissionError while running it: boom"),
    ({"refusal": {"action": "read", "subject": "x" * 10_000}}, "the grader's sandbox refuses to read xxx"),
    ({"exit_code": 3}, "your code raised PermissionError while running it: boom"),
    ({"exit_code": "'bye'"}, "sys.exit('bye') was called"),
])
def test_the_parent_checks_every_field(err, en):
    from grader import harness
    e = harness.student_error("f(x)", {"stage": "call 0", "type": "PermissionError", "message": "boom",
                                       "where": None, **err})
    got = e.failure.got
    assert str(got).startswith(en) and len(str(got)) < 1200, str(got)
    assert not english(got)


def test_grad_errors_are_codes():
    from grader import harness
    from kit.outcome import CheckFailure
    for code, en in (("shape", "output is not a tensor of the expected shape"),
                     ("detached", "output does not require grad (was the computation detached?)"),
                     ("whatever", "the output could not be backpropagated: whatever")):
        with pytest.raises(CheckFailure) as e:
            harness.grad_check({"grad_error": code}, {}, "f(x)", 1e-5)
        assert e.value.failure.got == en and not english(e.value.failure.got)


@pytest.mark.parametrize("tail,returned", [
    ("Residual = lambda sublayer: None", "NoneType"),
    ("class Residual:\n    def __init__(self, sublayer):\n        self.sublayer = sublayer", "Residual"),
])
def test_a_constructor_that_gives_no_module_is_said_in_fields(tmp_path, tail, returned):
    """``Residual(f)`` that is not an nn.Module (a class that does not subclass it, the name rebound): the worker
    sends the type's name as a field, and the grader words it, in either language."""
    import torch

    from grader import harness
    from grader.sandbox import Sandbox
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "residual.py").write_text(RESIDUAL + "\n\n" + tail + "\n")
    with Sandbox(folder, allow_weak=True) as sub:
        with pytest.raises(harness.StudentError) as e:
            harness.only(sub, "residual", "Residual", "Residual(f)(x)",
                         init=([{"__obj__": "torch.nn.Identity"}], {}), calls=[harness.call(torch.ones(2, 3))])
    f = e.value.failure
    assert f.kind == Kind.WRONG_STRUCTURE and str(f.got) == f"building it gave a {returned}, not an nn.Module", f
    assert f.got.params["type_code"] == returned
    for field in (f.checked, f.expected, f.got, f.hint):
        assert not english(field), (english(field), render(field, "zh"))
    assert any(CJK[0] <= c <= CJK[-1] for c in render(f.got, "zh"))
    # a hostile worker's field of the wrong type is ignored: the exception as it was reported
    e = harness.student_error("f(x)", {"stage": "init", "type": "TypeError", "message": "boom", "where": None,
                                       "not_module": 7})
    assert str(e.failure.got).startswith("your code raised TypeError while building the module: boom")
