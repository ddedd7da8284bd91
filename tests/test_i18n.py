"""The kit in Chinese beside English: the catalogs, the choice of language, a zh grading, the zh stubs and release.

English stays the default; ``--lang zh``, ``$KIT_LANG=zh`` (``make check LANG=zh``), a zh release or a Chinese
locale choose Chinese (kit/i18n.py). Only the edges word outcomes (grader/report.py, kit/cli.py): a zh grading
has the same fields and numbers as an English one, under Chinese labels.
"""
import ast
import gettext
import importlib
import io
import json
import os
import re
import string
import subprocess
import sys

import pytest
from conftest import KIT, mutate
from english import runs

from classroom.stubs import code_only
from kit import i18n
from kit.syllabus import FILES

CJK = re.compile(r"[\u4e00-\u9fff]")
CHINESE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")  # with Chinese punctuation
MO = KIT / "locale" / "zh_CN" / "LC_MESSAGES" / "kit.mo"
PO = MO.with_suffix(".po")


@pytest.fixture(autouse=True)
def speak_the_environments_language():
    i18n.use(None)
    yield
    i18n.use(None)


def placeholders(text):
    """The ``{field!conversion:spec}`` of a brace-format message, as a sorted list."""
    return sorted((field, conversion or "", spec or "") for _, field, spec, conversion in string.Formatter().parse(text)
                  if field is not None)


def sources():
    """The files ``make locale`` extracts messages from (the Makefile's LOCALE_SOURCES, folders walked)."""
    m = re.search(r"^LOCALE_SOURCES\s*=\s*((?:.*\\\n)*.*)$", (KIT / "Makefile").read_text(), re.M)
    out = []
    for rel in m.group(1).replace("\\\n", " ").split():
        path = KIT / rel
        out += sorted(str(p.relative_to(KIT)) for p in path.rglob("*.py")) if path.is_dir() else [rel]
    return out


def check_titles(tree):
    """The title of each check of a parsed file: its docstring's first line (kit.i18n.extract takes the same)."""
    return [ast.get_docstring(node).splitlines()[0].strip() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", None) == "check" for d in node.decorator_list)]


def code_messages():
    """``{msgid or (singular, plural): file}`` of every message the code marks: ``_()``, ``N_()``, ``T()``,
    ``ngettext()``, what each syllabus ``Unit`` builds (its 4th argument) and each check's title."""
    found = {}
    for rel in sources():
        tree = ast.parse((KIT / rel).read_text(encoding="utf-8"))
        found.update({title: rel for title in check_titles(tree)})
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
            if name in ("_", "N_", "gettext", "T") and args[:1] and args[0]:
                found[args[0]] = rel
            elif name == "ngettext" and len(args) >= 2 and args[0] and args[1]:
                found[(args[0], args[1])] = rel
            elif name == "Unit" and len(args) >= 4 and args[3]:
                found[args[3]] = rel
    return found


def committed():
    with open(MO, "rb") as f:
        return gettext.GNUTranslations(f)


# -- the catalogs ------------------------------------------------------------------------------------

def test_every_message_has_both_languages_with_the_same_placeholders():
    messages, zh = code_messages(), committed()
    assert len(messages) >= 40  # the report's labels and sentences, the bad-input lines, the syllabus's table
    catalog = zh._catalog  # what the kit reads at run time: msgid -> Chinese ((msgid, n) for a plural's forms)
    for msg, where in messages.items():
        singular, plural = msg if isinstance(msg, tuple) else (msg, None)
        text = zh.gettext(singular) if plural is None else zh.ngettext(singular, plural, 2)
        # translated, and Chinese wherever it is more than a term or code (`softmax`, `RMSNorm`, `return cos, sin`)
        assert (msg if plural is None else (msg[0], 0)) in catalog, f"{where}: no translation of {msg!r}"
        assert CHINESE.search(text) or not runs(text), f"{where}: no Chinese for {msg!r}: {text!r}"
        assert placeholders(text) == placeholders(singular), (where, msg, text)
        if plural is not None:
            assert placeholders(plural) == placeholders(singular), msg
    # and nothing else: the catalog holds no message the code no longer has
    ids = {k[0] if isinstance(k, tuple) else k for k in catalog if k}
    wanted = {m[0] if isinstance(m, tuple) else m for m in messages}
    assert not ids - wanted, sorted(ids - wanted)
    # every module that words text for a student through kit.i18n or kit.outcome.T is one `make locale` reads
    users = {str(p.relative_to(KIT)) for top in ("kit", "grader", "lab", "classroom") for p in (KIT / top).rglob("*.py")
             if re.search(r"^from kit\.(i18n|outcome) import .*\b(_|N_|ngettext|T)\b", p.read_text(encoding="utf-8"),
                          re.M)}
    assert users <= set(sources()), sorted(users - set(sources()))


def test_every_template_is_a_literal_with_plain_fields():
    """A T() template is what Babel extracts and what the catalog translates: a string literal, never a value
    computed at run time (least of all from submitted text), with plain names as fields."""
    from kit.outcome import T
    wrong, count = [], 0
    for top in ("kit", "grader", "lab", "classroom"):
        for path in (KIT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "T":
                    first = node.args[0] if node.args else None
                    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)) or len(node.args) > 1:
                        wrong.append(f"{path.relative_to(KIT)}:{node.lineno}")
                        continue
                    count += 1
                    if any(k.arg is None for k in node.keywords):  # T("...", **params): fields unknowable here
                        continue
                    try:  # the fields are the keywords given: T() raises otherwise
                        T(first.value, **{k.arg: 0 for k in node.keywords})  # a number fits any format spec
                    except ValueError as e:
                        wrong.append(f"{path.relative_to(KIT)}:{node.lineno}: {e}")
    assert count >= 300 and not wrong, wrong
    with pytest.raises(ValueError):
        T("{a.__class__}", a="")
    with pytest.raises(ValueError):
        T("{a} {b}", a="")
    with pytest.raises(TypeError):
        T("{a}", a=object())


