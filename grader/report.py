"""Turning check results into the table a student reads and the JSON Gradescope reads."""
import json
from dataclasses import asdict, dataclass

from lab.files import write_text


@dataclass
class Result:
    module: str
    name: str
    points: float
    score: float
    visibility: str
    output: str = ""
    nodeid: str = ""
    passed: bool = True


def short_reason(output):
    """The first ``got:`` line of a failure message, for the table."""
    for line in output.splitlines():
        if line.startswith("got:"):
            return line[4:].strip()
    return output.splitlines()[0] if output else ""


def render(results, title, color=False):
    """The table, then one block per failure with what was checked, expected, got and the hint."""
    def paint(text, code):
        return f"\033[{code}m{text}\033[0m" if color else text

    width = max([len(r.name) for r in results] + [20])
    width = min(width, 90)
    lines = [title, ""]
    module = None
    for r in results:
        if r.module != module:
            module = r.module
            got = sum(x.score for x in results if x.module == module)
            total = sum(x.points for x in results if x.module == module)
            lines.append(paint(f"{module} ({_num(got)}/{_num(total)})", "1"))
        if r.points == 0:
            mark = paint("INFO", "36")
        else:
            mark = paint("PASS", "32") if r.passed else paint("FAIL", "31")
        lines.append(f"  {mark} {_num(r.score):>2}/{_num(r.points):<2} {r.name[:width]}")
        if not r.passed:
            reason = short_reason(r.output)
            if reason.startswith("not implemented yet") or reason.startswith("not run:"):
                lines.append(f"              {reason}")
        elif r.output:  # a passing check's note, such as the measured perplexity
            lines.append(f"              {r.output}")
    got, total = sum(r.score for r in results), sum(r.points for r in results)
    lines += ["", paint(f"TOTAL {_num(got)}/{_num(total)}", "1")]
    details = [r for r in results if r.output and not r.passed and not short_reason(r.output).startswith(("not implemented yet", "not run:"))]
    if details:
        lines += ["", "What went wrong", "==============="]
        for r in details:
            lines.append(paint(f"[{r.module}] {r.name}", "1"))
            lines += ["  " + line for line in r.output.splitlines()]
            lines.append("")
    return "\n".join(lines)


def _num(x):
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def gradescope(results, hidden_visibility="hidden", extra_output=""):
    """Gradescope's results.json: per-check score, max_score, status, output and visibility."""
    tests = [{"name": f"{r.module}: {r.name}", "score": r.score, "max_score": r.points,
              "status": "passed" if r.passed else "failed", "output": r.output,
              "visibility": r.visibility if r.visibility == "visible" else hidden_visibility}
             for r in results]
    return {"score": sum(r.score for r in results), "max_score": sum(r.points for r in results),
            "output": extra_output, "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


def as_dicts(results):
    return [asdict(r) for r in results]
