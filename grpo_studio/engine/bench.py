"""`grpo-studio bench`: seconds per GRPO step, plain TRL beside GRPO Studio's engine.

Both arms train the same random-init model of a real architecture (Qwen2.5 shapes; a synthetic
word-level tokenizer in which every id decodes), with the same LoRA, data and GRPO settings, and a
completion length forced to exactly `max_completion_length` tokens, each arm in its own process:
    trl            TRL's GRPOTrainer as a user would write it (timed from outside, otherwise untouched)
    studio         `grpo_studio.engine.run.train` on an equivalent run file (the fast path on)
    studio-trlgen  the same, generating with TRL's generate (grpo.fast_generation = "off")
    studio-eager   the fast path without CUDA graphs (what the graphs buy)
The table reports the median seconds per step after a warm-up step, the generation and training
parts of it, generated tokens/s, peak VRAM, the fraction of the decode roofline (the bytes of
weights one decode step must read, over the measured memory bandwidth), and the VRAM estimate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHS: dict[str, dict[str, Any]] = {
    # Test-sized: runs on a CPU in about a minute.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=512, tie_word_embeddings=True),
    # The Qwen2.5 shapes (config.json of the released models), random weights.
    "qwen2.5-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True),
    "qwen2.5-7b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                       intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False),
}


ARMS = ("trl", "studio", "studio-trlgen", "studio-eager")


def parse_arm(spec: str) -> tuple[str, list[str]]:
    """`studio+lora.gradient_checkpointing=false+grpo.top_k=5`: an arm and run-file overrides for it
    (studio arms only), so one bench call can compare the engine's settings side by side."""
    arm, *overrides = [part.strip() for part in spec.split("+")]
    return arm, [o for o in overrides if o]


