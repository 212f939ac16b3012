"""`grpo-studio eval`: greedy accuracy of a model (optionally + adapter) on the held-out split.

A completion is correct when the run's correctness reward (eval.correctness) scores it at least
eval.threshold. It is well formatted when the run's format reward (eval.format, else the first
reward whose name contains 'format') scores it at least eval.format_threshold; a run without a
format reward falls back to data.answer_pattern found in the completion, and one without either
reports no format rate. Every reward function's mean is reported too.

`HeldOut` loads the split and the judges once, so several models (base, adapter, checkpoints) are
scored on exactly the same prompts: `eval_compare` builds on it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import LoadedRun
from grpo_studio.engine.checks import correctness_function, format_function
from grpo_studio.engine.error_text import first_line

Progress = Callable[[int, int], None]  # (prompts done, prompts in all)


class EvalError(Exception):
    pass


class EvalCancelled(Exception):
    """The caller's cancel check said stop (between two generation batches)."""


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
    format_rate: float | None = None  # None: the run has no format reward and no answer pattern
    mean_length: float = 0.0  # completion tokens, the end-of-sequence token included
    truncated_rate: float = 0.0  # completions cut at grpo.max_completion_length

    def to_json(self, with_examples: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_examples:
            data.pop("examples")
        return data


@dataclass
class Generation:
    text: str
    tokens: int  # generated tokens, up to and including the first end-of-sequence token
    truncated: bool  # stopped by max_new_tokens, not by an end-of-sequence token


def greedy_generations(model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int, batch_size: int,
                       progress: Progress | None = None) -> list[Generation]:
    """Greedy completions for prompts (text or chat messages), in batches, left-padded."""
    import torch

    from grpo_studio.engine.data import prompt_token_ids

    eos = model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.insert(0, tokenizer.eos_token_id)
    device = next(model.parameters()).device
    out: list[Generation] = []
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
        new = generated[:, width:].tolist()
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for ids, text in zip(new, texts):
            stop = next((i for i, t in enumerate(ids) if t in eos_ids), None)
            out.append(Generation(text, len(ids) if stop is None else stop + 1, stop is None))
        if progress:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    return out


class HeldOut:
    """The held-out split, the tokenizer and the reward functions that judge it, loaded once.
    Close it (or use it as a context manager): isolated reward functions run in a child process."""

    def __init__(self, run: LoadedRun, limit: int = 0):
        from grpo_studio.engine.data import load_prompts
        from grpo_studio.engine.model import load_tokenizer
        from grpo_studio.engine.rewards import close_rewards, load_rewards

        cfg = run.config
        if limit:
            cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"limit": limit})})
            run = LoadedRun(cfg, run.path, run.base_dir)
        self.run, self.cfg = run, cfg
        self.tokenizer = load_tokenizer(run)
        ds = load_prompts(run, self.tokenizer, split="eval", check_length=False).dataset
        self._all_specs = load_rewards(run, columns=list(ds.column_names))
        try:
            self.specs = [s for s in self._all_specs if s.function is not None]
            labels = [s.label for s in self.specs]
            self.judge = correctness_function(run, labels)
            if self.judge is None:
                raise EvalError("eval.correctness: no reward function decides correctness; set eval.correctness")
            self.format_judge = format_function(run, labels)
        except BaseException:
            close_rewards(self._all_specs)
            raise
        self.prompts = list(ds["prompt"])
        self.columns = {c: list(ds[c]) for c in ds.column_names if c != "prompt"}

    @property
    def format_rule(self) -> str | None:
        """How 'well formatted' is decided, in words (None: it is not measured)."""
        if self.format_judge:
            return f"{self.format_judge} >= {self.cfg.eval.format_threshold:g}"
        if self.cfg.data.answer_pattern:
            return f"data.answer_pattern {self.cfg.data.answer_pattern!r} found in the completion"
        return None

    def close(self) -> None:
        from grpo_studio.engine.rewards import close_rewards

        close_rewards(self._all_specs)

    def __enter__(self) -> "HeldOut":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def score(self, model: Any, adapter: str | Path | None = None, progress: Progress | None = None) -> EvalResult:
        """Greedy completions of `model` for every held-out prompt, judged by the run's rewards."""
        from grpo_studio.engine.trainer import message_text

        started = time.time()
        cfg, prompts, columns = self.cfg, self.prompts, self.columns
        generations = greedy_generations(model, self.tokenizer, prompts, cfg.grpo.max_completion_length,
                                         cfg.eval.batch_size, progress)
        completions = [g.text for g in generations]
        scores: dict[str, list[float | None]] = {spec.label: [] for spec in self.specs}
        step = cfg.eval.batch_size  # one call per batch, as in training, so each stays under rewards.timeout_s
        for start in range(0, len(prompts), step):
            chunk = {c: v[start:start + step] for c, v in columns.items()}
            for spec in self.specs:
                scores[spec.label] += spec.function(prompts=prompts[start:start + step],
                                                    completions=completions[start:start + step], **chunk)
        verdicts = [s is not None and s >= cfg.eval.threshold for s in scores[self.judge]]
        formats = self._format_verdicts(completions, scores)
        answers = columns.get("answer", [None] * len(prompts))
        examples = [
            {"prompt": message_text(p), "completion": c, "answer": answers[i], "correct": verdicts[i],
             "format_ok": None if formats is None else formats[i], "length": generations[i].tokens,
             "truncated": generations[i].truncated, "rewards": {name: vals[i] for name, vals in scores.items()}}
            for i, (p, c) in enumerate(zip(prompts, completions))
        ]
        n = len(verdicts)
        return EvalResult(
            accuracy=sum(verdicts) / n, n=n, correct=sum(verdicts),
            rewards={name: _mean(vals) for name, vals in scores.items()}, correctness=self.judge,
            model=cfg.model.name, adapter=str(adapter) if adapter else None, seconds=time.time() - started,
            examples=examples, format_rate=None if formats is None else sum(formats) / n,
            mean_length=sum(g.tokens for g in generations) / n,
            truncated_rate=sum(g.truncated for g in generations) / n,
        )

    def _format_verdicts(self, completions: list[str], scores: dict[str, list[float | None]]) -> list[bool] | None:
        if self.format_judge:
            return [s is not None and s >= self.cfg.eval.format_threshold for s in scores[self.format_judge]]
        if self.cfg.data.answer_pattern:
            pattern = re.compile(self.cfg.data.answer_pattern, re.MULTILINE)
            return [pattern.search(c) is not None for c in completions]
        return None


