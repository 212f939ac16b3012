"""Tiny models, datasets and run files built inside tests: no downloads, a second to build.

The model is a real transformers architecture (Llama) with random weights and a character-level
tokenizer, a few tens of thousands of parameters, so the real loading, LoRA and TRL code paths run
on a CPU in seconds.
"""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

CHARS = [chr(c) for c in range(32, 127)] + ["\n"]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]

# A minimal chat template (ChatML-like) for the chat-template code paths.
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def build_tokenizer(chat_template: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_model(folder: Path, *, chat: bool = False, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = build_tokenizer(CHAT_TEMPLATE if chat else None)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_addition_data(path: Path, n: int = 64, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            f.write(json.dumps({"question": f"{a}+{b}=", "answer": str(a + b)}) + "\n")
    return path


REWARDS = textwrap.dedent('''\
    import re


    def correctness_reward(completions, answer, **kwargs):
        """1.0 when the completion starts with the right number."""
        out = []
        for c, a in zip(completions, answer):
            m = re.match(r"\\s*(\\d+)", c)
            out.append(1.0 if m and m.group(1) == a else 0.0)
        return out


    def length_reward(completions, **kwargs):
        """Prefer short answers: a spread of rewards so GRPO has a signal even for a random model."""
        return [-len(c) / 32 for c in completions]
    ''')


def write_run(folder: Path, model_dir: Path, *, data: Path | None = None, rewards: str = REWARDS,
              extra: str = "") -> Path:
    """A complete run file (and its reward file and data) for a short CPU run."""
    folder.mkdir(parents=True, exist_ok=True)
    data = data or write_addition_data(folder / "train.jsonl")
    write_addition_data(folder / "test.jsonl", n=16, seed=1)
    (folder / "rewards.py").write_text(rewards)
    run = folder / "run.toml"
    run.write_text(textwrap.dedent(f'''\
        [model]
        name = "{model_dir}"
        max_seq_length = 128

        [lora]
        r = 4
        alpha = 8
        target_modules = "all-linear"
        gradient_checkpointing = false

        [data]
        source = "{data.name}"
        prompt_column = "question"
        answer_column = "answer"
        max_prompt_length = 32

        [grpo]
        per_device_train_batch_size = 8
        num_generations = 4
        max_completion_length = 8
        max_steps = 3
        learning_rate = 1e-3

        [eval]
        source = "test.jsonl"

        [run]
        name = "tiny"
        save_steps = 2
        ''') + extra)
    return run


def make_run_folder(run_file: Path, folder: Path, *, seed: int = 1, checkpoint_step: int | None = None) -> Path:
    """A run folder as training leaves it (frozen run file, reward file, adapter/), without training:
    the adapter is PEFT's LoRA with random (not zero) B matrices, so it changes what the model says.
    With `checkpoint_step`, the adapter is also saved as checkpoints/checkpoint-N."""
    import torch
    from peft import get_peft_model

    from grpo_studio.config import load_run
    from grpo_studio.engine.library_configs import lora_config
    from grpo_studio.engine.run import freeze_run_file
    from grpo_studio.engine.store import RunFolder
    from transformers import AutoModelForCausalLM

    run = load_run(run_file)
    target = RunFolder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frozen = freeze_run_file(run, target)
    torch.manual_seed(seed)
    config = lora_config(frozen.config)
    config.init_lora_weights = False
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(frozen.config.model.name), config)
    model.save_pretrained(target.adapter)
    if checkpoint_step is not None:
        checkpoint = target.checkpoints / f"checkpoint-{checkpoint_step}"
        model.save_pretrained(checkpoint)
        (checkpoint / "trainer_state.json").write_text("{}")
    return folder


BPE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")


def build_bpe_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer shaped like Qwen2's (its split regex, byte-level alphabet, merges),
    trained in a blink on a few sentences."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    corpus = ["What is 12+35? The answer is 47.", "Natalia sold clips to 48 of her friends in April.",
              "The quick brown fox jumps over the lazy dog.", "<answer>\n72\n</answer> #### 72", "héllo wörld"] * 4
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BPE_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_arch_model(folder: Path, arch: str, *, tokenizer=None, seed: int = 0, hidden: int = 64) -> Path:
    """A tiny random model of another architecture the fast path and GGUF export know: 'llama' (with
    grouped-query attention and an untied output matrix), 'mistral', 'qwen2' (byte-level BPE tokenizer
    by default), 'qwen3'."""
    import torch
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

    torch.manual_seed(seed)
    tok = tokenizer or (build_bpe_tokenizer() if arch == "qwen2" else build_tokenizer())
    common = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    }[arch]
    extra = {"tie_word_embeddings": False} if arch == "llama" else {}
    if arch == "qwen3":
        # Qwen3 sets head_dim apart from hidden / heads; 128 as in every Qwen3 (transformers' GGUF reader
        # assumes it rather than reading the file's attention.key_length)
        extra = {"head_dim": 128}
    model = model_class(config_class(**common, **extra))
    with torch.no_grad():  # random norms and biases, so a tensor written in the wrong place shows
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(1 + 0.2 * torch.randn_like(p) if "norm" in name else 0.1 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