def test_a_text_is_its_english_and_renders_in_chinese_through_a_record():
    """A Text is the English str (records, CSV, tests read it as before) and keeps template and parameters through
    a record's JSON, so an edge can word it in Chinese; a parameter that is a Text is worded too."""
    from kit.outcome import Failure, Kind, T, render
    inner = T("this is a fault of the grader, not of your code: please tell the course staff")
    outer = T("isolation: {isolation}", isolation="bubblewrap")
    f = Failure(Kind.GRADER_ERROR, outer, hint=inner)
    back = Failure.from_dict(json.loads(json.dumps(f.to_dict())))
    assert back == f and str(back.hint) == inner and back.hint.template == inner.template
    assert f.to_dict()["hint"] == str(inner)  # the record keeps the English as a plain string for every reader
    assert render(back.checked, "en") == "isolation: bubblewrap"
    assert render(back.checked, "zh") == "隔离方式：bubblewrap"
    assert CJK.search(render(back.hint, "zh")) and render("plain", "zh") == "plain"


def test_the_committed_catalog_is_the_po_compiled():
    """kit.mo (what runs) is locale/zh_CN/LC_MESSAGES/kit.po (what is written) compiled, every message translated."""
    pytest.importorskip("babel", reason="Babel (requirements-nbgrader.txt) compiles the catalogs")
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    with open(PO, "rb") as f:
        po = read_po(f)
    assert [m.id for m in po if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple)
                                                                  else [m.string]))] == []
    buf = io.BytesIO()
    write_mo(buf, po)
    buf.seek(0)
    assert gettext.GNUTranslations(buf)._catalog == committed()._catalog, "run `make locale`"


# -- choosing the language --------------------------------------------------------------------------

