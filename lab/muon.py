"""Muon for the hidden weight matrices, AdamW for the rest (lab.train's choice on a CPU, ``--optimizer muon``).

Muon (Jordan et al., 2024) keeps a Nesterov momentum M of each matrix's gradient and
steps along its nearest semi-orthogonal matrix, U V^T of M = U S V^T, found with a few
Newton-Schulz iterations instead of an SVD. Every direction of the update then moves by
the same amount, so rare patterns (most of a text's characters) are learned as fast as
common ones. The update is scaled by 0.2 * sqrt(max(rows, cols)) to the RMS of a typical
AdamW step (Liu et al., 2025, "Muon is scalable"), so one schedule serves both groups.
Embeddings (tied to the output head) and norm gains stay with AdamW, as Muon's authors do,
at 3x the learning rate (``adamw_lr_scale``): an embedding row moves only when its character
appears, and the tied head sets every logit; measured in BENCHMARKS.md.

Why not torch.optim.Muon: it always runs Newton-Schulz in bfloat16, which CPUs without native
bf16 emulate about 20x slower. Here it runs batched over matrices of one shape, in float32, or
in bfloat16 (``ns_dtype``) where the trainer computes in bf16 anyway: 2.4x faster on a CPU with
AVX512-BF16, and as close to U V^T (BENCHMARKS.md).
"""
import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan et al.'s quintic: fast to converge near 0
NS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # by name: saved in the optimizer's state


def orthogonalize(G, steps=5, eps=1e-7, dtype=torch.float32):
    """Approximately U V^T for each matrix of G (..., m, n), in ``dtype``; singular values land in about [0.7, 1.2]."""
    a, b, c = NS_COEFFICIENTS
    tall = G.size(-2) > G.size(-1)
    X = (G.mT if tall else G).to(dtype)  # iterate on the wide side: (m, m) products are smaller
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)  # Frobenius norm >= spectral norm: all singular values <= 1
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer with two groups: Muon for 2-D hidden weights, AdamW for embeddings and norms."""

    def __init__(self, model, lr, betas=(0.9, 0.95), momentum=0.95, ns_steps=5, weight_decay=0.0, eps=1e-8,
                 adamw_lr_scale=3.0, ns_dtype="float32"):
        if ns_dtype not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of {sorted(NS_DTYPES)}, not {ns_dtype!r}")
        matrices = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n]
        chosen = {id(p) for p in matrices}
        rest = [p for p in model.parameters() if id(p) not in chosen]  # tied lm_head is the embedding: here
        defaults = dict(lr=lr, betas=betas, momentum=momentum, ns_steps=ns_steps, weight_decay=weight_decay, eps=eps)
        # the trainer sets every group's "lr" from the schedule; "lr_scale" and "ns_dtype" stay, saved with the state
        super().__init__([{"params": matrices, "muon": True, "lr_scale": 1.0, "ns_dtype": ns_dtype},
                          {"params": rest, "muon": False, "lr_scale": adamw_lr_scale}], defaults)

    def load_state_dict(self, state_dict):
        for group in state_dict.get("param_groups", []):  # a bad name must fail here, not at the first step
            if group.get("ns_dtype", "float32") not in NS_DTYPES:
                raise ValueError(f"ns_dtype must be one of {sorted(NS_DTYPES)}, not {group['ns_dtype']!r}")
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            lr = group["lr"] * group.get("lr_scale", 1.0)  # checkpoints from before the scale: 1
            if group["weight_decay"]:
                for p in params:
                    p.mul_(1 - lr * group["weight_decay"])
            (self._muon if group["muon"] else self._adamw)(group, params, lr)

    def _muon(self, group, params, lr):
        beta, by_shape = group["momentum"], {}
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"].mul_(beta).add_(p.grad)
            by_shape.setdefault(p.shape, []).append((p, p.grad.add(buf, alpha=beta)))  # Nesterov
        for shape, items in by_shape.items():  # one batched Newton-Schulz per shape (q/k/v/o, gate/up, down)
            dtype = NS_DTYPES[group.get("ns_dtype", "float32")]  # checkpoints from before the choice: float32
            updates = orthogonalize(torch.stack([u for _, u in items]), group["ns_steps"], dtype=dtype)
            scale = lr * 0.2 * math.sqrt(max(shape))
            for (p, _), u in zip(items, updates):
                p.add_(u.to(p.dtype), alpha=-scale)

    def _adamw(self, group, params, lr):
        (b1, b2), eps = group["betas"], group["eps"]
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            state["exp_avg"].lerp_(p.grad, 1 - b1)
            state["exp_avg_sq"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (state["exp_avg_sq"] / (1 - b2 ** state["step"])).sqrt_().add_(eps)
            p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** state["step"]))
