"""A dataset's first rows exactly as the model will see them, for previews (the GUI's Dataset page).

`preview()` reads the source, lists its real column names, and renders the first rows through the
run's prompt template, system prompt and the tokenizer's chat template. It never raises for bad
input: the problem comes back with the field it belongs to, and whatever was learned before it
(the column names, say) comes back too, so a form can offer the right choices.

Loaded datasets and tokenizers are kept in a small cache: a preview is redrawn on every edit of
the prompt template, and reloading the rows or the tokenizer each time would make that slow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_studio.config import LoadedRun
from grpo_studio.engine.data import DataError, build_prompts, load_raw, render_prompt, resolve_source


@dataclass
class PreviewRow:
    text: str  # the prompt as the model sees it (chat template applied)
    answer: str | None  # the ground truth after data.answer_pattern
    raw_answer: str | None
    tokens: int | None = None  # prompt length in tokens (when the tokenizer is available)


@dataclass
class DatasetPreview:
    columns: list[str] = field(default_factory=list)
    n_rows: int = 0
    rows: list[PreviewRow] = field(default_factory=list)
    chat: bool = False
    problem: str = ""  # what went wrong, one line
    problem_field: str = ""  # the setting to fix (data.source, data.prompt_column, ...)
    notes: list[str] = field(default_factory=list)  # things worth knowing that are not errors


_lock = threading.Lock()
_raw_cache: dict[tuple, Any] = {}
_tokenizer_cache: dict[tuple, Any] = {}


def _cached_raw(source: Any) -> Any:
    stamp = None
    if source.path is not None:
        st = source.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    key = (str(source), stamp)
    with _lock:
        if key in _raw_cache:
            return _raw_cache[key]
    raw = load_raw(source)
    with _lock:
        _raw_cache.clear()  # one dataset at a time: previews switch sources rarely, rows can be big
        _raw_cache[key] = raw
    return raw


def forget_cached_dataset() -> None:
    """Read the dataset again next time (the file changed on disk: the window's Reload)."""
    with _lock:
        _raw_cache.clear()


def _cached_tokenizer(run: LoadedRun) -> Any:
    from grpo_studio.engine.model import load_tokenizer, model_path

    name = model_path(run)
    stamp = None
    tok_file = Path(name) / "tokenizer_config.json"
    if tok_file.is_file():
        stamp = tok_file.stat().st_mtime_ns
    key = (name, run.config.model.revision, stamp)
    with _lock:
        if key in _tokenizer_cache:
            return _tokenizer_cache[key]
    tok = load_tokenizer(run)
    with _lock:
        _tokenizer_cache.clear()
        _tokenizer_cache[key] = tok
    return tok


def preview(run: LoadedRun, n: int = 5, first: int = 0) -> DatasetPreview:
    """Rows `first` to `first + n - 1` (fewer at the end of the data)."""
    from grpo_studio.engine.model import ModelError

    cfg = run.config
    out = DatasetPreview()
    try:
        source = resolve_source(run, cfg.data.source, cfg.data.subset, cfg.data.split)
        raw = _cached_raw(source)
    except DataError as exc:
        # Shown at the field it names, so the field's name is left out; a file keeps its FILE:LINE.
        out.problem = exc.message if exc.field else str(exc)
        out.problem_field = exc.field or "data.source"
        return out
    out.columns = list(raw.column_names)
    out.n_rows = len(raw)
    tokenizer = None
    if cfg.model.name.strip():
        try:
            tokenizer = _cached_tokenizer(run)
        except ModelError as exc:
            out.notes.append(f"Shown without the model's chat template: {exc.message}")
    else:
        out.notes.append("No model chosen yet: shown without a chat template.")
    head = raw.select(range(min(first, len(raw)), min(first + n, len(raw))))
    try:
        prompts = build_prompts(head, cfg.data, tokenizer, source, check_length=False)
    except DataError as exc:
        # A missing column is reported by its file when the source is local; the fix is the setting.
        problem_field = exc.field or ("data.prompt_column" if cfg.data.prompt_column not in out.columns
                                      else "data.answer_column" if cfg.data.answer_column
                                      and cfg.data.answer_column not in out.columns else "data.source")
        out.problem, out.problem_field = exc.message, problem_field
        return out
    out.chat = prompts.chat
    from grpo_studio.engine.data import prompt_token_ids

    ds = prompts.dataset
    for i in range(len(ds)):
        row = ds[i]
        tokens = None
        if tokenizer is not None:
            try:
                tokens = len(prompt_token_ids(row["prompt"], tokenizer))
            except Exception:  # noqa: BLE001 - a count is a nicety; the preview text matters
                tokens = None
        raw_answer = head[i].get(cfg.data.answer_column) if cfg.data.answer_column else None
        out.rows.append(PreviewRow(
            text=render_prompt(row["prompt"], tokenizer),
            answer=row.get("answer"),
            raw_answer=None if raw_answer is None else str(raw_answer),
            tokens=tokens,
        ))
    if prompts.missing_answers:
        out.notes.append(f"{prompts.missing_answers} of these rows have no ground truth "
                         "(answer column empty, or data.answer_pattern does not match).")
    return out
