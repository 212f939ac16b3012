"""Run files on disk: TOML in, validated settings out (and back), `--set section.key=value`
overrides, and errors that name every bad field."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from grpo_studio.config.settings import ConfigError, ConfigProblem, RunConfig


@dataclass
class LoadedRun:
    """A parsed run file and the folder its relative paths are relative to."""

    config: RunConfig
    path: Path | None
    base_dir: Path

    def resolve(self, value: str) -> Path:
        """A path from the run file, made absolute against the run file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def unknown_setting(path: str) -> str:
    """Why `path` is refused, with the nearest real name and where every setting is listed."""
    import difflib

    section, _, key = path.partition(".")
    sections = {name: info.annotation for name, info in RunConfig.model_fields.items()}
    if section not in sections or not key:
        close = difflib.get_close_matches(section, list(sections), n=1)
        guess = f"did you mean [{close[0]}]? " if close else ""
        return f"unknown section ({guess}sections: {', '.join(sections)}; `grpo-studio settings` lists every setting)"
    keys = list(sections[section].model_fields)  # type: ignore[union-attr]
    close = difflib.get_close_matches(key, keys, n=1) if "." not in key and "[" not in key else []
    guess = f"did you mean {section}.{close[0]}? " if close else ""
    return f"unknown setting ({guess}`grpo-studio settings {section}` lists them)"


def _format_pydantic_error(err: dict[str, Any]) -> ConfigProblem:
    loc = err["loc"]
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("list[str]", "literal['all-linear']"):
            continue  # union branches of lora.target_modules: not part of the user's path
        else:
            path += ("." if path else "") + str(part)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "extra_forbidden":
        return ConfigProblem(path, unknown_setting(path))
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return ConfigProblem(path, f"must be {op} {bound}, got {value!r}")
    if kind == "literal_error":
        return ConfigProblem(path, f"must be one of {ctx.get('expected')}, got {value!r}")
    if kind == "value_error":
        return ConfigProblem(path, str(ctx.get("error", err["msg"])))
    return ConfigProblem(path, f"{err['msg'].lower()}, got {value!r}")


def _problems_from_validation(exc: ValidationError) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    seen: set[str] = set()
    for err in exc.errors():
        problem = _format_pydantic_error(err)
        # A union (lora.target_modules) reports one error per branch; one line per field is enough.
        if problem.field in seen:
            continue
        seen.add(problem.field)
        problems.append(problem)
    return problems


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems_from_validation(exc)) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `--set section.key=value`; the value is read as TOML, else as a plain string."""
    if "=" not in text:
        raise ConfigError([ConfigProblem(text, "expected section.key=value")])
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if len(path) < 2:
        raise ConfigError([ConfigProblem(key.strip() or text, "expected section.key=value")])
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words such as a path or a hub id
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([ConfigProblem(".".join(path), f"{part} is not a section")])
            node = child
        node[path[-1]] = value
    return data


def load_run(path: str | Path, overrides: list[str] | None = None) -> LoadedRun:
    """Read, override and validate a run file. Raises ConfigError naming every bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), "run file not found")], source=str(path)) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), f"cannot read: {exc.strerror}")], source=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line N, column M)" in the message; keep it for the user.
        raise ConfigError([ConfigProblem(str(path), f"not valid TOML: {exc}")], source=str(path)) from None
    data = apply_overrides(data, overrides or [])
    try:
        config = config_from_dict(data)
    except ConfigError as exc:
        exc.source = str(path)
        raise
    return LoadedRun(config=config, path=path.resolve(), base_dir=path.resolve().parent)


def loads_run(text: str, base_dir: str | Path = ".", overrides: list[str] | None = None) -> LoadedRun:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigProblem("run file", f"not valid TOML: {exc}")]) from None
    config = config_from_dict(apply_overrides(data, overrides or []))
    return LoadedRun(config=config, path=None, base_dir=Path(base_dir).resolve())


def dumps_run(config: RunConfig) -> str:
    """The whole tree as TOML, every setting written out so the file documents itself."""
    data = config.model_dump(mode="json")
    # A reward entry is either a function or a model: leave the unused key out.
    data["rewards"]["functions"] = [{k: v for k, v in f.items() if v != ""} for f in data["rewards"]["functions"]]
    return tomli_w.dumps(data)


def save_run(config: RunConfig, path: str | Path) -> None:
    """Write atomically: a crash mid-save never leaves half a run file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_run(config), encoding="utf-8")
    tmp.replace(path)
