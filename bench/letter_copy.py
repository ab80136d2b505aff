"""Can the tiny language model learn to copy a choice's letter at all?  (docs/models.md, "Why the letter copy
stays near chance")

A fresh tiny checkpoint (the world's tokenizer, `--layers` LM layers) is trained on the `letters` task alone:
text-only lookups "Which choice reads a broad smile? (A) ... (D) ..." -> "a broad smile (C)", 16 per step,
fresh each epoch (`models.sft.run_sft`).  Then, on 200 new lookups, the text of the answer is given and the
four letters are compared by log-likelihood: the share where the right letter wins (chance 25 %).  No clip,
no perception: the copy alone.

`--letter-after` writes the prompt's choices as "a broad smile (C)", so that the answer's letter is the token
that followed the same text in the prompt (a forward copy) instead of the one before it (the benchmark's
"(C) a broad smile").  Only this script changes the format; the kit's prompts stay the benchmark's.

    .venv/bin/python bench/letter_copy.py --run outputs/tiny --steps 1500 --layers 3
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avere_utils import protocol
from avere_utils.models.loading import load_backend
from avere_utils.models.sft import SFTConfig, qa_answer, run_sft, tokenizer_corpus
from avere_utils.models.tiny import build_tiny_checkpoint, resolve_size
from avere_utils.pairs.build import read_items
from avere_utils.records import Example
from avere_utils.synth.text import letter_item


def letter_after_prompt(question: str, choices: list[str], template: str = protocol.EMOREALM_PROMPT_TEMPLATE) -> str:
    return template.format(question=question, choices=" ".join(f"{c[4:]} ({c[1]})" for c in choices))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run folder after notebooks 01-02 (manifests, pairs)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--layers", type=int, default=3, help="LM layers (the tiny reference has 3)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--letter-after", action="store_true", help="choices written 'text (L)' (see above)")
    ap.add_argument("--n-eval", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.letter_after:  # qa_prompt looks emorealm_prompt up at call time
        protocol.emorealm_prompt = letter_after_prompt
    run = Path(args.run)
    corpus = tokenizer_corpus(sorted((run / "manifests").glob("*.jsonl")), run / "pairs")
    size = resolve_size({"text": {"num_hidden_layers": args.layers}})
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_checkpoint(tmp, corpus, size=size, seed=0)
        backend = load_backend(tmp, device="cpu")
        items = read_items(run / "manifests" / "train_source.jsonl")
        cfg = SFTConfig(epochs=0, batch_size=16, lr=args.lr, max_steps=args.steps, seed=0, perception_weight=0.0,
                        length_groups=1)
        start = time.perf_counter()
        history = run_sft(backend, items, lambda _id: None, cfg, None, tasks=["letters"], letters_per_clip=2,
                          phase="letters")
        seconds = time.perf_counter() - start
        rng = np.random.default_rng(123)
        right = 0
        for _ in range(args.n_eval):
            q = letter_item(rng)
            answer = qa_answer(q)
            text = answer[:answer.rindex("(") + 1]
            lp, _ = backend.sequence_logprobs([Example(protocol.qa_prompt(q), None, f"{text}{x})") for x in "ABCD"])
            right += "ABCD"[int(lp.argmax())] == q["answer"]
    print(json.dumps({"layers": args.layers, "steps": args.steps, "lr": args.lr, "letter_after": args.letter_after,
                      "lookups_seen": args.steps * 16, "final_loss": round(history[-1]["loss"], 4),
                      "letter_accuracy": right / args.n_eval, "train_seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
