"""GGUF export: the merged model as one file for llama.cpp, Ollama and LM Studio.

The file format is written by the `gguf` package (llama.cpp's own Python writer); this module
decides what goes in it, as llama.cpp's convert_hf_to_gguf.py does for these architectures:

- architectures: Llama and Mistral (llama.cpp's `llama`: q/k rows permuted to its RoPE layout),
  Qwen2 (`qwen2`, with q/k/v biases) and Qwen3 (`qwen3`, with q/k norms);
- tensor types: the `gguf` package quantizes in Python, without llama.cpp's C code, to f32, f16,
  bf16, q8_0, q5_1, q5_0, q4_1 and q4_0 (plain round-to-nearest blocks, every matrix alike). Norms
  and other 1-D tensors stay f32, as llama.cpp expects; a matrix whose rows don't split into
  32-value blocks falls back to f16. The K-quants (Q4_K_M, ...) need llama.cpp: run its
  `llama-quantize` on the f16 file;
- the tokenizer, from tokenizer.json: byte-level BPE (Qwen2/3, Llama 3) as llama.cpp's `gpt2`
  model with its merges and the pre-tokenizer named by its split regex; sentencepiece-style BPE
  with byte fallback (Llama 2, Mistral) as `llama`, through the `gguf` package's own reader; and a
  character-level vocabulary (the built-in demo) as `llama` too, each character a piece, since
  llama.cpp's BPE cannot load a vocabulary without merges. Special tokens, the BOS/EOS flags (taken
  from what the tokenizer really does) and the chat template come along.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from grpo_studio.engine.export import ExportError, Progress

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
PIP_HINT = "GGUF export needs the gguf package: pip install 'grpo-studio[gguf]' (or: pip install gguf)"

# transformers architecture -> llama.cpp architecture, and whether q/k rows need llama.cpp's RoPE order
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
    "Qwen3ForCausalLM": ("qwen3", False),
}

# Split regexes of byte-level BPE tokenizers, by the name llama.cpp gives that pre-tokenizer.
PRE_TOKENIZER_REGEXES = {
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
             r"|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}


class GgufError(ExportError):
    """GGUF export cannot be done (an ExportError: `failed` marks a failure of the writing itself)."""


class GgufCancelled(Exception):
    """The caller's cancel check said stop; nothing was left behind."""


def require_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise GgufError(PIP_HINT) from None
    return gguf


def gguf_file_name(name: str, qtype: str) -> str:
    return f"{name}-{qtype}.gguf"


# ---- the export ---------------------------------------------------------------------------------


def export_gguf(run_dir: str | Path, dest: str | Path, qtype: str = "f16", progress: Progress | None = None,
                cancelled: Callable[[], bool] | None = None) -> Path:
    """Merge the run's adapter into its base model and write DEST/<run name>-<qtype>.gguf with a
    model card. DEST is built beside itself and renamed at the end: a failure (or `cancelled()`
    turning true, checked between tensors) leaves nothing. Staged per process (the window removes a
    cancelled child's folder by its pid)."""
    from grpo_studio.engine.export import adapter_source, check_dest, frozen_run, merged_model, staged_export
    from grpo_studio.engine.model_card import write_model_card
    from grpo_studio.engine.safe_files import process_staging_path
    from grpo_studio.engine.store import RunFolder

    require_gguf()  # before any slow loading
    if qtype not in GGUF_TYPES:
        raise GgufError(f"--gguf {qtype}: choose one of {', '.join(GGUF_TYPES)}")
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise GgufError(f"{run_dir}: not a run folder (no config.toml)")
    run = frozen_run(folder)
    src = adapter_source(folder)
    dest = Path(dest)
    check_dest(dest)
    check_base_model(run)

    def say(what: str, fraction: float) -> None:
        if progress:
            progress(what, fraction)
        if cancelled and cancelled():
            raise GgufCancelled()

    say("loading the base model and merging the adapter", 0.02)
    model = merged_model(run, src)
    say("merged", 0.08)
    name = gguf_file_name(run.config.run.name, qtype)
    with staged_export(dest, staging=process_staging_path(dest, os.getpid())) as staging:
        tokenizer_dir = staging / "tokenizer"
        _load_tokenizer(run).save_pretrained(tokenizer_dir)
        write_gguf(model, tokenizer_dir, staging / name, qtype, name=run.config.run.name,
                   progress=lambda what, f: say(what, 0.1 + 0.85 * f))
        shutil.rmtree(tokenizer_dir)
        write_model_card(staging, folder.path, "gguf", adapter=src, gguf_file=name)
    if progress:
        progress("GGUF exported", 1.0)
    return dest / name


def _base_config(run: Any) -> dict[str, Any]:
    from grpo_studio.engine.model import model_path, read_model_config

    config = read_model_config(model_path(run), run.config.model.revision)
    if config is None:
        raise GgufError(f"model.name: {run.config.model.name!r} is not downloaded; train or evaluate once first")
    return config


def check_base_model(run: Any) -> str:
    """The base model's architecture when GGUF export knows it; else GgufError says why (the window asks
    before offering GGUF)."""
    return check_architecture(_base_config(run))


