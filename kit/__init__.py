"""The kit's shared vocabulary: the floor everything else stands on.

- ``syllabus``: the units, their files and points, the curriculum's model (the one exercise list);
- ``outcome``: what grading comes to, as values (``Result``, ``Failure``, ``Kind``);
- ``loader``: the one way to import an implementation, by folder path (it imports nothing of the kit:
  the grader's worker loads it from its own copy);
- ``corpus``, ``perplexity``, ``checkpoint``: the corpus, the number the final check grades, the
  checkpoint format (``tensorpack``: tensors and structure that cannot inflate or run code);
- ``files`` (atomic writes), ``text`` (submitted text made safe to print), ``machine`` and
  ``benchmarks`` (BENCHMARKS.md, where every measured number lives).

Nothing here imports ``grader``, ``lab`` or ``classroom`` (tests/test_layout.py).
"""
