"""`grpo-studio eval`: greedy accuracy of a model (optionally + adapter) on the held-out split.

A completion is correct when the run's correctness reward (eval.correctness) scores it at least
eval.threshold. Every reward function's mean is reported too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import LoadedRun
from grpo_studio.engine.checks import correctness_function


class EvalError(Exception):
    pass


@dataclass
class EvalResult:
    accuracy: float
    n: int
    correct: int
    rewards: dict[str, float]
    correctness: str
    model: str
    adapter: str | None
    seconds: float
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, with_examples: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_examples:
            data.pop("examples")
        return data


def generate_greedy(model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int, batch_size: int,
                    progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Greedy completions for prompts (text or chat messages), in batches, left-padded."""
    import torch

    from grpo_studio.engine.data import prompt_token_ids

    eos = model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.insert(0, tokenizer.eos_token_id)
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [prompt_token_ids(p, tokenizer) for p in prompts[start:start + batch_size]]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, ids in enumerate(chunk):
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            attention[i, width - len(ids):] = 1
        with torch.inference_mode():
            generated = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), do_sample=False,
                max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
                temperature=None, top_p=None, top_k=None,
            )
        out += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        if progress:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    return out


def check_adapter(adapter: Path) -> None:
    """A clear EvalError for a folder that is not a whole PEFT adapter (before any model loads)."""
    from grpo_studio.engine.integrity import adapter_problem

    if not (adapter / "adapter_config.json").is_file():
        raise EvalError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    problem = adapter_problem(adapter)
    if problem:
        raise EvalError(f"{adapter}: {problem}; evaluate a checkpoint instead (--adapter RUN/checkpoints/"
                        "checkpoint-N), or rewrite the run's adapter with `grpo-studio train RUN --resume`")


def evaluate(run: LoadedRun, adapter: str | Path | None = None, limit: int = 0,
             progress: Callable[[int, int], None] | None = None) -> EvalResult:
    from grpo_studio.engine.data import load_prompts
    from grpo_studio.engine.model import load_tokenizer
    from grpo_studio.engine.rewards import close_rewards, load_rewards

    started = time.time()
    cfg = run.config
    if limit:
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"limit": limit})})
        run = LoadedRun(cfg, run.path, run.base_dir)
    if adapter is not None:
        check_adapter(Path(adapter))
    tokenizer = load_tokenizer(run)
    data = load_prompts(run, tokenizer, split="eval", check_length=False)
    ds = data.dataset
    all_specs = load_rewards(run, columns=list(ds.column_names))
    try:
        return _evaluate(run, cfg, tokenizer, ds, [s for s in all_specs if s.function is not None], adapter,
                         progress, started)
    finally:
        close_rewards(all_specs)


def _evaluate(run: LoadedRun, cfg: Any, tokenizer: Any, ds: Any, specs: list[Any], adapter: str | Path | None,
              progress: Callable[[int, int], None] | None, started: float) -> EvalResult:
    from grpo_studio.engine.model import choose_placement, load_model, skip_unused_bitsandbytes
    from grpo_studio.engine.trainer import message_text

    judge = correctness_function(run, [s.label for s in specs])
    if judge is None:
        raise EvalError("eval.correctness: no reward function decides correctness; set eval.correctness")
    placement = choose_placement(cfg.model)
    skip_unused_bitsandbytes(run, placement)  # before peft is imported for the adapter
    model = load_model(run, placement)
    if adapter is not None:
        adapter = Path(adapter)
        check_adapter(adapter)
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter))
        except Exception as exc:  # noqa: BLE001 - whole files that still do not fit this base model
            raise EvalError(f"{adapter}: cannot apply the adapter to {cfg.model.name!r}: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    if placement.device == "cpu":
        model.to("cpu")
    model.eval()
    prompts = list(ds["prompt"])
    completions = generate_greedy(model, tokenizer, prompts, cfg.grpo.max_completion_length,
                                  cfg.eval.batch_size, progress)
    columns = {c: list(ds[c]) for c in ds.column_names if c != "prompt"}
    scores: dict[str, list[float | None]] = {spec.label: [] for spec in specs}
    step = cfg.eval.batch_size  # one call per batch, as in training, so each stays under rewards.timeout_s
    for start in range(0, len(prompts), step):
        chunk = {c: v[start:start + step] for c, v in columns.items()}
        for spec in specs:
            scores[spec.label] += spec.function(prompts=prompts[start:start + step],
                                                completions=completions[start:start + step], **chunk)
    verdicts = [s is not None and s >= cfg.eval.threshold for s in scores[judge]]
    means = {name: _mean(vals) for name, vals in scores.items()}
    examples = [
        {"prompt": message_text(p), "completion": c, "answer": columns.get("answer", [None] * len(prompts))[i],
         "correct": verdicts[i]}
        for i, (p, c) in enumerate(zip(prompts, completions))
    ]
    return EvalResult(
        accuracy=sum(verdicts) / len(verdicts), n=len(verdicts), correct=sum(verdicts), rewards=means,
        correctness=judge, model=cfg.model.name, adapter=str(adapter) if adapter else None,
        seconds=time.time() - started, examples=examples,
    )


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else float("nan")
