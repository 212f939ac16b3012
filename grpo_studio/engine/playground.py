"""The playground: one prompt, answered by the base model and by a trained adapter side by side,
tokens streamed as they come, each answer scored by the run's reward functions.

A `PlaygroundSession` loads the run's tokenizer, base model and reward functions once (the reward
file runs in its sandbox process when rewards.isolate is on, as in training) and keeps them for
many prompts. Both answers come from ONE generate call: PEFT's mixed-adapter batches run row 0
without the adapter (`__base__`) and row 1 with it, so the two stream in together and cost one
pass per token. Prompts go through the run's prompt template, system prompt and chat template,
exactly as in training (`data.format_row`).

Qt-free; the window runs it in a child process (engine/child_tasks.py, the `playground` task).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from grpo_studio.engine.evaluate import EvalError, check_adapter

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch
ROWS_OFFERED = 200


@dataclass
class Answer:
    label: str
    text: str = ""
    tokens: int = 0
    truncated: bool = False
    rewards: dict[str, float | None] = field(default_factory=dict)
    reward_errors: dict[str, str] = field(default_factory=dict)
    total: float | None = None


class _SideBySideStreamer:
    """transformers' streamer interface for a batch: each row's new text, decoded as it grows.

    Decoding the whole row each time (not token by token) keeps multi-byte characters and
    tokenizers that merge spaces right; text ending in an incomplete character waits a token."""

    def __init__(self, tokenizer: Any, eos_ids: set[int], rows: int, send: Callable[[list[str]], None]):
        self.tokenizer, self.eos_ids, self.send = tokenizer, eos_ids, send
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.shown = [""] * rows
        self.ended = [False] * rows
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        deltas = []
        for i, token in enumerate(value.reshape(len(self.ids), -1)[:, -1].tolist()):
            if self.ended[i] or token in self.eos_ids:
                self.ended[i] = True
                deltas.append("")
                continue
            self.ids[i].append(token)
            text = self.tokenizer.decode(self.ids[i], skip_special_tokens=True)
            if text.endswith("\ufffd") or not text.startswith(self.shown[i]):
                deltas.append("")  # half a character, or a decoding that changed its past: wait
                continue
            deltas.append(text[len(self.shown[i]):])
            self.shown[i] = text
        if any(deltas):
            self.send(deltas)

    def end(self) -> None:
        pass


class PlaygroundSession:
    def __init__(self, run_dir: str | Path, adapter: str | None = None, *, overrides: list[str] | None = None,
                 progress: Callable[[str, float], None] | None = None):
        from grpo_studio.config import load_run
        from grpo_studio.engine.eval_compare import adapter_choices, resolve_adapter
        from grpo_studio.engine.evaluate import load_eval_model
        from grpo_studio.engine.model import load_tokenizer
        from grpo_studio.engine.store import RunFolder

        say = progress or (lambda message, fraction: None)
        self.folder = RunFolder(run_dir)
        if not self.folder.is_run():
            raise EvalError(f"{run_dir}: not a run folder (no config.toml)")
        self.run = load_run(self.folder.config, overrides)
        self.cfg = self.run.config
        self.adapters = dict(adapter_choices(self.folder))
        if not self.adapters:
            raise EvalError(f"{self.folder.path.name} has no adapter yet: train it (or let it save a checkpoint) "
                            "to compare it with the base model")
        say("loading the tokenizer and the prompts", 0.1)
        self.tokenizer = load_tokenizer(self.run)
        self._load_rows()
        say("loading the reward functions", 0.3)
        self._load_rewards()
        say("loading the base model", 0.5)
        model = load_eval_model(self.run)
        self.device = str(next(model.parameters()).device)
        label, path = resolve_adapter(self.folder, adapter)
        from peft import PeftModel

        say(f"applying {label}", 0.9)
        self._names: dict[str, str] = {label: "a0"}  # PEFT module names: labels may hold dots
        self.model = PeftModel.from_pretrained(model, str(path), adapter_name="a0")
        self.model.eval()
        self.adapter = label
        self.stop = threading.Event()

    # ---- what is offered ----------------------------------------------------------------------
    def _load_rows(self) -> None:
        from grpo_studio.engine.data import DataError, load_prompts, use_chat_template

        try:
            data = load_prompts(self.run, self.tokenizer, split="eval", check_length=False)
            self.rows_from = "held-out split"
        except DataError:  # no held-out split: the training rows are better than none
            data = load_prompts(self.run, self.tokenizer, check_length=False)
            self.rows_from = "training data"
        self.dataset = data.dataset.select(range(min(ROWS_OFFERED, len(data.dataset))))
        self.columns = [c for c in self.dataset.column_names if c != "prompt"]
        self.chat = use_chat_template(self.cfg.data, self.tokenizer)

    def _load_rewards(self) -> None:
        from grpo_studio.engine.rewards import load_rewards

        self.specs = load_rewards(self.run, columns=list(self.dataset.column_names))

    def rows(self) -> list[tuple[int, str, str | None]]:
        """(index, the prompt column's text, ground truth) of the rows offered."""
        column = self.cfg.data.prompt_column
        texts = self.dataset[column] if column in self.dataset.column_names else [""] * len(self.dataset)
        answers = self.dataset["answer"] if "answer" in self.dataset.column_names else [None] * len(texts)
        return [(i, str(t), None if a is None else str(a)) for i, (t, a) in enumerate(zip(texts, answers))]

    # ---- one prompt ---------------------------------------------------------------------------
    def prompt_and_columns(self, text: str, row: int | None = None,
                           answer: str | None = None) -> tuple[Any, dict[str, Any]]:
        """The prompt as training builds it (template, system prompt, chat template) and the columns
        the reward functions get: the row's own when `text` is still that row's, else empty ones."""
        from grpo_studio.engine.data import format_row, template_fields

        settings = self.cfg.data
        if row is not None and 0 <= row < len(self.dataset) and \
                str(self.dataset[row].get(settings.prompt_column)) == text:
            values = dict(self.dataset[row])
        else:
            values = {c: None for c in self.columns}
            values.update({f: "" for f in template_fields(settings.prompt_template) if f != "prompt"})
            values[settings.prompt_column] = text
        if answer is not None and answer.strip():
            values["answer"] = answer.strip()
        prompt = format_row(values, settings, self.chat)
        values.pop("prompt", None)
        return prompt, values

    def use_adapter(self, label: str | None) -> None:
        if label is None or label == self.adapter:
            return
        if label not in self.adapters:
            raise EvalError(f"{label}: not an adapter of this run ({', '.join(self.adapters)})")
        if label not in self._names:
            check_adapter(self.adapters[label])  # a damaged one is said, not a traceback from PEFT
            self._names[label] = f"a{len(self._names)}"
            self.model.load_adapter(str(self.adapters[label]), adapter_name=self._names[label])
        self.model.set_adapter(self._names[label])
        self.adapter = label

    def sample(self, text: str, *, row: int | None = None, answer: str | None = None, temperature: float = 0.0,
               max_tokens: int = 64, on_text: Callable[[list[str]], None] | None = None) -> tuple[str, list[Answer]]:
        """Both models' answers to one prompt (base first), scored; `self.stop` ends it early."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        from grpo_studio.engine.data import prompt_token_ids, render_prompt

        prompt, columns = self.prompt_and_columns(text, row, answer)
        ids = prompt_token_ids(prompt, self.tokenizer)
        eos = self.model.generation_config.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        streamer = _SideBySideStreamer(self.tokenizer, eos_ids, 2, on_text or (lambda deltas: None))
        stop = self.stop
        stop.clear()

        class UserStop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids, ids], device=device)
        sampling = temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_tokens,
                do_sample=sampling, temperature=temperature if sampling else None, top_p=None, top_k=None,
                eos_token_id=sorted(eos_ids), pad_token_id=self.tokenizer.pad_token_id, streamer=streamer,
                stopping_criteria=StoppingCriteriaList([UserStop()]),
                adapter_names=[BASE, self._names[self.adapter]],
            )
        answers = []
        for i, label in enumerate(("base", self.adapter)):
            new = out[i, len(ids):].tolist()
            end = next((k for k, t in enumerate(new) if t in eos_ids), None)
            kept = new if end is None else new[:end]
            answers.append(Answer(label, self.tokenizer.decode(kept, skip_special_tokens=True),
                                  len(kept) + (0 if end is None else 1), truncated=end is None and not stop.is_set()))
        self.score(prompt, answers, columns)
        return render_prompt(prompt, self.tokenizer), answers

    def score(self, prompt: Any, answers: list[Answer], columns: dict[str, Any]) -> None:
        """Every reward function on every answer, as training calls them; a function that fails says why
        (a typed prompt has no ground truth, say) and the total is left out."""
        from grpo_studio.engine.rewards import RewardError

        n = len(answers)
        completions = [a.text for a in answers]
        batch = {c: [v] * n for c, v in columns.items()}
        no_truth = "answer" in columns and columns["answer"] is None
        for spec in self.specs:
            why = None
            if spec.function is None:
                why = "a reward model: scored in training only"
            elif no_truth and "answer" in getattr(getattr(spec.function, "signature", None), "params", ()):
                # Called with answer=None it would score 0 (or raise): a verdict it cannot give.
                why = "no ground truth: type the answer, or pick a dataset row"
            if why:
                for a in answers:
                    a.reward_errors[spec.label] = why
                continue
            try:
                values = spec.function(prompts=[prompt] * n, completions=completions, **batch)
            except RewardError as exc:
                reason = (exc.message or str(exc)).splitlines()[0].removeprefix(f"{spec.label} raised ")
                if no_truth:  # the likely cause, said plainly
                    reason = f"no ground truth: type the answer, or pick a dataset row ({reason})"
                for a in answers:
                    a.reward_errors[spec.label] = reason
                continue
            for a, v in zip(answers, values):
                a.rewards[spec.label] = v
        weights = {s.label: s.weight for s in self.specs}
        for a in answers:
            if a.reward_errors or not a.rewards:
                continue
            present = [(weights[k], v) for k, v in a.rewards.items() if v is not None]
            a.total = sum(w * v for w, v in present) if present else None

    def close(self) -> None:
        from grpo_studio.engine.rewards import close_rewards

        close_rewards(self.specs)

