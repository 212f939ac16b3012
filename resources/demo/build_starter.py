"""Train the demo's starter model: a tiny character-level Llama that adds
three-digit numbers with a scratchpad, but was taught from flawed examples.

The flaw is deliberate and systematic, so that GRPO has something visible to fix
within a few CPU minutes:

* Forgotten carries. In the supervised data a carry into the next column is
  dropped with probability ``P_DROP_CARRY`` (> 0.5). The scratchpad and answer
  stay self-consistent with the mistake, e.g. for 347+285::

      right: <r>7+5=12;4+8+1=13;3+2+1=6</r><a>632</a>
      flaw:  <r>7+5=12;4+8=12;3+2+1=6</r><a>622</a>

  Greedy decoding follows the majority habit and drops every carry, so it only
  gets carry-free problems right; sampling at temperature 1 still carries
  ``1 - P_DROP_CARRY`` of the time, so a group of 8 samples usually holds a
  correct answer. That contrast is the learning signal GRPO needs: it only has
  to move one decision ("+1" or "=" after a two-digit column sum) past 50 %.

* Sloppy format. ``P_SLOPPY`` of the examples miss a tag or add trailing text.
  Greedy output is tidy, samples are sometimes not; the format reward cleans
  that up during GRPO.

The SFT problems never include a pair from ``data/test.jsonl`` (run
``make_task.py`` first). Everything is seeded; the output folder ``starter/``
loads with ``AutoTokenizer.from_pretrained`` and
``AutoModelForCausalLM.from_pretrained``.

Usage: python build_starter.py   (600 SFT steps: ~5 min on 2 idle CPU cores, ~10 on busy ones)
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent
SEED = 0

# The flaw. Above 0.5 so greedy decoding inherits the mistake; well below 1 so
# sampling still finds the right habit often enough for GRPO to reinforce it.
P_DROP_CARRY = 0.65
P_SLOPPY = 0.3

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
# Every printable ASCII character plus newline, so any user text tokenizes.
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]

MAX_LEN = 64  # longest correct completion is 42 chars + eos; room to spare


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def build_tokenizer():
    vocab = {token: i for i, token in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Split into single characters; Fuse joins them back without separators.
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",  # generation appends to the right end of the prompt
        model_max_length=MAX_LEN * 2,
    )
    return hf_tok


# ---------------------------------------------------------------------------
# Supervised data with the flaw
# ---------------------------------------------------------------------------


def scratchpad(a, b, drop_carry=lambda: False):
    """Column-by-column addition from the units up, e.g. 347+285 ->
    ("7+5=12;4+8+1=13;3+2+1=6", 632). ``drop_carry()`` is asked for each carry
    into a middle or top column; when it says True the carry is forgotten and
    the result follows from the mistake. The final carry-out is always kept."""
    width = max(len(str(a)), len(str(b)))
    da, db = str(a).zfill(width)[::-1], str(b).zfill(width)[::-1]
    steps, digits, carry = [], [], 0
    for i in range(len(da)):
        x, y = int(da[i]), int(db[i])
        if carry and drop_carry():
            carry = 0
        s = x + y + carry
        steps.append(f"{x}+{y}+1={s}" if carry else f"{x}+{y}={s}")
        digits.append(s % 10)
        carry = s // 10
    if carry:
        digits.append(1)
    result = int("".join(str(d) for d in reversed(digits)))
    return ";".join(steps), result


def completion_text(a, b, rng):
    """One supervised completion for a+b, carrying the flaw at the set rates."""
    steps, result = scratchpad(a, b, drop_carry=lambda: rng.random() < P_DROP_CARRY)
    if rng.random() >= P_SLOPPY:
        return f"<r>{steps}</r><a>{result}</a>"
    # Three kinds of sloppiness, each a single early or late decision.
    kind = rng.randrange(3)
    if kind == 0:
        return f"<r>{steps}</r><a>{result}"  # missing </a>: answer not parseable
    if kind == 1:
        return f"{steps}<a>{result}</a>"  # missing <r>...</r>
    return f"<r>{steps}</r><a>{result}</a>."  # trailing text


def load_test_pairs():
    test_path = HERE / "data" / "test.jsonl"
    if not test_path.exists():
        raise SystemExit(f"{test_path} is missing: run make_task.py first")
    pairs = set()
    with open(test_path, encoding="utf-8") as f:
        for line in f:
            a, b = json.loads(line)["question"].rstrip("=").split("+")
            pairs.add((int(a), int(b)))
    return pairs


def sft_batch(rng, tokenizer, batch_size, excluded):
    """Token ids, labels (-100 on prompt and padding) for a fresh random batch."""
    ids, labels = [], []
    for _ in range(batch_size):
        while True:
            a, b = rng.randint(100, 999), rng.randint(100, 999)
            if (a, b) not in excluded:
                break
        p = tokenizer.encode(f"{a}+{b}=", add_special_tokens=False)
        c = tokenizer.encode(completion_text(a, b, rng), add_special_tokens=False) + [tokenizer.eos_token_id]
        ids.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    label_ids = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    return input_ids, label_ids, (input_ids != pad).long()


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def build_model(tokenizer, hidden, layers, heads, intermediate):
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=MAX_LEN * 2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


# ---------------------------------------------------------------------------
# Evaluation: a sanity report after the build (greedy, like the demo's eval)
# ---------------------------------------------------------------------------


@torch.no_grad()
def generate(model, tokenizer, prompts, do_sample=False, max_new_tokens=MAX_LEN, batch_size=256):
    model.eval()
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(
            **enc,
            do_sample=do_sample,
            temperature=1.0 if do_sample else None,
            top_k=0 if do_sample else None,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def greedy_accuracy(model, tokenizer, rows):
    import rewards  # next to this file, so on sys.path when run as a script

    completions = generate(model, tokenizer, [r["question"] for r in rows])
    correct = rewards.correctness_reward(None, completions, [r["answer"] for r in rows])
    fmt = rewards.format_reward(None, completions)
    return sum(correct) / len(rows), sum(fmt) / len(rows), completions


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "starter"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=512)
    # One thread is the fastest choice on a small shared CPU: the matrices are
    # tiny, so a second thread mostly waits on the first (measured ~3x slower
    # with 2 threads when another process keeps one core busy). The result is
    # bit-identical for any thread count we tried.
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    random.seed(SEED)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)

    tokenizer = build_tokenizer()
    excluded = load_test_pairs()
    model = build_model(tokenizer, args.hidden, args.layers, args.heads, args.intermediate)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)

    def lr_at(step):  # linear warmup, cosine decay to 5 %
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    t0 = time.time()
    for step in range(args.steps):
        input_ids, labels, attn = sft_batch(rng, tokenizer, args.batch_size, excluded)
        loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - t0:6.1f}s", flush=True)

    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        max_new_tokens=MAX_LEN,
        do_sample=False,
    )
    out = Path(args.out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"saved to {out} after {time.time() - t0:.0f}s of training")

    with open(HERE / "data" / "test.jsonl", encoding="utf-8") as f:
        test_rows = [json.loads(line) for line in f]
    acc, fmt, completions = greedy_accuracy(model, tokenizer, test_rows)
    print(f"greedy test accuracy {acc:.3f}  mean format reward {fmt:.3f}")
    for row, c in list(zip(test_rows, completions))[:3]:
        print(f"  {row['question']}{c}   (truth {row['answer']})")


if __name__ == "__main__":
    main()
