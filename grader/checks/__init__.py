"""The checks: what the grader grades. One file per unit in each folder, one ``check_*`` function per check.

- ``properties/``: what a correct module must do whatever its weights (shapes, causality, scale
  invariance, RoPE's relative positions, structure); each scored one also compares its calls'
  outputs with the reference's, so no answer but the real computation passes it.
- ``reference/``: outputs and gradients compared with the reference on random inputs and weights.

They run under pytest through ``python -m grader`` (grader/run.py), never as the kit's tests. A
check's id is ``<unit>.<name>`` (``rmsnorm.eps``); its folder says whether it compares with the
reference; its points are in ``@check(points)`` and add up to the unit's in kit/syllabus.py.
"""
