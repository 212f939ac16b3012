"""GGUF export, proved with a reader that is not our writer: transformers' own GGUF loading
(`from_pretrained(..., gguf_file=...)`) must give the merged model's logits and greedy answers."""

from __future__ import annotations

import sys

import pytest
import tiny
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from grpo_studio.config import load_run
from grpo_studio.engine.export import adapter_source, merged_model
from grpo_studio.engine.gguf_export import (
    GgufCancelled,
    GgufError,
    check_architecture,
    export_gguf,
    write_gguf,
)
from grpo_studio.engine.store import RunFolder

PROMPTS = ["3+4=", "9+9=", "0+7=", "What is 12+35?"]


def merged_reference(run_dir, precision="f32"):
    """The merged model as the GGUF type stores it: f16 rounds every matrix, keeps 1-D tensors."""
    folder = RunFolder(run_dir)
    model = merged_model(load_run(folder.config), adapter_source(folder)).float().eval()
    if precision == "f16":
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.copy_(p.half().float())
    return model


def load_gguf(path):
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def same_answers(reference, candidate, tokenizer, prompts=PROMPTS, new_tokens=12):
    """Greedy completions token for token, and the largest logit difference on the prompts."""
    worst = 0.0
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            worst = max(worst, (reference(ids).logits - candidate(ids).logits).abs().max().item())
        a, b = (m.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)[0].tolist() for m in (reference, candidate))
        assert a == b, (prompt, a, b)
    return worst


@pytest.fixture
def llama_run(run_file, tmp_path):
    return tiny.make_run_folder(run_file, tmp_path / "run")


def test_llama_char_vocab_f32_f16_q8_0(llama_run, tmp_path):
    steps = []
    path = export_gguf(llama_run, tmp_path / "gguf", "f32", progress=lambda what, f: steps.append(f))
    assert path == tmp_path / "gguf" / "tiny-f32.gguf" and steps[-1] == 1.0 and steps == sorted(steps)
    card = (tmp_path / "gguf" / "README.md").read_text()
    assert "library_name: gguf" in card and "llama-cli -m tiny-f32.gguf" in card and "ollama create" in card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gguf", "project", "run"]  # no staging folder left

    reference = merged_reference(llama_run)
    model, gguf_tokenizer = load_gguf(path)
    tokenizer = AutoTokenizer.from_pretrained(load_run(llama_run / "config.toml").config.model.name)
    assert same_answers(reference, model, tokenizer) == 0.0  # f32: the very same numbers
    # The vocabulary comes back piece for piece (a space is sentencepiece's U+2581). transformers' reader
    # puts a space before every text of a sentencepiece vocabulary, ignoring the file's
    # add_space_prefix = false, which llama.cpp honours; past that first token the ids agree.
    assert [t.replace("\u2581", " ") for t in gguf_tokenizer.convert_ids_to_tokens(range(len(tokenizer)))] == \
        tokenizer.convert_ids_to_tokens(range(len(tokenizer)))
    for text in PROMPTS + ["a b  c\nd"]:
        assert gguf_tokenizer(text)["input_ids"][1:] == tokenizer(text)["input_ids"]

    f16 = export_gguf(llama_run, tmp_path / "gguf16", "f16")
    model16, _ = load_gguf(f16)
    assert same_answers(merged_reference(llama_run, "f16"), model16, tokenizer) < 1e-4
    q8 = export_gguf(llama_run, tmp_path / "gguf8", "q8_0")
    assert q8.stat().st_size < 0.6 * f16.stat().st_size
    model8, _ = load_gguf(q8)
    with torch.no_grad():
        ids = torch.tensor([tokenizer("5+5=")["input_ids"]])
        assert (reference(ids).logits - model8(ids).logits).abs().max() < 0.05  # 8-bit blocks: close, not equal


def test_qwen2_byte_level_bpe_tokenizer_and_weights(tmp_path):
    model_dir = tiny.build_arch_model(tmp_path / "qwen2", "qwen2")
    run_dir = tiny.make_run_folder(tiny.write_run(tmp_path / "project", model_dir), tmp_path / "run")
    path = export_gguf(run_dir, tmp_path / "gguf", "f32")
    model, gguf_tokenizer = load_gguf(path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for text in PROMPTS + ["Natalia sold 48 clips.\n\nhéllo wörld  <|im_start|>user", "<answer>\n72\n</answer>"]:
        assert gguf_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"], text
        assert gguf_tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert same_answers(merged_reference(run_dir), model, tokenizer) == 0.0


@pytest.mark.parametrize("arch", ["qwen3", "mistral", "llama"])
def test_other_architectures_write_exact_tensors(arch, tmp_path):
    """Qwen3's q/k norms and head_dim, Mistral and Llama with grouped-query attention (q/k permuted
    with different head counts), Llama with an untied output matrix."""
    folder = tiny.build_arch_model(tmp_path / arch, arch)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    # (a name with 'mistral' in it sends transformers' GGUF reader down a path that fails; llama.cpp reads it)
    path = write_gguf(model, folder, tmp_path / f"{arch}.gguf", "f32", name="tiny")
    loaded, _ = load_gguf(path)
    assert same_answers(model, loaded, AutoTokenizer.from_pretrained(folder)) < 1e-5


def test_unsupported_model_and_missing_package(llama_run, tmp_path, monkeypatch, capsys):
    with pytest.raises(GgufError, match="GGUF export knows LlamaForCausalLM.*this model is GPT2LMHeadModel"):
        check_architecture({"architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(GgufError, match="choose one of f32, f16, bf16, q8_0"):
        export_gguf(llama_run, tmp_path / "x", "q4_k_m")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("grpo_studio.engine.gguf_export.write_gguf", fail)
    with pytest.raises(RuntimeError):
        export_gguf(llama_run, tmp_path / "out", "f16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "run"]  # nothing half-written

    with pytest.raises(GgufCancelled):
        export_gguf(llama_run, tmp_path / "out", "f16", cancelled=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "run"]

    monkeypatch.setitem(sys.modules, "gguf", None)  # as if it were not installed
    from grpo_studio.cli import main

    assert main(["export", str(llama_run), "--gguf", "--to", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'grpo-studio[gguf]'" in err and "Traceback" not in err
    assert not (tmp_path / "g").exists()
