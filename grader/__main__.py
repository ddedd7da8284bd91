"""``python -m grader``: grade an implementation folder and print what to fix.

    python -m grader [--impl DIR] [--only UNIT ...] [--checkpoint PATH] [--json PATH] [--record PATH]
    python -m grader batch SUBMISSIONS_DIR --csv grades.csv [--jobs N]   (see grader/batch.py)
    python -m grader similarity SUBMISSIONS_DIR --out report.html       (see grader/similarity.py)

Exit status (every runner reads it the same way, grader/runner.py):

    0  graded, full marks for the checks that ran
    1  graded, some checks failed
    2  bad input: nothing graded (a missing folder, a bad option); one line on stderr says why
    3  the grader itself failed (a broken check, a broken reference): not the submission's fault
    4  refused: no sandbox strong enough for --untrusted code could start here
"""
import argparse
import os
import sys
import time
from pathlib import Path

from kit import syllabus
from kit.cli import ArgumentParser, UsageError, positive, writable
from kit.i18n import _
from kit.perplexity import FINAL_TIMEOUT

from .runner import EXIT_FAILED, EXIT_FULL, EXIT_GRADER, EXIT_REFUSED, EXIT_USAGE

KIT = Path(__file__).resolve().parent.parent
VISIBILITIES = ["visible", "after_published", "after_due_date", "hidden"]


def parse(argv):
    p = ArgumentParser(prog="python -m grader", description="Grade the five exercise files in a folder.")
    p.add_argument("--impl", default="exercises", help="folder holding the five files (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="UNIT", choices=syllabus.NAMES,
                   help="grade only these: " + " ".join(syllabus.NAMES))
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint for the final check (default: runs/final.pt)")
    p.add_argument("--checkpoint-shown", metavar="NAME", help=argparse.SUPPRESS)  # the runners: the name students know
    p.add_argument("--corpus", metavar="PATH", help="corpus for the final check (default: data/tinyshakespeare.txt)")
    p.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json here")
    p.add_argument("--record", metavar="PATH", help="also write the grading as the kit's own JSON (for the runners)")
    p.add_argument("--classroom", metavar="PATH", help="also write GitHub Classroom's grading-reporter results here")
    p.add_argument("--html", metavar="PATH", help="also write a report with pictures of what failed (attention "
                                                 "weights, gradient norms) here: one self-contained HTML file")
    p.add_argument("--timeout", type=positive, default=20.0, help="seconds allowed per call into the submission")
    p.add_argument("--final-timeout", type=positive, default=FINAL_TIMEOUT, metavar="S",
                   help="seconds the final check may take: past them it fails saying that the time ran out, "
                        "and the other checks keep their points (default: %(default)g, inside Gradescope's "
                        "540 s for the whole grading)")
    p.add_argument("--seed", default=os.environ.get("GRADER_SEED", ""),
                   help="the course's grading seed (default: $GRADER_SEED, else the published inputs; with --untrusted "
                        "a fresh secret one)")
    p.add_argument("--no-color", action="store_true", help="plain output")
    p.add_argument("--user", metavar="NAME",
                   help="run the submitted code as this OS user (needs root; the Gradescope bundle uses it)")
    p.add_argument("--untrusted", action="store_true",
                   help="the code is someone else's: refuse to run it without a real sandbox (bubblewrap or --user)")
    p.add_argument("--allow-weak-sandbox", action="store_true",
                   help="with --untrusted, grade even where no real sandbox can start (say so in the report)")
    p.add_argument("--reference-visibility", "--hidden-visibility", dest="visibility", default="visible",
                   choices=VISIBILITIES, help="Gradescope visibility of the checks that compare with the reference "
                                              "(default: %(default)s)")
    p.add_argument("--leaderboard", action="store_true", help="put the final check's numbers on Gradescope's "
                                                             "leaderboard (in --json)")
    p.add_argument("--policy", choices=("on", "off"), help="the course's rules on library shortcuts (grader/policy.py): "
                   "a file that uses one its exercise rules out loses that exercise's points (default: $KIT_POLICY, "
                   "else on)")
    p.add_lang()
    return p.parse_args(argv)