@dataclass(frozen=True)
class BenchSetup:
    """What both arms share: model, LoRA, data and GRPO settings."""

    arch: str
    quant: str  # "16bit" | "4bit"
    steps: int  # measured steps, after `warmup`
    warmup: int = 1
    prompts_per_step: int = 4
    num_generations: int = 8
    micro_batch: int = 8  # completions per micro-step; accumulation makes up one generation batch
    prompt_tokens: int = 128
    completion_tokens: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    learning_rate: float = 1e-5
    gradient_checkpointing: bool = True
    vram_limit_gib: float = 0.0  # > 0: cap each arm's process at this much GPU memory (a smaller card)
    lengths: str = "fixed"  # "fixed": exactly completion_tokens new tokens; "natural": completions end at EOS

    @classmethod
    def for_arch(cls, arch: str, quant: str, steps: int, **options: Any) -> "BenchSetup":
        if arch == "tiny":
            return cls(arch, quant, steps, prompt_tokens=16, completion_tokens=16, lora_r=4, lora_alpha=8,
                       learning_rate=1e-3, **options)
        return cls(arch, quant, steps, **options)

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations

    @property
    def accumulation(self) -> int:
        return max(1, self.completions_per_step // self.micro_batch)

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    @property
    def targets(self) -> list[str]:
        return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def torch_no_grad_lazy(fn: Any) -> Any:
    """torch.no_grad() without importing torch when this module is imported (the CLI's --help stays fast)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


# ---- the shared model, tokenizer, data and reward ---------------------------------------------

REWARD_SOURCE = '''\
def spread_reward(completions, **kwargs):
    """Cheap and varied, so every group has a reward spread and every step a gradient."""
    return [float(sum(len(w) for w in c.split()) % 17) for c in completions]
'''


def build_tokenizer(vocab_size: int) -> Any:
    """Word-level: token i is the word `t<i>`, so every id decodes and a prompt of n words is n tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials)}
    vocab.update({f"t{i}": i + len(specials) for i in range(vocab_size - len(specials))})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_model_folder(arch: str, folder: Path, natural_lengths: bool = False) -> Path:
    """A random-init Qwen2 model of the given shape, saved as a normal model folder (bf16).

    With `natural_lengths` the model ends its completions itself: see `calibrate_eos`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if (folder / "config.json").is_file():
        return folder
    shape = ARCHS[arch]
    tok = build_tokenizer(shape["vocab_size"])
    config = Qwen2Config(**shape, max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                         torch_dtype="bfloat16")
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    if natural_lengths:
        calibrate_eos(model, tok.eos_token_id, EOS_PER_TOKEN)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    return folder


# Per-token EOS probability of the natural-lengths model: completions then end like a geometric draw
# capped at the length limit, with a mean near 40% of a 256-token limit (E = (1 - (1-p)^256) / p).
EOS_PER_TOKEN = 0.0088
OUTPUT_PROJECTION_SCALE = 0.01  # see calibrate_eos


@torch_no_grad_lazy
def calibrate_eos(model: Any, eos_id: int, target: float) -> float:
    """Give a random model a steady chance `target` of ending at every token, as real completions do.

    A random model almost never samples EOS (1 in 150k). Every token's embedding gets a large value K in
    one hidden dimension, so that the normalized input of every layer, and the final norm's output, are
    nearly the same vector at every position; the model then draws tokens from a nearly fixed
    distribution. EOS's output row gets an extra delta in that dimension, which lifts its logit by a
    near-constant amount; delta is found by bisection on real forward passes. Returns the probability
    reached.

    That dimension only dominates if the layers add little to the residual stream: at the 7B shape one
    random-init layer adds a residual of norm ~170 against K = 20 (and a 7B bench then ended every
    completion at its first token). So the layers' output projections (o_proj, down_proj) are scaled
    down 100x: the same shapes and arithmetic, a residual stream that stays K-dominated at any depth."""
    import torch

    inner, head = model.model, model.lm_head
    dim, k = 0, 20.0
    for layer in inner.layers:
        layer.self_attn.o_proj.weight.mul_(OUTPUT_PROJECTION_SCALE)
        layer.mlp.down_proj.weight.mul_(OUTPUT_PROJECTION_SCALE)
    inner.embed_tokens.weight[:, dim] = k
    if head.weight is not inner.embed_tokens.weight:
        head.weight[:, dim] = 0.0  # untied: every other token's logit ignores that dimension
    base = float(head.weight[eos_id, dim])
    gen = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(3, head.weight.shape[0], (4, 160), generator=gen).to(head.weight.device)

    def p_eos(delta: float) -> float:
        head.weight[eos_id, dim] = base + delta
        logits = model(input_ids=ids).logits[:, 128:].float()
        return float(torch.softmax(logits, dim=-1)[..., eos_id].mean())

    lo, hi = -1.0, 1.0
    while p_eos(hi) < target and hi < 1e4:
        lo, hi = hi, hi * 2
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_eos(mid) < target else (lo, mid)
    return p_eos(hi)


def model_folder(setup: BenchSetup, work: Path) -> Path:
    # "natural2": the calibration with scaled-down output projections (an older natural model ended at once)
    return work / f"model-{setup.arch}{'-natural2' if setup.lengths == 'natural' else ''}"


def write_data(setup: BenchSetup, path: Path, vocab_size: int) -> Path:
    import random

    rng = random.Random(0)
    rows = setup.total_steps * setup.prompts_per_step + setup.prompts_per_step
    with path.open("w") as f:
        for _ in range(rows):
            words = " ".join(f"t{rng.randrange(vocab_size - 3)}" for _ in range(setup.prompt_tokens))
            f.write(json.dumps({"prompt": words, "answer": ""}) + "\n")
    return path


def write_run_file(setup: BenchSetup, folder: Path, model_dir: Path, data: Path) -> Path:
    """The studio arm's run file: the same settings the TRL arm passes to GRPOConfig."""
    from grpo_studio.config import RewardFunction, RunConfig, save_run

    cfg = RunConfig()
    cfg.model.name = str(model_dir)
    cfg.model.max_seq_length = setup.prompt_tokens + setup.completion_tokens
    cfg.quantization.load_in = setup.quant
    cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules = setup.lora_r, setup.lora_alpha, setup.targets
    # The studio decides recomputation itself ("auto": off when the card has memory for it), as for a user.
    cfg.lora.gradient_checkpointing = "auto" if setup.gradient_checkpointing else "off"
    cfg.data.source, cfg.data.answer_column = str(data), ""
    cfg.data.max_prompt_length = setup.prompt_tokens
    cfg.rewards.file = "bench_rewards.py"
    cfg.rewards.functions = [RewardFunction(name="spread_reward")]
    g = cfg.grpo
    g.per_device_train_batch_size, g.gradient_accumulation_steps = setup.micro_batch, setup.accumulation
    g.num_generations, g.max_completion_length = setup.num_generations, setup.completion_tokens
    g.learning_rate, g.max_steps, g.lr_scheduler_type = setup.learning_rate, setup.total_steps, "constant"
    g.seed, g.fast_generation = 0, "auto"
    if setup.lengths == "fixed":
        g.extra = {"generation_kwargs": {"min_new_tokens": setup.completion_tokens}}
    cfg.run.name, cfg.run.save_steps, cfg.run.logging_steps = "bench", 1_000_000, 1
    path = folder / "run.toml"
    save_run(cfg, path)
    return path


# ---- running the arms ---------------------------------------------------------------------------


def run_arm(spec: str, setup: BenchSetup, work: Path, timeout: int = 3600) -> dict[str, Any]:
    """One arm (`parse_arm` spec) in a fresh process (its own CUDA context and peak-memory counters)."""
    arm, overrides = parse_arm(spec)
    cmd = [sys.executable, "-m", "grpo_studio.engine.bench_arm", arm, str(work), json.dumps(setup.__dict__),
           json.dumps(overrides)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ})
    if os.environ.get("GRPO_STUDIO_BENCH_ECHO"):  # the arm's own output (e.g. a profile), for a device log
        print(proc.stdout, proc.stderr[-20000:], sep="\n", flush=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT "):])
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"arm": spec, "error": f"exit {proc.returncode}: {tail}"}
    return {**result, "arm": spec}


