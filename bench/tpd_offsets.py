"""The TPD offset of the stress-family pairs, by kind of cue asked about (docs/pairs.md).

offset = gamma * [log pi_text(y_w|x) - sum_i beta_i log pi_text(y_l^i|x)], with pi_text the reference's
likelihood of a response from the prompt alone (no audio, no video), as the AVEm-DPO loss computes it.  The
loss asks beta * (rho-margin) to exceed it, so a kind with a larger offset needs a larger margin.

    .venv/bin/python bench/tpd_offsets.py --pairs outputs/tiny/pairs --reference outputs/tiny/models/reference

The pairs must hold stress-family rows (family_weights with visual_stress / audio_stress > 0).
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from avere_utils.models import load_backend
from avere_utils.pairs import load_pairs
from avere_utils.records import Example


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", required=True, help="a pairs folder (notebook 02)")
    ap.add_argument("--reference", required=True, help="the reference checkpoint folder (notebook 03)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--max-rows", type=int, default=240)
    ap.add_argument("--gamma", type=float, default=0.2)
    ap.add_argument("--beta-vr", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    backend = load_backend(args.reference)
    rows = [r for r in load_pairs(args.pairs, args.split) if r["family"].endswith("_stress")][:args.max_rows]
    if not rows:
        raise SystemExit(f"{args.pairs}: no stress-family pairs in split {args.split!r}")
    offsets: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        texts = [Example(r["prompt"], None, r[k]) for k in ("chosen", "rejected_vr", "rejected_er")]
        lp, _ = backend.sequence_logprobs(texts)
        chosen, vr, er = (float(x) for x in lp)
        kind = r["template"].rsplit("/", 1)[-1]  # templates.stress_sample: "p{wording}/r{response}/{kind}"
        offsets[kind].append(args.gamma * (chosen - args.beta_vr * vr - (1 - args.beta_vr) * er))
    for kind, v in sorted(offsets.items()):
        print(f"{kind:13s} n={len(v):4d}  mean offset {np.mean(v):6.2f}  sd {np.std(v):5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
