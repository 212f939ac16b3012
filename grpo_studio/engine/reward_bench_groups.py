"""Where the reward bench's completions come from, grouped as GRPO groups.

Typed: completions the user wrote (the editor, or a JSONL file), one per line; lines with the same
row form a group:

    {"row": 0, "completion": "... #### 18"}       row: 0-based row of data.source; its prompt and columns
    {"question": "2+2?", "answer": "4", "completion": "4"}   no row: the line is a row of its own, with
                                                  the dataset's columns (prompt_column, answer_column...)

Generated: a seeded sample of rows x grpo.num_generations completions sampled from the run's model
with the run's generation settings, as training will sample them.

Either way a `Group` carries what a reward function is called with, in TRL's shapes: the prompt
(text, or chat messages), completions (text, or [{"role": "assistant", ...}] for chat prompts),
completion_ids, and the row's columns.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from grpo_studio.config import LoadedRun
from grpo_studio.engine.data import DataError, read_jsonl
from grpo_studio.engine.model import ModelError

Progress = Callable[[str, float], None]


@dataclass
class TypedCompletion:
    """A completion the user wrote, for a row of the dataset or for a row of its own."""

    completion: str
    row: int | None = None
    columns: dict[str, Any] | None = None
    file: str | None = None  # where it was read from, for messages
    line: int | None = None


def read_completions(path: str | Path) -> list[TypedCompletion]:
    """Parse a completions file (the format is in the module docstring); errors are `FILE:LINE: reason`."""
    path = Path(path)
    out = []
    try:
        lines = list(read_jsonl(path))
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read: {exc}", file=path) from None
    for number, item in lines:
        if not isinstance(item.get("completion"), str):
            raise DataError('expected an object with a "completion" string', file=path, line=number)
        completion = item.pop("completion")
        row = item.pop("row", None)
        if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 0):
            raise DataError(f'"row" must be a row number (0 or more), got {row!r}', file=path, line=number)
        if row is None and not item:
            raise DataError('give "row" (a row of data.source) or the row\'s columns', file=path, line=number)
        out.append(TypedCompletion(completion, row=row, columns=item if row is None else None, file=str(path),
                                   line=number))
    if not out:
        raise DataError("no completions in the file", file=path)
    return out


@dataclass
class BenchGroup:
    """One prompt and its completions (a GRPO group)."""

    row: int | None  # row of data.source (0-based); None for a row typed in the completions file
    prompt: str
    answer: str | None
    completions: list[str]
    totals: list[float | None] = field(default_factory=list)  # weighted sum, as the trainer computes it


@dataclass
class Group:
    """A group with everything a reward function is called with."""

    shown: BenchGroup  # what the report shows
    prompt: Any  # text, or chat messages
    completions: list[Any]  # text, or [{"role": "assistant", "content": ...}] for chat prompts
    completion_ids: list[list[int]]
    columns: dict[str, Any]  # the row's other columns (answer, ...)


def load_rows(run: LoadedRun, typed: bool, warn: Callable[[str], None], say: Progress) -> tuple[Any, Any]:
    """The tokenizer (optional for typed completions) and the dataset, mapped as for training."""
    from grpo_studio.engine.data import load_prompts
    from grpo_studio.engine.model import load_tokenizer

    say("loading the tokenizer and the data", 0.0)
    try:
        tokenizer = load_tokenizer(run)
    except ModelError as exc:
        if not typed:
            raise
        tokenizer = None
        warn(f"{exc}; prompts are built without the model's tokenizer (no chat template) and "
             "completion_ids are empty")
    return tokenizer, load_prompts(run, tokenizer, check_length=False).dataset


def _row_columns(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "prompt"}


def typed_groups(run: LoadedRun, data: Any, tokenizer: Any, typed: list[TypedCompletion]) -> list[Group]:
    """Typed completions grouped by their row, in order of first appearance."""
    from grpo_studio.engine.data import extract_answer, format_row, use_chat_template

    settings = run.config.data
    chat = use_chat_template(settings, tokenizer)
    pattern = None
    if settings.answer_pattern:
        import re

        pattern = re.compile(settings.answer_pattern, re.MULTILINE | re.DOTALL)
    keyed: dict[str, tuple[int | None, Any, dict[str, Any], list[str]]] = {}
    for item in typed:
        if item.row is not None:
            if item.row >= len(data):
                raise DataError(f"row {item.row} is out of range: data.source has {len(data)} rows (0 to "
                                f"{len(data) - 1})", file=item.file, line=item.line)
            key = f"row {item.row}"
            if key not in keyed:
                row = data[item.row]
                keyed[key] = (item.row, row["prompt"], _row_columns(row), [])
        else:
            columns = dict(item.columns or {})
            key = json.dumps(columns, sort_keys=True, default=str)
            if key not in keyed:
                prompt = format_row(columns, settings, chat)
                if settings.answer_column:
                    raw = columns.get(settings.answer_column)
                    # A typed row may give the bare answer ("18") where the dataset has "#### 18".
                    columns["answer"] = extract_answer(raw, pattern) or extract_answer(raw, None)
                keyed[key] = (None, prompt, columns, [])
        keyed[key][3].append(item.completion)
    return [_group(row, prompt, columns, texts, tokenizer) for row, prompt, columns, texts in keyed.values()]


def _group(row: int | None, prompt: Any, columns: dict[str, Any], texts: list[str], tokenizer: Any,
           ids: list[list[int]] | None = None) -> Group:
    from grpo_studio.engine.data import render_prompt

    chat = isinstance(prompt, list)
    completions: list[Any] = [[{"role": "assistant", "content": t}] for t in texts] if chat else list(texts)
    if ids is None:
        ids = [tokenizer(text=t, add_special_tokens=False)["input_ids"] if tokenizer is not None else []
               for t in texts]
    answer = columns.get("answer")
    shown = BenchGroup(row=row, prompt=render_prompt(prompt, tokenizer) if chat else prompt,
                       answer=None if answer is None else str(answer), completions=list(texts))
    return Group(shown, prompt, completions, ids, columns)


def generated_groups(run: LoadedRun, data: Any, tokenizer: Any, n_prompts: int, say: Progress) -> list[Group]:
    """`n_prompts` rows (a seeded sample) x grpo.num_generations completions sampled from the model."""
    cfg = run.config
    rows = sorted(random.Random(cfg.grpo.seed).sample(range(len(data)), min(n_prompts, len(data))))
    say(f"loading {cfg.model.name}", 0.1)
    model = _load_model(run)
    import torch

    torch.manual_seed(cfg.grpo.seed)  # the same completions each time the bench runs
    groups = []
    for i, index in enumerate(rows):
        say(f"generating {cfg.grpo.num_generations} completions for row {index}", 0.2 + 0.5 * i / len(rows))
        row = data[index]
        texts, ids = sample_completions(model, tokenizer, row["prompt"], cfg.grpo.num_generations, run)
        groups.append(_group(index, row["prompt"], _row_columns(row), texts, tokenizer, ids))
    return groups


def _load_model(run: LoadedRun) -> Any:
    from grpo_studio.engine.model import choose_placement, load_model

    placement = choose_placement(run.config.model)
    model = load_model(run, placement)
    if placement.device == "cpu":
        model.to("cpu")
    model.eval()
    return model


def sample_completions(model: Any, tokenizer: Any, prompt: Any, n: int, run: LoadedRun) -> tuple[list[str], list]:
    """n completions of one prompt, sampled with the run's generation settings (as training samples)."""
    import torch

    from grpo_studio.engine.data import prompt_token_ids

    g = run.config.grpo
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt_token_ids(prompt, tokenizer)], device=device)
    eos = model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.insert(0, tokenizer.eos_token_id)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                             num_return_sequences=n, max_new_tokens=g.max_completion_length,
                             temperature=g.temperature, top_p=g.top_p, top_k=g.top_k or None,
                             eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    generated = out[:, input_ids.shape[1]:].tolist()
    ids = []
    for seq in generated:  # up to and including the first EOS, as TRL passes completion_ids
        end = next((i + 1 for i, t in enumerate(seq) if t in eos_ids), len(seq))
        ids.append(seq[:end])
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return texts, ids