def check_input(args):
    folder = Path(args.impl)
    if not folder.is_dir():
        raise UsageError(_("{folder}: no such folder (give the folder that holds {files})").format(
            folder=folder, files=", ".join(syllabus.FILES)))
    present = [f for f in syllabus.FILES if (folder / f).is_file()]
    if not present:
        raise UsageError(_("{folder} holds none of {files}").format(folder=folder, files=", ".join(syllabus.FILES)))
    if args.user:
        from .sandbox import user_problem
        problem = user_problem(args.user)
        if problem:
            raise UsageError(problem)
    if args.seed and not (KIT / "solutions").is_dir():
        raise UsageError(_("--seed: this kit has no reference, only its answers on the published inputs (the student "
                           "release): grade without a seed"))
    if args.checkpoint and Path(args.checkpoint).is_dir():
        raise UsageError(_("--checkpoint {path}: is a folder; give the checkpoint file (runs/final.pt)").format(
            path=args.checkpoint))
    return folder, [f for f in syllabus.FILES if f not in present], {
        "json": writable("--json", args.json), "record": writable("--record", args.record),
        "classroom": writable("--classroom", args.classroom), "html": writable("--html", args.html, "report.html")}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["batch"]:
        from .batch import main as batch_main
        return batch_main(argv[1:])
    if argv[:1] == ["similarity"]:  # the instructor's report on a class's submissions (grader/similarity.py)
        from .similarity import main as similarity_main
        return similarity_main(argv[1:])
    args = parse(argv)
    try:
        folder, missing, outputs = check_input(args)
    except UsageError as e:
        print(_("error: {message}").format(message=e), file=sys.stderr)
        return EXIT_USAGE
    t0 = time.time()
    from .sandbox import Sandbox, SandboxRefused, become_reaper, ignored
    try:
        # this process grades one folder: whatever the worker starts is reparented here and killed with it
        sandbox = Sandbox(folder, call_timeout=args.timeout, user=args.user, untrusted=args.untrusted,
                          allow_weak=args.allow_weak_sandbox, reap=become_reaper())
    except SandboxRefused as e:
        print(_("error: {message}").format(message=e), file=sys.stderr)
        return EXIT_REFUSED
    if args.untrusted and not args.seed and (KIT / "solutions").is_dir():
        # someone else's code, and no course seed: never the published inputs, whose answers ship with the release
        import secrets
        args.seed = secrets.token_hex(16)
        print(_("grader: no --seed or $GRADER_SEED: the inputs come from a fresh secret seed (give one to regrade on "
                "the same inputs)"), file=sys.stderr)
    sandbox.start()  # first: the worker imports torch while this process does
    try:
        from . import policy as course_policy
        from .report import classroom, gradescope, terminal, write_json
        from .run import GraderError, grade, reference_for
        try:
            reference = reference_for(seed=args.seed)
            grading = grade(folder, only=args.only, checkpoint=args.checkpoint, corpus=args.corpus, sandbox=sandbox,
                            checkpoint_shown=args.checkpoint_shown, seed=args.seed, reference=reference,
                            record=outputs["record"], policy=course_policy.enabled(args.policy),
                            final_timeout=args.final_timeout)
        except GraderError as e:
            print(_("grader error: {message}").format(message=e), file=sys.stderr)
            return EXIT_GRADER
        pictures = None
        if outputs["html"]:  # while the worker is still up: the pictures ask it one more question or two
            from .diagnose.pictures import collect
            try:
                pictures = collect(grading, sandbox, reference)
            except Exception as e:  # noqa: BLE001 - no picture is no reason to lose the grading
                grading.errors.append(f"pictures: {type(e).__name__}: {e}")
    finally:
        sandbox.close()
    for line in grading.errors:  # staff only (stderr: Gradescope hides it from students)
        print(_("grader error (for the course staff): {message}").format(message=line), file=sys.stderr)
    color = sys.stdout.isatty() and not args.no_color
    title = _("Grading {folder}").format(folder=folder) + (
        _(" (missing: {files})").format(files=", ".join(missing)) if missing else "")
    print(terminal(grading, title, color=color))
    left = [n for n in ignored(folder, keep=[Path(args.checkpoint).name] if args.checkpoint else ["final.pt"])
            if args.untrusted or not (n.startswith(".") or n == "__pycache__")]  # at the desk: Python's own caches
    if left:  # only the five files are graded (a copy of them): bytecode, packages and the rest are not read
        from kit.text import one_line
        names = ", ".join(left[:10])
        shown = one_line(_("{names} and {n} more").format(names=names, n=len(left) - 10) if len(left) > 10 else names,
                         300)
        print(_("note: only {files} are graded; left out of the grading: {names}").format(
            files=", ".join(syllabus.FILES), names=shown))
    print(_("({n} checks in {seconds} s)").format(n=len(grading.results), seconds=f"{time.time() - t0:.1f}"))
    if outputs["json"]:
        write_json(outputs["json"], gradescope(grading, args.visibility, leaderboard=args.leaderboard))
    if outputs["record"]:
        write_json(outputs["record"], grading.to_dict())
    if outputs["classroom"]:
        write_json(outputs["classroom"], classroom(grading))
    if outputs["html"]:
        from kit.files import write_text

        from .report import html
        write_text(outputs["html"], html(grading, title, pictures))
        drawn = pictures is not None and (pictures.attention is not None or pictures.gradients)
        print((_("report with pictures of what failed: {path}") if drawn else _("report: {path}")).format(
            path=outputs["html"]))
    score = sum(r.score for r in grading.results)
    total = sum(r.points for r in grading.results)
    if any(r.failure is not None and not r.failure.kind.students_fault for r in grading.results):
        return EXIT_GRADER  # graded, but not all of it stands: the runners flag it (the record is written)
    return EXIT_FULL if score == total else EXIT_FAILED


if __name__ == "__main__":
    code = main()
    # every file is written and closed by now: skip the interpreter's teardown of torch (~0.2 s of a grading)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
