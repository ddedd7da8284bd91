"""Print text from a trained checkpoint.

    python -m lab.sample [--checkpoint runs/final.pt] [--prompt "ROMEO:"] [--length 500]
                         [--temperature 0.8] [--top-k 40] [--seed 1] [--impl DIR]
"""
import sys

import torch

from kit import checkpoint as ckpt
from kit.cli import ArgumentParser, number
from kit.corpus import CharTokenizer
from kit.i18n import _
from kit.outcome import render, said

from .model import ImplementationError, build


@torch.no_grad()
def generate(model, idx, length, temperature=1.0, top_k=None, generator=None, max_seq_len=256):
    """Append ``length`` sampled tokens to ``idx`` (1, T), feeding at most the last ``max_seq_len``."""
    for _step in range(length):
        logits = model(idx[:, -max_seq_len:])[:, -1, :].float()  # (1, V): the next-token distribution
        if temperature <= 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def fail(message):
    """One line on stderr, ``error: message`` in the language in force; exit status 1."""
    print(_("error: {message}").format(message=message), file=sys.stderr)
    return 1


def main(argv=None):
    p = ArgumentParser(prog="python -m lab.sample", description="Print text from a trained checkpoint.")
    p.add_argument("--checkpoint", default="runs/final.pt")
    p.add_argument("--impl", help="implementation folder (default: the one the checkpoint was trained with)")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--length", type=number(int, 1), default=500, help="characters to generate")
    p.add_argument("--temperature", type=number(float, 0), default=0.8, help="0 picks the most likely character")
    p.add_argument("--top-k", type=number(int, 0), default=40, help="sample among the k most likely (0: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_lang()
    args = p.parse_args(argv)
    try:
        state = ckpt.load(args.checkpoint, legacy=True)
        tok = CharTokenizer(state["vocab"])
        prompt = tok.encode(args.prompt)
        impl = args.impl or state.get("impl") or "solutions"
        model = build(impl, tok.vocab_size, state["config"])
        model.load_state_dict(state["model"])
    except (ckpt.CheckpointError, ImplementationError) as e:
        return fail(render(said(e)))
    except ValueError as e:
        return fail(_("the prompt cannot be encoded: {error}").format(error=render(said(e))))
    except NotImplementedError as e:
        return fail(_("{impl} is not complete yet: {what} raises NotImplementedError").format(impl=impl, what=e))
    except (RuntimeError, KeyError) as e:
        return fail(_("the checkpoint does not fit the model of {impl}: {error}").format(
            impl=impl, error=str(e).splitlines()[0][:200]))
    if not prompt:
        return fail(_("the prompt is empty"))
    model.eval()
    g = torch.Generator().manual_seed(args.seed)
    out = generate(model, torch.tensor([prompt]), args.length, args.temperature, args.top_k, g,
                   state["config"]["max_seq_len"])
    print(tok.decode(out[0].tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
