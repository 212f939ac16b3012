"""Does llama.cpp itself read our GGUF files right? A benchmark-style check, not a CI test: it needs
a llama.cpp binding, which CI does not install.

    python tests/engine/measure_gguf_llamacpp.py RUN_DIR FILE.gguf [--prompts 32] [--new-tokens 64]

For the first N held-out prompts of the run it compares llama.cpp with the merged model in
transformers (float32): the prompt's token ids (llama.cpp's tokenizer from the GGUF vs. the
model's own), the greedy completion token for token (llama.cpp's logits argmax vs. transformers'
greedy `generate`), and llama.cpp's detokenized text. Exit status 1 when anything differs.

The binding is llama-cpp-python (`pip install llama-cpp-python`: it compiles llama.cpp, well over
half an hour on two busy cores). Its Python package also runs on a libllama built apart from its own
vendored llama.cpp (`cmake --build build --target llama`) and named by LLAMA_CPP_LIB_PATH.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def llama_cpp_greedy(llm, ids: list[int], new_tokens: int, eos: set[int]) -> list[int]:
    """Greedy decoding in llama.cpp: the argmax of the last position's logits, one token at a time."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(new_tokens):
        token = int(llm.scores[llm.n_tokens - 1].argmax())
        out.append(token)
        if token in eos:
            break
        llm.eval([token])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("gguf")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    import torch
    from llama_cpp import Llama

    from grpo_studio.config import load_run
    from grpo_studio.engine.data import load_prompts, prompt_token_ids
    from grpo_studio.engine.export import adapter_source
    from grpo_studio.engine.export import merged_model
    from grpo_studio.engine.model import load_tokenizer
    from grpo_studio.engine.store import RunFolder

    torch.set_num_threads(1)
    folder = RunFolder(args.run_dir)
    run = load_run(folder.config, [f"eval.limit={args.prompts}"])
    tokenizer = load_tokenizer(run)
    prompts = list(load_prompts(run, tokenizer, split="eval", check_length=False).dataset["prompt"])
    model = merged_model(run, adapter_source(folder)).float().eval()
    eos = {tokenizer.eos_token_id} | set(
        [model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int)
        else (model.generation_config.eos_token_id or []))
    llm = Llama(model_path=args.gguf, n_ctx=512, n_batch=512, n_threads=1, logits_all=True, verbose=False)
    print(f"{Path(args.gguf).name}: llama.cpp vocabulary {llm.n_vocab()}, model {model.config.vocab_size}")

    same_ids = same_tokens = same_text = 0
    started = time.time()
    for prompt in prompts:
        text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(prompt, tokenize=False,
                                                                                    add_generation_prompt=True)
        ids = prompt_token_ids(prompt, tokenizer)
        cpp_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        same_ids += cpp_ids == ids
        with torch.no_grad():
            hf = model.generate(torch.tensor([ids]), max_new_tokens=args.new_tokens, do_sample=False,
                                eos_token_id=sorted(eos), pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
        while hf and hf[-1] == tokenizer.pad_token_id and tokenizer.pad_token_id not in eos:
            hf.pop()
        cpp = llama_cpp_greedy(llm, ids, args.new_tokens, eos)
        same_tokens += cpp == hf
        hf_text = tokenizer.decode(hf, skip_special_tokens=True)
        cpp_text = llm.detokenize([t for t in cpp if t not in eos]).decode("utf-8", errors="replace")
        same_text += cpp_text == hf_text
        if cpp != hf or cpp_ids != ids:
            print(f"  differs: {text!r}\n    transformers {hf_text!r}\n    llama.cpp    {cpp_text!r}")
    n = len(prompts)
    print(f"prompt token ids equal: {same_ids}/{n}; greedy completions equal token for token: {same_tokens}/{n}; "
          f"detokenized text equal: {same_text}/{n} ({time.time() - started:.1f}s)")
    if n:
        first = llama_cpp_greedy(llm, prompt_token_ids(prompts[0], tokenizer), args.new_tokens, eos)
        shown = llm.detokenize([t for t in first if t not in eos]).decode("utf-8", errors="replace")
        print(f"  e.g. {prompts[0]!r} -> {shown!r}")
    return 0 if same_ids == same_tokens == same_text == n else 1


if __name__ == "__main__":
    sys.exit(main())
