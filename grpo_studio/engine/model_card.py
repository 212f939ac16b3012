"""The README.md of every export: what this model is, how it was trained, how well it does, how
to load it.

Everything comes from the run folder: the frozen run file (config.toml) and reward file, the run
store (steps trained, the last rewards) and the stored held-out comparisons (RUN_DIR/evals/). The
YAML header is the Hugging Face Hub's model-card metadata, so a pushed export is tagged and linked
to its base model.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from grpo_studio.config import LoadedRun, load_run
from grpo_studio.engine.store import RunFolder, RunStore

Kind = Literal["adapter", "merged", "gguf"]


def write_model_card(dest: str | Path, run_dir: str | Path, kind: Kind, *, adapter: str | Path | None = None,
                     gguf_file: str | None = None, repo_id: str | None = None) -> Path:
    """Write DEST/README.md (replacing PEFT's empty template) and return its path."""
    path = Path(dest) / "README.md"
    path.write_text(model_card(run_dir, kind, adapter=adapter, gguf_file=gguf_file, repo_id=repo_id),
                    encoding="utf-8")
    return path


def model_card(run_dir: str | Path, kind: Kind, *, adapter: str | Path | None = None, gguf_file: str | None = None,
               repo_id: str | None = None) -> str:
    folder = RunFolder(run_dir)
    run = load_run(folder.config)
    cfg = run.config
    adapter_path = Path(adapter) if adapter else None
    label = _adapter_label(folder, adapter_path)
    progress = _training_progress(folder)
    base = cfg.model.name
    hub_base = _is_hub_id(run)
    title = f"{cfg.run.name}: {Path(base).name if not hub_base else base} + GRPO"
    what = {"adapter": "a LoRA adapter (PEFT format) for", "merged": "the full model: the LoRA adapter merged into",
            "gguf": f"a GGUF file ({gguf_file or 'model.gguf'}) for llama.cpp, Ollama and LM Studio: the LoRA "
                    "adapter merged into"}[kind]
    trained = "The adapter was" if cfg.lora.enabled else "It was"
    if not cfg.lora.enabled:  # every weight trained: no adapter, the folder holds the whole model
        what = "a full fine-tune of" if kind != "gguf" else (
            f"a GGUF file ({gguf_file or 'model.gguf'}) for llama.cpp, Ollama and LM Studio: a full fine-tune of")
    parts = [
        _front_matter(run, kind, hub_base),
        f"# {title}\n",
        f"This is {what} `{base}`. {trained} trained with GRPO (Group Relative Policy Optimization: TRL's "
        f"`GRPOTrainer`) in GRPO Studio for {progress['summary']}.\n",
        _held_out_section(folder, label, kind),
        _training_section(run, progress),
        _usage_section(run, kind, gguf_file, repo_id),
        _run_file_section(folder),
    ]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


# ---- sections -------------------------------------------------------------------------------------


def _front_matter(run: LoadedRun, kind: Kind, hub_base: bool) -> str:
    lines = ["---"]
    if hub_base:
        lines.append(f"base_model: {run.config.model.name}")
    lines.append({"adapter": "library_name: peft", "merged": "library_name: transformers",
                  "gguf": "library_name: gguf"}[kind])
    lines.append("pipeline_tag: text-generation")
    tags = ["grpo", "trl", "grpo-studio"] + (["lora"] if run.config.lora.enabled else []) + (
        ["gguf"] if kind == "gguf" else [])
    lines.append("tags:")
    lines += [f"- {t}" for t in tags]
    if not run.config.data.source.startswith(("/", ".", "~")) and not Path(run.config.data.source).suffix:
        lines += ["datasets:", f"- {run.config.data.source}"]
    lines.append("---\n")
    return "\n".join(lines)


def _held_out_section(folder: RunFolder, label: str | None, kind: Kind) -> str:
    from grpo_studio.engine.eval_compare import latest_eval

    result = latest_eval(folder.path, label) if label else None
    if result is None:
        return ("## Held-out result\n\nNot measured yet. `grpo-studio eval RUN_DIR --compare-base` scores the base "
                "model and the adapter on the run's held-out split; exports made after it include the result.\n")
    b, t = result.base, result.tuned

    def pct(x: float | None) -> str:
        return "not measured" if x is None else f"{x:.1%}"

    when = datetime.fromtimestamp(result.created).strftime("%Y-%m-%d")
    return "\n".join([
        "## Held-out result\n",
        f"Greedy decoding on {t.n} held-out prompts{' (the first ' + str(result.limit) + ')' if result.limit else ''}, "
        f"measured {when}" + (" on the adapter in PyTorch, before the conversion to GGUF" if kind == "gguf" else "")
        + f". Correct means `{result.correctness}`; well formatted means `{result.format_rule or 'not measured'}`.\n",
        "| | base model | this model |",
        "|---|---|---|",
        f"| accuracy | {pct(b.accuracy)} ({b.correct}/{b.n}) | {pct(t.accuracy)} ({t.correct}/{t.n}) |",
        f"| format rate | {pct(b.format_rate)} | {pct(t.format_rate)} |",
        f"| mean completion length (tokens) | {b.mean_length:.1f} | {t.mean_length:.1f} |",
        "",
        f"Training fixed {result.counts['fixed']} answers and broke {result.counts['broken']} "
        f"({result.counts['both_right']} right before and after, {result.counts['both_wrong']} wrong before and "
        "after).\n",
    ])


def _training_section(run: LoadedRun, progress: dict[str, Any]) -> str:
    cfg = run.config
    g, lo, d = cfg.grpo, cfg.lora, cfg.data
    lines = ["## Training\n"]
    if lo.enabled:
        targets = lo.target_modules if isinstance(lo.target_modules, str) else ", ".join(lo.target_modules)
        lines.append(f"- **LoRA**: rank {lo.r}, alpha {lo.alpha:g}, dropout {lo.dropout:g}, on {targets}"
                     + (", rank-stabilized" if lo.use_rslora else "")
                     + (f"; trained in full: {', '.join(lo.modules_to_save)}" if lo.modules_to_save else ""))
    else:
        lines.append("- **Full fine-tuning** (every weight trained)")
    if cfg.quantization.load_in != "16bit":
        lines.append(f"- **Base weights** loaded in {cfg.quantization.load_in} ({cfg.quantization.quant_type}, "
                     "bitsandbytes: QLoRA)")
    lines.append(f"- **Steps**: {progress['steps']}")
    rewards = [f"`{f.label}` x {f.weight:g}" for f in cfg.rewards.functions] or [
        f"every function ending in `_reward` in {cfg.rewards.file}"]
    lines.append(f"- **Rewards** (weighted sum): {', '.join(rewards)}")
    if progress.get("last_rewards"):
        lines.append(f"- **Rewards at the last logged step**: {progress['last_rewards']}")
    source = d.source + (f" ({d.subset})" if d.subset else "") + (f", split {d.split}" if d.split else "")
    lines.append(f"- **Dataset**: {source}; prompt column `{d.prompt_column}`"
                 + (f", ground truth `{d.answer_column}`" if d.answer_column else "")
                 + (f" (extracted by `{d.answer_pattern}`)" if d.answer_pattern else "")
                 + ("; with a system prompt" if d.system_prompt else ""))
    lines.append(f"- **GRPO**: {g.num_generations} completions per prompt, batch {g.per_device_train_batch_size} "
                 f"completions x {g.gradient_accumulation_steps} accumulation steps, learning rate {g.learning_rate:g} "
                 f"({g.lr_scheduler_type}, warmup {g.warmup_ratio:g}), optimizer {g.optimizer}, beta (KL) {g.beta:g}, "
                 f"epsilon {g.epsilon:g}, loss {g.loss_type}, advantages scaled by {g.scale_rewards}, temperature "
                 f"{g.temperature:g}, max completion {g.max_completion_length} tokens, seed {g.seed}")
    return "\n".join(lines) + "\n"


def _usage_section(run: LoadedRun, kind: Kind, gguf_file: str | None, repo_id: str | None) -> str:
    where = repo_id or "path/to/this/folder"
    base = run.config.model.name
    chat = run.config.data.chat_template != "off"
    if kind == "adapter":
        code = (f'from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n'
                f'model = AutoPeftModelForCausalLM.from_pretrained("{where}")  # loads {base} and applies the adapter\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n\n')
        extra = ("`model.merge_and_unload()` folds the adapter into the weights; `grpo-studio export RUN_DIR --merged` "
                 "writes that as a plain transformers model.\n")
        if not _is_hub_id(run):
            extra += ("The base model is a local folder: `base_model_name_or_path` in adapter_config.json points at "
                      "it; change it there if the folder moves.\n")
    elif kind == "merged":
        code = (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
                f'model = AutoModelForCausalLM.from_pretrained("{where}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n\n')
        extra = ""
    else:
        name = gguf_file or "model.gguf"
        return "\n".join([
            "## How to use it\n",
            "llama.cpp:\n",
            "```bash",
            f'llama-cli -m {name} -p "your prompt" -n 256 --temp 0' + (" -cnv" if chat else ""),
            f"llama-server -m {name}   # an OpenAI-compatible server on port 8080",
            "```\n",
            "Ollama:\n",
            "```bash",
            f'printf "FROM ./{name}\\nPARAMETER temperature 0\\n" > Modelfile',
            f"ollama create {run.config.run.name} -f Modelfile && ollama run {run.config.run.name}",
            "```\n",
            "LM Studio: put the file in a folder under its models directory.\n",
            "Python (llama-cpp-python):\n",
            "```python",
            "from llama_cpp import Llama\n",
            f'llm = Llama(model_path="{name}")',
            'print(llm("your prompt", max_tokens=256, temperature=0)["choices"][0]["text"])',
            "```\n",
        ])
    generate = ("messages = [{\"role\": \"user\", \"content\": \"your prompt\"}]\n"
                "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\","
                " return_dict=True)\n" if chat else 'inputs = tokenizer("your prompt", return_tensors="pt")\n')
    code += generate + ("output = model.generate(**inputs, max_new_tokens=256, do_sample=False)\n"
                        "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))")
    prompt_note = ""
    if run.config.data.system_prompt or run.config.data.prompt_template != "{prompt}":
        prompt_note = ("It was trained on prompts written as `data.prompt_template` says, with `data.system_prompt` "
                       "(see the run file below): use the same for the best results.\n")
    return "\n".join(["## How to use it\n", "```python", code, "```\n", extra + prompt_note])


def _run_file_section(folder: RunFolder) -> str:
    parts = ["## The run file\n", "Exactly as trained (`grpo-studio train` reads it; local paths are the trainer's):\n",
             "```toml", folder.config.read_text(encoding="utf-8").rstrip(), "```\n"]
    if folder.rewards.is_file():
        parts += ["<details><summary>The reward functions (rewards.py)</summary>\n", "```python",
                  folder.rewards.read_text(encoding="utf-8").rstrip(), "```\n", "</details>\n"]
    return "\n".join(parts)


# ---- facts from the run folder ------------------------------------------------------------------------


def _adapter_label(folder: RunFolder, adapter: Path | None) -> str | None:
    from grpo_studio.engine.eval_compare import adapter_label

    if adapter is None:
        from grpo_studio.engine.export import ExportError, adapter_source

        try:
            adapter = adapter_source(folder)
        except ExportError:
            return None
    return adapter_label(folder, adapter)


def _training_progress(folder: RunFolder) -> dict[str, Any]:
    """Steps trained and the last rewards, from the run store (if it can be read)."""
    info: dict[str, Any] = {"steps": "unknown", "summary": "an unknown number of steps"}
    if not folder.database.is_file():
        return info
    try:
        with RunStore(folder.database, readonly=True) as store:
            meta = store.meta()
            last = store.last_step()
            names = meta.get("reward_names") or []
            wanted = [f"rewards/{n}/mean" for n in names] + ["reward"]
            values = {name: vals[-1] for name, (_, vals) in store.metrics(wanted, after_step=last - 1).items()}
    except Exception:  # noqa: BLE001 - a damaged store costs the card a line, not the export
        return info
    status = meta.get("status", "")
    max_steps = meta.get("max_steps")
    info["steps"] = f"{last} of {max_steps}" if max_steps and last < max_steps else str(last)
    if status == "stopped":
        info["steps"] += " (stopped early)"
    info["summary"] = f"{last} steps"
    shown = [f"{n} {values[f'rewards/{n}/mean']:.3f}" for n in names if f"rewards/{n}/mean" in values]
    if "reward" in values:
        shown.append(f"total {values['reward']:.3f}")
    info["last_rewards"] = ", ".join(shown)
    return info


def _is_hub_id(run: LoadedRun) -> bool:
    name = run.config.model.name
    return not Path(name).is_absolute() and not run.resolve(name).exists() and name.count("/") == 1


def card_metadata(readme: str) -> dict[str, Any]:
    """The YAML header's simple `key: value` lines (for tests and checks; lists are left out)."""
    head = readme.split("---", 2)[1] if readme.startswith("---") else ""
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in head.splitlines() if ": " in line)}

