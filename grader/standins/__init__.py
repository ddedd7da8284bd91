"""Stand-in components: simple modules with the student API's names, signatures and parameter
names, but deliberately *not* the real thing.

The grader swaps them in for a submission's own components (for example the
block's RMSNorm and attention) to check an assembly on its own: if a
submission's TransformerBlock wired around these stand-ins matches the
reference block.py wired around the same stand-ins, the assembly is right,
whatever the state of the submission's attention. They run inside the
student's worker, so they must never contain solution code.
"""