def check_architecture(config: dict[str, Any]) -> str:
    archs = config.get("architectures") or []
    for arch in archs:
        if arch in ARCHITECTURES:
            return arch
    known = ", ".join(sorted(ARCHITECTURES))
    raise GgufError(f"GGUF export knows {known}; this model is {', '.join(archs) or 'of an unknown architecture'}. "
                    "Export the merged model and convert it with llama.cpp's convert_hf_to_gguf.py")


def _load_tokenizer(run: Any) -> Any:
    from grpo_studio.engine.model import load_tokenizer, model_path, tokenizer_class

    # The tokenizer as the model ships it: load_tokenizer() adds a pad token and left padding for training.
    name = model_path(run)
    try:
        return tokenizer_class(name).from_pretrained(name, revision=run.config.model.revision or None,
                                                     trust_remote_code=run.config.model.trust_remote_code)
    except Exception:  # noqa: BLE001 - fall back to the loader with its error messages
        return load_tokenizer(run)


# ---- the file -----------------------------------------------------------------------------------


def write_gguf(model: Any, tokenizer_dir: str | Path, path: str | Path, qtype: str = "f16", *, name: str = "model",
               progress: Progress | None = None) -> Path:
    """Write a transformers causal LM (Llama, Mistral, Qwen2, Qwen3) and its tokenizer (a folder
    saved by save_pretrained) as one GGUF file."""
    gguf = require_gguf()
    config = model.config
    hf_arch = check_architecture(config.to_dict())
    arch, permute_qk = ARCHITECTURES[hf_arch]
    tensor_type, file_type = _types(gguf, qtype)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    _write_hparams(gguf, writer, config, arch)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_vocab(gguf, writer, Path(tokenizer_dir), config.vocab_size)

    n_layers = config.num_hidden_layers
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), n_layers)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    items = [(k, v) for k, v in state.items() if not (tied and k == "lm_head.weight") and "rotary_emb" not in k]
    for extra_name, extra in _rope_tensors(gguf, config):
        writer.add_tensor(extra_name, extra)
    for i, (hf_name, tensor) in enumerate(items):
        data = tensor.detach().to("cpu").float()
        if permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, n_head, n_head)
        elif permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, n_head, n_kv)
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise GgufError(f"no GGUF name for the tensor {hf_name!r} of this {hf_arch}")
        array = data.numpy()
        matrix = array.ndim >= 2 and not new_name.endswith("_norm.weight")
        kind = tensor_type if matrix else gguf.GGMLQuantizationType.F32  # llama.cpp wants norms and 1-D in f32
        try:
            packed = gguf.quants.quantize(array, kind)
        except gguf.QuantError:  # rows not a multiple of the block size
            kind = gguf.GGMLQuantizationType.F16
            packed = gguf.quants.quantize(array, kind)
        writer.add_tensor(new_name, packed, raw_dtype=kind)
        if progress:
            progress(f"converting {hf_name}", 0.9 * (i + 1) / len(items))
    if progress:
        progress(f"writing {Path(path).name}", 0.95)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def _types(gguf: Any, qtype: str) -> tuple[Any, Any]:
    q, f = gguf.GGMLQuantizationType, gguf.LlamaFileType
    return {
        "f32": (q.F32, f.ALL_F32), "f16": (q.F16, f.MOSTLY_F16), "bf16": (q.BF16, f.MOSTLY_BF16),
        "q8_0": (q.Q8_0, f.MOSTLY_Q8_0), "q5_1": (q.Q5_1, f.MOSTLY_Q5_1), "q5_0": (q.Q5_0, f.MOSTLY_Q5_0),
        "q4_1": (q.Q4_1, f.MOSTLY_Q4_1), "q4_0": (q.Q4_0, f.MOSTLY_Q4_0),
    }[qtype]