def load_eval_model(run: LoadedRun) -> Any:
    """The run's base model, placed for inference."""
    from grpo_studio.engine.model import choose_placement, load_model, skip_unused_bitsandbytes

    placement = choose_placement(run.config.model)
    skip_unused_bitsandbytes(run, placement)  # before peft is imported for the adapter
    model = load_model(run, placement)
    if placement.device == "cpu":
        model.to("cpu")
    model.eval()
    return model


def check_adapter(adapter: Path) -> None:
    """A clear EvalError for a folder that is not a whole PEFT adapter (before any model loads)."""
    from grpo_studio.engine.integrity import adapter_problem

    if not (adapter / "adapter_config.json").is_file():
        raise EvalError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
    problem = adapter_problem(adapter)
    if problem:
        raise EvalError(f"{adapter}: {problem}; evaluate a checkpoint instead (--adapter RUN/checkpoints/"
                        "checkpoint-N), or rewrite the run's adapter with `grpo-studio train RUN --resume`")


def apply_adapter(model: Any, adapter: str | Path) -> Any:
    """The model with a PEFT adapter folder applied (the base model's modules are changed in place)."""
    adapter = Path(adapter)
    check_adapter(adapter)
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(model, str(adapter))
    except Exception as exc:  # noqa: BLE001 - whole files that still do not fit this base model
        raise EvalError(f"{adapter}: cannot apply the adapter to the base model: "
                        f"{first_line(exc)}") from None
    model.eval()
    return model


def evaluate(run: LoadedRun, adapter: str | Path | None = None, limit: int = 0,
             progress: Progress | None = None) -> EvalResult:
    if adapter is not None:
        check_adapter(Path(adapter))  # a damaged adapter is said before anything loads
    with HeldOut(run, limit) as held_out:
        model = load_eval_model(held_out.run)
        if adapter is not None:
            model = apply_adapter(model, adapter)
        return held_out.score(model, adapter, progress)


def _mean(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else float("nan")