@pytest.mark.parametrize("lang, env, expected", [
    (None, {}, "en"),
    (None, {"LANG": "C.UTF-8"}, "en"),
    (None, {"LANG": "en_US.UTF-8"}, "en"),
    (None, {"LANG": "zh_CN.UTF-8"}, "zh"),
    (None, {"LANG": "zh_CN"}, "zh"),
    (None, {"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),  # LC_ALL overrides, as for every POSIX program
    (None, {"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
    (None, {"LC_ALL": "", "LC_MESSAGES": "", "LANG": "zh_SG.UTF-8"}, "zh"),  # empty means not set
    (None, {"LANG": "fr_FR.UTF-8"}, "en"),  # a language the kit does not speak
    (None, {"KIT_LANG": "zh", "LC_ALL": "C"}, "zh"),
    (None, {"KIT_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
    (None, {"KIT_LANG": "fr", "LANG": "zh_CN.UTF-8"}, "zh"),  # an unknown KIT_LANG is no choice
    ("en", {"KIT_LANG": "zh"}, "en"),  # --lang first
    ("zh", {"LANG": "C.UTF-8"}, "zh"),
    ("zh-CN", {}, "zh"),
])
def test_the_language_comes_from_lang_then_kit_lang_then_the_locale(lang, env, expected, tmp_path):
    assert i18n.choose(lang, env, locale_dir=tmp_path) == expected


def test_a_release_built_in_chinese_speaks_it_unless_told_otherwise(tmp_path):
    (tmp_path / "default").write_text("zh\n")
    assert i18n.choose(None, {"LANG": "en_US.UTF-8"}, locale_dir=tmp_path) == "zh"
    assert i18n.choose(None, {"KIT_LANG": "en"}, locale_dir=tmp_path) == "en"
    assert i18n.choose("en", {}, locale_dir=tmp_path) == "en"


@pytest.mark.parametrize("given, kit_lang, lang, expected", [
    ("LANG=zh", "zh", "", "zh"),  # make's LANG=zh is the kit's language, not a locale handed on
    ("LANG=en", "en", "", "en"),
    ("LANG=C.UTF-8", "", "C.UTF-8", "en"),  # a locale stays a locale
    ("LANG=zh_CN.UTF-8", "", "zh_CN.UTF-8", "zh"),
    (None, "", "en_US.UTF-8", "en"),  # the environment's own locale, untouched
])
def test_make_maps_its_lang_to_the_kits_language_and_keeps_the_locale(given, kit_lang, lang, expected):
    probe = 'lang-probe: ; @echo "$$KIT_LANG|$$LANG"; $(PY) -c "from kit import i18n; print(i18n.language())"'
    env = {k: v for k, v in os.environ.items() if k not in ("KIT_LANG", "LC_ALL", "LC_MESSAGES")}
    env["LANG"] = "en_US.UTF-8"
    p = subprocess.run(["make", "-s", f"--eval={probe}", "lang-probe", *([given] if given else [])], cwd=KIT,
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [f"{kit_lang}|{lang}", expected]
    # and `make release LANG=zh` builds the Chinese release
    if given == "LANG=zh":
        dry = subprocess.run(["make", "-n", "release", given], cwd=KIT, capture_output=True, text=True)
        assert "-m classroom.release --lang zh" in dry.stdout


# -- a grading in Chinese -------------------------------------------------------------------------

EN_LABELS = ("checked:", "expected:", "got:", "likely:", "hint:")
ZH_LABELS = ("检查内容：", "期望结果：", "实际结果：", "可能原因：", "提示：")


def failure_values(out, labels):
    """``[(label index, value)]`` of every failure line of a terminal report."""
    found = []
    for line in out.splitlines():
        for i, label in enumerate(labels):
            if line.startswith("  " + label):
                found.append((i, line[2 + len(label):].strip()))
    return found


def run_grader(folder, *args, env=None):
    env = {**{k: v for k, v in os.environ.items() if k not in ("KIT_LANG", "LC_ALL", "LC_MESSAGES", "LANG")},
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "grader", "--impl", str(folder), "--no-color", *args], cwd=KIT,
                          capture_output=True, text=True, env=env, timeout=600)


def test_a_zh_grading_prints_the_zh_labels_with_the_same_fields_and_numbers(tmp_path):
    """The bug zoo's "eps outside the square root", graded in both languages."""
    folder = mutate(tmp_path / "eps", "rmsnorm.py",
                    "        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)",
                    "        normed = xf / (xf.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)")
    zh = run_grader(folder, "--only", "rmsnorm", "--json", str(tmp_path / "zh.json"), env={"KIT_LANG": "zh"})
    en = run_grader(folder, "--only", "rmsnorm", "--lang", "en", env={"LANG": "zh_CN.UTF-8"})
    assert zh.returncode == en.returncode == 1, zh.stderr + en.stderr
    for word in ("评分：", "隔离方式：", "失败", "总分", "哪里出了问题", *ZH_LABELS):
        assert word in zh.stdout, word
    for word in ("Grading ", "isolation:", "FAIL", "TOTAL", "What went wrong", *EN_LABELS):
        assert word not in zh.stdout, word
        assert word in en.stdout, word
    values, english_values = failure_values(zh.stdout, ZH_LABELS), failure_values(en.stdout, EN_LABELS)
    assert values and [i for i, _ in values] == [i for i, _ in english_values]  # the same fields
    number = re.compile(r"(?<![A-Za-z_])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
    for (i, v), (_, e) in zip(values, english_values):  # the same numbers in each
        assert sorted(number.findall(v)) == sorted(number.findall(e)), (v, e)
    assert any(i == 3 and "eps is added outside the square root" in v for i, v in english_values)  # the named mistake
    assert all(CJK.search(v) for i, v in values if i == 3)  # ... in Chinese
    assert runs(zh.stdout) == [], "English sentences in a zh grading"  # outside code and the student's words
    assert re.findall(r"\d+/\d+", zh.stdout) == re.findall(r"\d+/\d+", en.stdout)  # the same scores
    tests = json.loads((tmp_path / "zh.json").read_text())["tests"]
    outputs = [t["output"] for t in tests if t["score"] < t["max_score"]]
    assert outputs and all(o.startswith("检查内容：") for o in outputs)


def test_bad_input_gets_one_line_in_the_language_asked_for(tmp_path):
    p = run_grader(tmp_path, "--timeout", "-1", "--lang", "zh")
    assert p.returncode == 2 and p.stderr.startswith("错误：") and "必须大于 0 秒，而不是 -1" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    (tmp_path / "residual.py").write_text("")
    p = run_grader(tmp_path, "--json", str(tmp_path), env={"LANG": "zh_CN.UTF-8"})
    assert p.returncode == 2 and "这是一个文件夹" in p.stderr and str(tmp_path / "results.json") in p.stderr, p.stderr
    p = run_grader(tmp_path, "--timeout", "-1", env={"LANG": "C.UTF-8"})
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "must be more than 0 seconds" in p.stderr


# -- the stubs in Chinese -------------------------------------------------------------------------

def test_the_zh_stubs_are_the_english_code_with_chinese_text():
    from classroom.stubs import generate, texts
    en, zh = generate(), generate(lang="zh")
    for f in FILES:
        assert code_only(zh[f]) == code_only(en[f]), f  # the same code, raises included
        en_lines, zh_lines = en[f].splitlines(), zh[f].splitlines()
        places = texts(zh[f], f)
        assert places.keys() == texts(en[f], f).keys(), f
        for (name, kind), (first, last) in places.items():
            block = "\n".join(zh_lines[first - 1:last])
            assert CHINESE.search(block), (f, name, kind)  # every docstring and every comment kept for the student
        english = [line for line in en_lines if line.strip().startswith("#")]
        assert not set(english) & set(zh_lines), f  # no English comment left


def test_the_zh_stubs_import_and_raise_not_implemented_like_the_english_ones(tmp_path):
    from classroom.stubs import generate
    for lang in ("en", "zh"):
        package = tmp_path / f"stubs_{lang}"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for name, text in generate(lang=lang).items():
            (package / name).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        raised = {}
        for lang in ("en", "zh"):
            rmsnorm = importlib.import_module(f"stubs_{lang}.rmsnorm")
            attention = importlib.import_module(f"stubs_{lang}.attention")
            decoder = importlib.import_module(f"stubs_{lang}.decoder")
            got = []
            for call in (lambda: rmsnorm.RMSNorm(8), lambda: attention.precompute_rope(8, 4),
                         lambda: decoder.TransformerLM(65)):
                with pytest.raises(NotImplementedError) as e:
                    call()
                got.append(str(e.value))
            raised[lang] = got
            assert CJK.search(rmsnorm.__doc__) if lang == "zh" else not CJK.search(rmsnorm.__doc__)
        assert raised["zh"] == raised["en"] == ["RMSNorm.__init__", "precompute_rope", "TransformerLM.__init__"]
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(("stubs_en", "stubs_zh"))]:
            del sys.modules[name]


def test_a_translation_that_lacks_a_text_is_refused():
    from classroom.stubs import TranslationError, translate
    source = (KIT / "solutions" / "rmsnorm.py").read_text()
    zh = (KIT / "solutions" / "zh" / "rmsnorm.py").read_text(encoding="utf-8")
    no_comment = "\n".join(line for line in zh.splitlines() if "self.eps = eps" not in line) + "\n"
    with pytest.raises(TranslationError, match="lacks the comment of RMSNorm.__init__"):
        translate(source, no_comment, "rmsnorm.py")
    with pytest.raises(TranslationError, match="not indented"):
        translate(source, zh.replace("        # x：", "      # x："), "rmsnorm.py")


# -- the release in Chinese -------------------------------------------------------------------------

def test_the_zh_release_has_chinese_readme_stubs_and_guides_and_grades_in_chinese(tmp_path):
    from test_classroom import release_links

    from classroom.release import build
    root = build(tmp_path / "student-zh", quiet=True, lang="zh")
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# 一块一块地搭建 Transformer") and "| 文件 | 你要写的 | 分值 |" in readme
    assert "you write" not in readme and "@POINTS@" not in readme and "@PLATFORMS@" not in readme
    for f in FILES:
        stub = (root / "exercises" / f).read_text(encoding="utf-8")
        assert CJK.search(stub.split('"""')[1]) and "raise NotImplementedError" in stub, f
    for name in ("residual", "rmsnorm", "attention", "block", "decoder"):
        guide = (root / "docs" / f"guide-{name}.md").read_text(encoding="utf-8")
        assert guide.startswith("# 学习指南") and "## 自测" in guide, name
    assert (root / "locale" / "default").read_text() == "zh\n" and (root / "locale" / "zh_CN" / "LC_MESSAGES" /
                                                                     "kit.mo").is_file()
    broken = [(str(f.relative_to(root)), t) for f, t in release_links(root) if not (f.parent / t).exists()]
    assert not broken, broken
    # the grader there speaks Chinese without being asked, and English when asked
    p = subprocess.run([sys.executable, "-m", "grader", "--impl", "exercises", "--only", "residual", "--no-color"],
                       cwd=root, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LANG": "en_US.UTF-8", "KIT_LANG": ""})
    assert p.returncode == 1 and "总分 0/10" in p.stdout and "TOTAL" not in p.stdout, p.stdout + p.stderr


def test_the_kits_chinese_readme_holds_the_releases_tables():
    """README.zh-CN.md is written by hand: its points table and platforms section are those the zh release
    generates, so neither drifts from the syllabus or from the English platforms table's template."""
    from classroom.release import TEMPLATES, points_table
    text = (KIT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert points_table("zh") in text
    assert (TEMPLATES / "platforms.zh-CN.md").read_text(encoding="utf-8") in text
    assert "](README.zh-CN.md)" in (KIT / "README.md").read_text(encoding="utf-8").split("\n\n")[1]
    for name in ("residual", "rmsnorm", "attention", "block", "decoder"):
        assert f"](docs/zh-CN/guide-{name}.md)" in text
        english = (KIT / "docs" / f"guide-{name}.md").read_text(encoding="utf-8")
        chinese = (KIT / "docs" / "zh-CN" / f"guide-{name}.md").read_text(encoding="utf-8")
        # the same sections, the same questions, the same numbers
        assert len(re.findall(r"^## ", chinese, re.M)) == len(re.findall(r"^## ", english, re.M)), name
        questions = lambda t: re.findall(r"^\d+\. ", t.split("\n## ")[-1], re.M)  # noqa: E731
        assert questions(chinese) == questions(english), name
        numbers = lambda t: sorted(re.findall(r"\d+\.\d+", re.sub(r"```.*?```", "", t, flags=re.S)))  # noqa: E731
        assert numbers(chinese) == numbers(english), name