def _permute(weights: Any, n_head: int, n_head_kv: int) -> Any:
    """transformers keeps each head's rotary pairs as two halves; llama.cpp's `llama` wants them
    interleaved: reorder the rows of q/k (weights and biases) head by head."""
    heads = n_head_kv if n_head != n_head_kv else n_head
    shape = weights.shape
    return weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _rope(config: Any) -> dict[str, Any]:
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if "rope_theta" not in params and getattr(config, "rope_theta", None) is not None:
        params["rope_theta"] = config.rope_theta
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def _write_hparams(gguf: Any, w: Any, config: Any, arch: str) -> None:
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    head_dim = _head_dim(config)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    if arch == "llama":
        w.add_vocab_size(config.vocab_size)
        w.add_rope_dimension_count(head_dim)
    rope = _rope(config)
    if rope.get("rope_theta") is not None:
        w.add_rope_freq_base(float(rope["rope_theta"]))
    kind = rope["rope_type"]
    if kind == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rope["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif kind not in ("default", "llama3"):
        raise GgufError(f"RoPE scaling {kind!r} is not supported by this exporter; use llama.cpp's converter")


def _rope_tensors(gguf: Any, config: Any) -> list[tuple[str, Any]]:
    """Llama 3.1+ scales RoPE frequencies by wavelength; llama.cpp reads the factors as a tensor."""
    import numpy as np

    rope = _rope(config)
    if rope["rope_type"] != "llama3":
        return []
    base, dim = float(rope.get("rope_theta", 10000.0)), _head_dim(config)
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_context = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi * base ** (i / dim)
        if wavelength < old_context / high:
            factors.append(1.0)
        elif wavelength > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return [(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", np.array(factors, dtype=np.float32))]


# ---- the tokenizer ------------------------------------------------------------------------------


def write_vocab(gguf: Any, writer: Any, tokenizer_dir: Path, n_vocab: int) -> str:
    """Write the tokenizer as llama.cpp reads it; returns the tokenizer model written ('gpt2' or 'llama')."""
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec.get("model", {})
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    if model.get("type") == "BPE" and _uses(spec, "ByteLevel"):
        kind = "gpt2"
        _byte_level_vocab(gguf, writer, spec, added, n_vocab)
    elif model.get("type") == "BPE" and model.get("byte_fallback"):
        kind = "llama"
        _sentencepiece_vocab(gguf, writer, tokenizer_dir, n_vocab)
    elif model.get("type") == "WordLevel":
        kind = "llama"
        _character_vocab(gguf, writer, model["vocab"], added, model.get("unk_token"), n_vocab)
    else:
        raise GgufError(f"{tokenizer_dir / 'tokenizer.json'}: a {model.get('type')} tokenizer; GGUF export handles "
                        "byte-level BPE, sentencepiece-style BPE and character vocabularies")
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=kind == "gpt2", n_vocab=n_vocab)
    add_bos, add_eos = _adds_special_tokens(tokenizer_dir)
    special.add_special_token["bos"] = add_bos
    special.add_special_token["eos"] = add_eos
    special.add_to_gguf(writer, quiet=True)
    return kind


def _uses(spec: dict[str, Any], kind: str) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == kind or any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(spec.get("pre_tokenizer")) or walk(spec.get("decoder"))


def _pre_tokenizer_name(spec: dict[str, Any]) -> str:
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel" and steps[0].get("use_regex", True):
        return "gpt-2"  # GPT-2's own split
    for step in steps:
        regex = (step.get("pattern") or {}).get("Regex") if step.get("type") == "Split" else None
        for name, known in PRE_TOKENIZER_REGEXES.items():
            if regex == known:
                return name
    raise GgufError("the tokenizer splits text in a way this exporter cannot name for llama.cpp (it knows "
                    f"{', '.join(['gpt-2', *PRE_TOKENIZER_REGEXES])}); export the merged model and convert it with "
                    "llama.cpp's convert_hf_to_gguf.py")


def _byte_level_vocab(gguf: Any, writer: Any, spec: dict[str, Any], added: dict[int, Any], n_vocab: int) -> None:
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    by_id.update({i: t["content"] for i, t in added.items()})
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)


def _sentencepiece_vocab(gguf: Any, writer: Any, tokenizer_dir: Path, n_vocab: int) -> None:
    vocab = gguf.LlamaHfVocab(tokenizer_dir)  # the gguf package's reader of Llama-2-style tokenizer.json
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    _pad(gguf, tokens, scores, types, n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)


def _character_vocab(gguf: Any, writer: Any, vocab: dict[str, int], added: dict[int, Any], unknown: str | None,
                     n_vocab: int) -> None:
    """Every token one character: sentencepiece pieces, a space spelled as U+2581 as llama.cpp expects."""
    by_id = {i: t for t, i in vocab.items()}
    tokens, scores, types = [], [], []
    for i in range(max(by_id, default=-1) + 1):
        text = by_id.get(i)
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.UNKNOWN if added[i]["content"] == unknown else gguf.TokenType.CONTROL)
            scores.append(-1000.0)
            continue
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            scores.append(-1000.0)
            continue
        if len(text) != 1 or text == "\u2581":
            raise GgufError(f"token {i} ({text!r}) is not one character: a word-level vocabulary cannot be written "
                            "as GGUF")
        tokens.append("\u2581" if text == " " else text)
        types.append(gguf.TokenType.NORMAL)
        scores.append(0.0)
    _pad(gguf, tokens, scores, types, n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_add_space_prefix(False)
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)


def _pad(gguf: Any, tokens: list, scores: list, types: list, n_vocab: int) -> None:
    if len(tokens) > n_vocab:
        raise GgufError(f"the tokenizer has {len(tokens)} tokens but the model only {n_vocab} embeddings")
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)


def _adds_special_tokens(tokenizer_dir: Path) -> tuple[bool, bool]:
    """Whether the tokenizer puts BOS before / EOS after a text: asked of the tokenizer itself."""
    from grpo_studio.engine.model import tokenizer_class

    tok = tokenizer_class(str(tokenizer_dir)).from_pretrained(str(tokenizer_dir))
    ids = tok("a")["input_ids"]
    bos = tok.bos_token_id is not None and bool(ids) and ids[0] == tok.bos_token_id
    eos = tok.eos_token_id is not None and bool(ids) and ids[-1] == tok.eos_token_id
    return bos, eos
