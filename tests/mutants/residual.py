"""Mistakes in residual.py."""
from . import Mutant

RET = "        return x + self.sublayer(x, *args, **kwargs)"

MUTANTS = [
    Mutant("Residual returns sublayer(x) only (the skip path is missing)", "residual.py",
           RET, "        return self.sublayer(x, *args, **kwargs)",
           loses=("matches_x_plus_sublayer", "passes_extra_arguments", "gradients"), named="skip path is missing"),
    Mutant("Residual adds in place: x += sublayer(x)", "residual.py",
           RET, "        x += self.sublayer(x, *args, **kwargs)\n        return x",
           loses=('gradients', 'keeps_sublayer'), named="not `x += ...`"),
    Mutant("Residual drops the extra arguments", "residual.py",
           RET, "        return x + self.sublayer(x)",
           loses=("passes_extra_arguments",), named="extra arguments were dropped"),
    Mutant("the sublayer is kept under another name (self.fn)", "residual.py",
           "        self.sublayer = sublayer", "        self.fn = sublayer",
           more=((RET, "        return x + self.fn(x, *args, **kwargs)"),),
           loses=("keeps_sublayer", "gradients"), named="store it as self.sublayer"),
    Mutant("Residual flattens x with view (fails on a non-contiguous x)", "residual.py",
           RET, "        flat = x.view(-1, x.shape[-1])  # (B*T, C)\n"
                "        return (flat + self.sublayer(flat, *args, **kwargs)).view(x.shape)",
           loses=("matches_x_plus_sublayer",), named="a .view(...) of a tensor that is not contiguous"),
    Mutant("the sublayer's output detached from the graph (x + self.sublayer(x).detach())", "residual.py",
           RET, "        return x + self.sublayer(x, *args, **kwargs).detach()",
           loses=("keeps_sublayer", "gradients"), named="the sublayer's output is detached from the graph",
           says=(("*", "the sublayer's output is detached from the graph"),), never=("not called",)),
]
