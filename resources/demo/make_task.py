"""Generate the demo's reasoning task: three-digit addition with a scratchpad.

Writes ``data/train.jsonl`` and ``data/test.jsonl`` next to this file. Each row
has two columns:

* ``question``: the prompt text, e.g. ``"347+285="`` (plain text, no chat template)
* ``answer``:   the ground-truth sum as a string, e.g. ``"632"``

The model is expected to answer in the scratchpad format the starter was taught
(see ``build_starter.py``), e.g.::

    <r>7+5=12;4+8+1=13;3+2+1=6</r><a>632</a>

Both splits are drawn from one seeded stream of distinct operand pairs, so they
are disjoint and the files are byte-identical on every run.

Usage: python make_task.py
"""

import json
import random
from pathlib import Path

SEED = 1234
N_TRAIN = 3000
N_TEST = 256
LO, HI = 100, 999  # both operands have exactly three digits: every trace has 3 columns

HERE = Path(__file__).resolve().parent


def _distinct_pairs(rng, n):
    """Draw n distinct (a, b) operand pairs. (a, b) and (b, a) count as different problems."""
    seen, pairs = set(), []
    while len(pairs) < n:
        pair = (rng.randint(LO, HI), rng.randint(LO, HI))
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def _row(a, b):
    return {"question": f"{a}+{b}=", "answer": str(a + b)}


def main():
    rng = random.Random(SEED)
    pairs = _distinct_pairs(rng, N_TEST + N_TRAIN)
    # Test first: changing N_TRAIN later never changes the held-out split.
    splits = {"test": pairs[:N_TEST], "train": pairs[N_TEST:]}
    out_dir = HERE / "data"
    out_dir.mkdir(exist_ok=True)
    for name, split_pairs in splits.items():
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(_row(a, b)) + "\n" for a, b in split_pairs)
        print(f"wrote {len(split_pairs)} rows to {out_dir / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