def prepare(setup: BenchSetup, work: Path) -> None:
    import shutil

    for old in work.glob("studio*-run-*"):  # the studio arms' run folders of an earlier bench (ARM-run-TAG)
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work / "trl-out", ignore_errors=True)
    model_dir = build_model_folder(setup.arch, model_folder(setup, work), setup.lengths == "natural")
    vocab = ARCHS[setup.arch]["vocab_size"]
    data = write_data(setup, work / "prompts.jsonl", vocab)
    (work / "bench_rewards.py").write_text(REWARD_SOURCE)
    write_run_file(setup, work, model_dir, data)


def format_table(results: list[dict[str, Any]]) -> str:
    cols = [("arm", "arm", "{}"), ("mode", "generation", "{}"), ("step_s_median", "s/step", "{:.3f}"), ("gen_s_median", "gen s", "{:.3f}"),
            ("train_s_median", "train s", "{:.3f}"), ("mean_completion_tokens", "mean len", "{:.0f}"),
            ("gen_tokens_per_s", "gen tok/s", "{:,.0f}"),
            ("peak_vram_gib", "peak alloc GiB", "{:.2f}"), ("peak_reserved_gib", "peak resv GiB", "{:.2f}"),
            ("estimate_gib", "estimate GiB", "{:.2f}"), ("roofline_frac", "roofline", "{:.1%}")]
    rows = [[h for _, h, _ in cols]]
    for r in results:
        if "error" in r:
            rows.append([r["arm"], "error: " + r["error"].splitlines()[-1][:80]] + [""] * (len(cols) - 2))
            continue
        row = ["-" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in cols]
        if r.get("merged_layers"):  # mixed: how much of the model ran merged
            row[1] += f" ({r['merged_layers']} merged)"
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    base = next((r for r in results if r.get("arm") == "trl" and "error" not in r), None)
    for r in results:
        if base and r is not base and "error" not in r:
            lines.append(f"{r['arm']}: {r['step_s_median'] / base['step_s_median']:.2f}x the seconds per step of "
                         f"plain TRL ({base['step_s_median'] / r['step_s_median']:.1f}x faster)")
    return "\n".join(lines)


def length_warnings(setup: BenchSetup, results: list[dict[str, Any]]) -> list[str]:
    """--lengths natural: say so when an arm's completions were far shorter than intended (a mean near
    40% of the limit), since its timings then measure almost no generation."""
    if setup.lengths != "natural":
        return []
    floor = 0.1 * setup.completion_tokens
    return [f"warning: arm {r['arm']}: completions averaged {r['mean_completion_tokens']:.0f} tokens of "
            f"{setup.completion_tokens} (intended ~{0.4 * setup.completion_tokens:.0f}): the lengths are not realistic"
            for r in results if "error" not in r and (r.get("mean_completion_tokens") or 0) < floor]


def main(arch: str, quant: str = "16bit", steps: int = 3, arms: list[str] | None = None,
         json_path: str | None = None, work: str | None = None, vram_limit_gib: float = 0.0,
         lengths: str = "fixed") -> int:
    if arch not in ARCHS:
        print(f"error: --arch must be one of {', '.join(ARCHS)}", file=sys.stderr)
        return 2
    arms = arms or ["trl", "studio"]
    unknown = [a for a in arms if parse_arm(a)[0] not in ARMS or (parse_arm(a)[1] and a.startswith("trl"))]
    if unknown:
        print(f"error: unknown arm {unknown[0]!r} (use {', '.join(ARMS)}; studio arms may add "
              "+section.key=value overrides)", file=sys.stderr)
        return 2
    setup = BenchSetup.for_arch(arch, quant, steps, vram_limit_gib=vram_limit_gib, lengths=lengths)
    work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="grpo-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    new_tokens = (f"exactly {setup.completion_tokens}" if lengths == "fixed" else
                  f"up to {setup.completion_tokens} (ending at EOS)")
    card = f", GPU memory capped at {vram_limit_gib:g} GiB" if vram_limit_gib else ""
    print(f"bench: {arch} {quant}, {setup.prompts_per_step} prompts x {setup.num_generations} generations, "
          f"{setup.prompt_tokens}-token prompts, {new_tokens} new tokens, LoRA r={setup.lora_r}, "
          f"{setup.warmup} warm-up + {setup.steps} measured steps{card}", flush=True)
    prepare(setup, work_dir)
    results = []
    for arm in arms:
        print(f"  running arm {arm} ...", flush=True)
        results.append({**run_arm(arm, setup, work_dir), "arch": arch, "quant": quant})
    print(format_table(results))
    for line in length_warnings(setup, results):
        print(line)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0
