"""Naming the mistake behind a failed check, in three files by job:

- ``variants.py``: what each known mistake would output on a check's own inputs (the formulas,
  correct ones among them: instructor-only; the release carries their outputs instead);
- ``crashes.py``: exceptions whose type and message betray a classic mistake (ships);
- ``probe.py``: the staged attention probe, a best guess at the first step that differs (ships).

The mutants in ``tests/mutants`` exercise all three; docs/bug-zoo.md lists which mistake each names.
"""
