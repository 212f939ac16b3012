"""Prompt datasets: load a hub dataset or a local file, map its columns to prompt and answer.

The result is a `datasets.Dataset` that TRL's GRPOTrainer takes as it is: a `prompt` column
(plain text, or a list of chat messages when the chat template is used), an `answer` column with
the ground truth, and every original column, since TRL hands all columns to the reward functions
as keyword arguments.

Errors name the file and line (`train.jsonl:57: not valid JSON ...`) or the setting
(`data.prompt_column: no column 'question' ...`).
"""

from __future__ import annotations

import csv
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from grpo_studio.config import DATA_FILE_FORMATS, DataSettings, LoadedRun
from grpo_studio.engine.error_text import first_line


class DataError(Exception):
    """A dataset problem, located at a file line or at a run-file setting."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.location() + message)

    def location(self) -> str:
        if self.file is not None:
            return f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{self.field}: " if self.field else ""


class HubUnreachable(DataError):
    """A hub dataset that is not in the local cache while the hub cannot be reached. `validate` and the
    window's preview report it as a warning (the same run file may train where the hub answers);
    training stops on it."""


@dataclass(frozen=True)
class DataSource:
    """Where rows come from: a local file, or a hub dataset id with its subset and split."""

    spec: str
    path: Path | None  # set for local files
    subset: str = ""
    split: str = "train"

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        return str(self.path) if self.path else f"{self.spec} ({self.subset or 'default'}/{self.split})"


def resolve_source(run: LoadedRun, spec: str, subset: str = "", split: str = "train",
                   field: str = "data.source") -> DataSource:
    """A local file when the path exists or looks like a data file, else a hub id."""
    spec = spec.strip()
    if not spec:
        raise DataError("is empty: give a hub dataset id or a local file", field=field)
    path = run.resolve(spec)
    if path.is_dir():
        raise DataError(f"{path} is a folder: point at a .jsonl, .json, .csv or .parquet file", field=field)
    if path.is_file():
        if path.suffix.lower() not in DATA_FILE_FORMATS:
            raise DataError(
                f"{path.name}: unsupported file type {path.suffix!r} (use .jsonl, .json, .csv or .parquet)",
                field=field,
            )
        return DataSource(spec, path)
    if path.suffix.lower() in DATA_FILE_FORMATS or spec.startswith((".", "/", "~")) or "\\" in spec:
        raise DataError(f"file not found: {path}", field=field)  # relative paths: to the run file's folder
    if spec.count("/") > 1:
        raise DataError(f"{spec!r} is neither an existing file nor a hub id (owner/name)", field=field)
    return DataSource(spec, None, subset=subset, split=split)


# ---- reading raw rows ---------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON-lines file; a bad line is a
    `FILE:LINE: reason` DataError."""
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("file not found", file=path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=path) from None
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=path, line=number) from None
            except ValueError as exc:  # e.g. a number past Python's int-digits limit
                raise DataError(f"not readable JSON: {str(exc).split(';')[0]}; write such a value as a string",
                                file=path, line=number) from None
            if not isinstance(value, dict):
                raise DataError(f"expected a JSON object per line, found {type(value).__name__}",
                                file=path, line=number)
            yield number, value


def _scan_jsonl(path: Path) -> None:
    """Find the first bad line of a JSON-lines file, to report it by number."""
    if sum(1 for _ in read_jsonl(path)) == 0:  # reads every line: the first bad one raises
        raise DataError("has no rows (only blank lines)", file=path)


def row_lines(source: DataSource) -> list[int] | None:
    """The line number of every row of a local JSON-lines or CSV file (None for other formats)."""
    path = source.path
    if path is None:
        return None
    suffix = path.suffix.lower()
    if suffix == ".jsonl" or (suffix == ".json" and not path.read_text(encoding="utf-8").lstrip().startswith("[")):
        return [number for number, _ in read_jsonl(path)]
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            lines = []
            while True:
                start = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return lines
                if row:
                    lines.append(start)
    return None


