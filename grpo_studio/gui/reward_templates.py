"""Reward function templates the editor can insert (pure Python, no Qt).

Templates are the .py files in resources/reward_templates/; until that folder has any, a few
built-in ones keep the menu useful. Inserting a template merges its imports into the file's
imports and appends its functions, so the file stays one tidy module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RewardTemplate:
    key: str  # file stem, e.g. "correctness"
    title: str  # first line of the module docstring
    code: str

    def function_names(self) -> list[str]:
        try:
            tree = ast.parse(self.code)
        except SyntaxError:
            return []
        return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]


BUILTIN = {
    "correctness": '''\
"""Correctness: 1.0 when the final number equals the ground truth."""

import re


def correctness_reward(completions, answer, **kwargs):
    """1.0 when the last number in the completion equals the ground truth, else 0.0.

    >>> correctness_reward(["so it is 12", "13"], answer=["12", "12"])
    [1.0, 0.0]
    """
    scores = []
    for completion, truth in zip(completions, answer):
        numbers = re.findall(r"-?\\d+(?:\\.\\d+)?", completion.replace(",", ""))
        scores.append(1.0 if numbers and numbers[-1] == str(truth).strip() else 0.0)
    return scores
''',
    "format": '''\
"""Format: reward completions that reason first, then answer on a last line."""

import re

FORMAT_RE = re.compile(r"^.+\\n+(?:The answer is|Answer:)\\s*\\S+\\s*$", re.DOTALL)


def format_reward(completions, **kwargs):
    """0.5 when the completion reasons and ends with an answer line, else 0.0."""
    return [0.5 if FORMAT_RE.match(c.strip()) else 0.0 for c in completions]
''',
    "length": '''\
"""Length: a small penalty for rambling past a token budget."""


def length_reward(completions, completion_ids, **kwargs):
    """0 up to 200 tokens, then down to -1.0 at 400 tokens and beyond."""
    budget, limit = 200, 400
    return [-min(1.0, max(0, len(ids) - budget) / (limit - budget)) for ids in completion_ids]
''',
    "xml_tags": '''\
"""XML tags: reward <reasoning>...</reasoning><answer>...</answer> output."""

import re

TAGS_RE = re.compile(r"^\\s*<reasoning>.+?</reasoning>\\s*<answer>.+?</answer>\\s*$", re.DOTALL)


def xml_tags_reward(completions, **kwargs):
    """0.5 for the full tag structure, plus 0.125 per tag present (partial credit early in training)."""
    scores = []
    for c in completions:
        score = 0.5 if TAGS_RE.match(c) else 0.0
        score += 0.125 * sum(tag in c for tag in ("<reasoning>", "</reasoning>", "<answer>", "</answer>"))
        scores.append(score)
    return scores
''',
}


def _title(code: str, fallback: str) -> str:
    try:
        doc = ast.get_docstring(ast.parse(code))
    except SyntaxError:
        doc = None
    return doc.strip().splitlines()[0].rstrip(".") if doc else fallback.replace("_", " ").capitalize()


def templates_dir() -> Path:
    from grpo_studio.resource_paths import resources_dir

    return resources_dir() / "reward_templates"


def list_templates(folder: Path | None = None) -> list[RewardTemplate]:
    """The folder's templates (sorted by name); the built-in ones when the folder has none."""
    folder = templates_dir() if folder is None else folder
    found = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                code = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            found.append(RewardTemplate(path.stem, _title(code, path.stem), code))
    if found:
        return found
    return [RewardTemplate(key, _title(code, key), code) for key, code in BUILTIN.items()]


def _split(code: str) -> tuple[list[str], str]:
    """Top-level import lines, and the rest without the module docstring."""
    tree = ast.parse(code)
    lines = code.splitlines()
    imports: list[str] = []
    skip: set[int] = set()
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        skip.update(range(body[0].lineno - 1, body[0].end_lineno or body[0].lineno))
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset == 0:
            span = range(node.lineno - 1, node.end_lineno or node.lineno)
            imports.append("\n".join(lines[i] for i in span))
            skip.update(span)
    rest = "\n".join(line for i, line in enumerate(lines) if i not in skip).strip("\n")
    return imports, rest


def merge_template(source: str, template: RewardTemplate) -> str:
    """`source` with the template's missing imports added after its imports and its code appended.

    Falls back to plain appending when either text does not parse (the user is mid-edit)."""
    try:
        imports, rest = _split(template.code)
        tree = ast.parse(source)
    except SyntaxError:
        return source.rstrip("\n") + "\n\n\n" + template.code.strip("\n") + "\n"
    have = set(source.splitlines())
    missing = [imp for imp in imports if imp not in have]
    lines = source.rstrip("\n").splitlines()
    if missing:
        last_import = max((n.end_lineno or n.lineno for n in tree.body
                           if isinstance(n, (ast.Import, ast.ImportFrom))), default=0)
        if last_import == 0 and tree.body and isinstance(tree.body[0], ast.Expr):
            last_import = tree.body[0].end_lineno or 0  # after the module docstring
            missing = [""] + missing
        lines[last_import:last_import] = missing
    text = "\n".join(lines).rstrip("\n")
    return (text + "\n\n\n" if text.strip() else "") + rest + "\n"
