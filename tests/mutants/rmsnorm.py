"""Mistakes in rmsnorm.py."""
from . import Mutant

NORMED = "        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)"

MUTANTS = [
    Mutant("RMSNorm subtracts the mean (LayerNorm)", "rmsnorm.py",
           NORMED, "        xf = xf - xf.mean(-1, keepdim=True)\n" + NORMED,
           loses=('bfloat16', 'eps', 'gradients', 'matches_reference'), named="subtracts the mean",
           also=("block", "decoder")),
    Mutant("eps added outside the square root", "rmsnorm.py",
           NORMED, "        normed = xf / (xf.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)",
           loses=("eps",), named="eps is added outside the square root"),
    Mutant("normalised over dimension 1 instead of the last", "rmsnorm.py",
           NORMED, NORMED.replace("mean(-1", "mean(1"),
           loses=('bfloat16', 'eps', 'gradients', 'matches_reference'), named="dimension 1"),
    Mutant("keepdim=True forgotten in the mean", "rmsnorm.py",
           NORMED, NORMED.replace(", keepdim=True", ""),
           loses=('bfloat16', 'eps', 'gradients', 'matches_reference', 'parameters'), named="keepdim=True is missing"),
    Mutant("the weight is not applied", "rmsnorm.py",
           "        return normed.type_as(x) * self.weight", "        return normed.type_as(x)",
           loses=('bfloat16', 'eps', 'gradients', 'matches_reference', 'parameters'), named="weight is not applied"),
    Mutant("statistics computed in bfloat16 (no float32 upcast)", "rmsnorm.py",
           "        xf = x.float()", "        xf = x",
           loses=("bfloat16",), named="computed in bfloat16"),
    Mutant("the output cast back to x's dtype (a bfloat16 x with a float32 weight gives bfloat16)", "rmsnorm.py",
           "        return normed.type_as(x) * self.weight", "        return (normed.type_as(x) * self.weight).type_as(x)",
           loses=("bfloat16",), named="a bfloat16 x with a float32 weight gives float32"),
    Mutant("multiplies by the RMS (sqrt instead of rsqrt)", "rmsnorm.py",
           NORMED, NORMED.replace("torch.rsqrt", "torch.sqrt"),
           loses=('bfloat16', 'eps', 'gradients', 'matches_reference'),
           named="sqrt instead of rsqrt"),
    Mutant("the eps argument is ignored (hard-coded 1e-6)", "rmsnorm.py",
           "        self.eps = eps", "        self.eps = 1e-6",
           loses=("parameters", "eps"), named="eps argument is ignored"),
]