def check_prompts_present(raw: Any, settings: DataSettings, source: DataSource) -> None:
    """Every row needs a prompt: a null or empty one would crash training mid-run (an empty token list)."""
    column = settings.prompt_column
    bad = [i for i, v in enumerate(raw[column]) if v is None or (isinstance(v, str) and not v.strip())]
    if not bad:
        return
    more = f" ({len(bad)} rows like this, the first here)" if len(bad) > 1 else ""
    message = f"no prompt: {column!r} (data.prompt_column) is empty or null{more}; fill it in or remove the row"
    lines = row_lines(source) if source.path is not None else None
    if lines is not None and bad[0] < len(lines):
        raise DataError(message, file=source.path, line=lines[bad[0]])
    raise DataError(f"row {bad[0]}: {message}", file=source.path) if source.path else DataError(
        f"{source}: row {bad[0]}: {message}", field="data.source")


def _scan_csv(path: Path) -> None:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise DataError("empty CSV file (no header row)", file=path, line=1)
        for row in reader:
            if row and len(row) != len(header):
                raise DataError(f"expected {len(header)} fields like the header, found {len(row)}",
                                file=path, line=reader.line_num)


def _scan(path: Path) -> None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl" or (suffix == ".json" and not path.read_text(encoding="utf-8").lstrip().startswith("[")):
            _scan_jsonl(path)
        elif suffix == ".csv":
            _scan_csv(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None


def load_raw(source: DataSource, max_rows: int = 0) -> Any:
    """The source's rows as a `datasets.Dataset`, unchanged."""
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    if source.is_local:
        path = source.path
        assert path is not None
        if path.stat().st_size == 0:
            raise DataError("the file is empty", file=path)
        _scan(path)  # cheap, and it turns a loader's stack trace into "file:line: reason"
        builder = DATA_FILE_FORMATS[path.suffix.lower()]
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as exc:  # the loaders raise many types; all mean "this file can't be read"
            raise DataError(f"cannot read as {builder}: {first_line(exc)}", file=path) from None
    else:
        from grpo_studio.engine import hub

        state = hub.ensure()  # a few seconds at most; offline from the cache if the hub does not answer
        try:
            ds = datasets.load_dataset(source.spec, source.subset or None, split=source.split)
        except ValueError as exc:
            raise DataError(f"{first_line(exc)}", field="data.split") from None
        except Exception as exc:
            if not state.online:
                raise HubUnreachable(hub.not_on_this_machine("dataset", source.spec, "data.source"),
                                     field="data.source") from None
            raise DataError(f"cannot load {source.spec!r} from the hub: {first_line(exc)}",
                            field="data.source") from None
    if max_rows and len(ds) > max_rows:
        ds = ds.select(range(max_rows))
    if len(ds) == 0:
        raise DataError("has no rows", file=source.path) if source.is_local else DataError(
            f"{source} has no rows", field="data.source")
    return ds


# ---- mapping columns ------------------------------------------------------------------------


def template_fields(template: str) -> list[str]:
    """Names a prompt template refers to, e.g. ['prompt', 'context'] for '{context}\\n{prompt}'."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def check_columns(columns: list[str], settings: DataSettings, where: DataSource) -> None:
    """Every column the settings name must exist; the error lists the real ones."""
    have = ", ".join(columns)
    file = where.path
    for field, column in (("data.prompt_column", settings.prompt_column), ("data.answer_column",
                                                                           settings.answer_column)):
        if column and column not in columns:
            msg = f"no column {column!r} ({field}); columns are: {have}"
            raise DataError(msg, file=file, line=1) if file else DataError(msg, field=field)
    try:
        fields = template_fields(settings.prompt_template)
    except ValueError as exc:
        raise DataError(f"bad template: {exc}", field="data.prompt_template") from None
    for name in fields:
        if name != "prompt" and name not in columns:
            raise DataError(f"{{{name}}} is not a column; columns are: {have}", field="data.prompt_template")


def extract_answer(raw: Any, pattern: re.Pattern[str] | None) -> str | None:
    """The ground truth from the answer column: group 1 of `pattern` when given, else the value."""
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, (list, dict)) else str(raw)
    if pattern is None:
        return text.strip()
    m = pattern.search(text)
    if not m:
        return None
    return (m.group(1) if m.groups() else m.group(0)).strip()


def use_chat_template(settings: DataSettings, tokenizer: Any | None) -> bool:
    has_template = bool(tokenizer is not None and getattr(tokenizer, "chat_template", None))
    if settings.chat_template == "on":
        return True
    if settings.chat_template == "off":
        return False
    return has_template


def format_row(row: dict[str, Any], settings: DataSettings, chat: bool) -> Any:
    """The prompt for one row: a string, or chat messages when the chat template is used."""
    values = {k: ("" if v is None else v) for k, v in row.items()}
    values["prompt"] = row.get(settings.prompt_column) or ""
    text = settings.prompt_template.format_map(values)
    if chat:
        messages = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
        return messages + [{"role": "user", "content": text}]
    return f"{settings.system_prompt}\n\n{text}" if settings.system_prompt else text


@dataclass
class PromptData:
    dataset: Any  # datasets.Dataset with prompt, answer and the original columns
    chat: bool
    dropped_long: int = 0
    missing_answers: int = 0
    source: DataSource | None = None


def build_prompts(raw: Any, settings: DataSettings, tokenizer: Any | None = None,
                  source: DataSource | None = None, check_length: bool = True) -> PromptData:
    """Map raw rows to TRL's prompt dataset; drop prompts over data.max_prompt_length tokens."""
    columns = list(raw.column_names)
    check_columns(columns, settings, source or DataSource("", None))
    check_prompts_present(raw, settings, source or DataSource("", None))
    chat = use_chat_template(settings, tokenizer)
    if chat and tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        raise DataError("is 'on' but the tokenizer has no chat template", field="data.chat_template")
    pattern = re.compile(settings.answer_pattern, re.MULTILINE | re.DOTALL) if settings.answer_pattern else None

    def mapper(row: dict[str, Any]) -> dict[str, Any]:
        out = {"prompt": format_row(row, settings, chat)}
        if settings.answer_column:
            raw_answer = row.get(settings.answer_column)
            out["answer"] = extract_answer(raw_answer, pattern)
            if settings.answer_column == "answer":
                out["answer_raw"] = raw_answer
        return out

    ds = raw.map(mapper, desc=None)
    missing = 0
    if settings.answer_column:
        missing = sum(1 for a in ds["answer"] if a is None)
        if missing == len(ds):
            what = (f"{settings.answer_pattern!r} matches no row of column {settings.answer_column!r}" if pattern
                    else f"column {settings.answer_column!r} is empty in every row")
            raise DataError(what, field="data.answer_pattern" if pattern else "data.answer_column")
    dropped = 0
    if tokenizer is not None and check_length:
        lengths = [len(prompt_token_ids(p, tokenizer)) for p in ds["prompt"]]
        keep = [i for i, n in enumerate(lengths) if n <= settings.max_prompt_length]
        dropped = len(ds) - len(keep)
        if not keep:
            raise DataError(
                f"every prompt is longer than {settings.max_prompt_length} tokens (shortest: {min(lengths)})",
                field="data.max_prompt_length",
            )
        if dropped:
            ds = ds.select(keep)
    return PromptData(ds, chat, dropped_long=dropped, missing_answers=missing, source=source)


def prompt_token_ids(prompt: Any, tokenizer: Any) -> list[int]:
    if isinstance(prompt, list):
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)
    return tokenizer(text=prompt)["input_ids"]  # as TRL tokenizes plain prompts


def render_prompt(prompt: Any, tokenizer: Any | None) -> str:
    """The exact text the model will see for a prompt (chat template applied), for previews."""
    if isinstance(prompt, list):
        if tokenizer is None:
            return "\n".join(f"<{m['role']}>\n{m['content']}" for m in prompt)
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return prompt


def load_prompts(run: LoadedRun, tokenizer: Any | None = None, *, split: str = "train",
                 check_length: bool = True) -> PromptData:
    """The training prompts (split='train') or the held-out ones (split='eval') of a run."""
    cfg = run.config
    if split == "eval":
        spec = cfg.eval.source or cfg.data.source
        field = "eval.source" if cfg.eval.source else "data.source"
        source = resolve_source(run, spec, cfg.data.subset, cfg.eval.split, field=field)
        if source.is_local and not cfg.eval.source:
            raise DataError("a local training file has no held-out split: set eval.source to a held-out file",
                            field="eval.source")
        raw = load_raw(source, cfg.eval.limit)
    else:
        source = resolve_source(run, cfg.data.source, cfg.data.subset, cfg.data.split)
        raw = load_raw(source, cfg.data.max_rows)
    return build_prompts(raw, cfg.data, tokenizer, source, check_length=check_length)
