"""What forms, tooltips, `grpo-studio settings`, the trainer mapping and the VRAM estimate need to
know about each setting, read from the settings tree itself (`settings.setting` holds the facts), and
path-based access to values (`grpo.learning_rate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args, get_origin

from pydantic import BaseModel

from grpo_studio.config.run_file import config_from_dict
from grpo_studio.config.settings import RunConfig, Section


@dataclass(frozen=True)
class FieldSpec:
    """What a form needs to draw one setting."""

    path: str  # "grpo.learning_rate"
    name: str
    kind: str  # "int" | "float" | "bool" | "str" | "choice" | "list" | "dict" | "table"
    default: Any
    help: str
    advanced: bool
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] = ()
    title: str = ""  # what the window calls it; see `label`
    path_kind: str | None = None  # "hub_or_local" | "file" | "folder": a path relative to the run file
    trainer_fields: tuple[str, ...] = ()  # the GRPOConfig field it sets (then aliases)
    affects_memory: bool = False  # it changes the estimated peak GPU memory

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()


def _kind(annotation: Any) -> tuple[str, tuple[Any, ...]]:
    origin = get_origin(annotation)
    if origin is Literal:
        return "choice", get_args(annotation)
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if annotation is str:
        return "str", ()
    if origin is dict:
        return "dict", ()
    if origin is list:
        (item,) = get_args(annotation)
        return ("table" if isinstance(item, type) and issubclass(item, BaseModel) else "list"), ()
    # unions such as list[str] | Literal["all-linear"]
    return "list", ()


def field_specs(section: type[Section], prefix: str) -> list[FieldSpec]:
    specs = []
    for name, info in section.model_fields.items():
        kind, choices = _kind(info.annotation)
        spec: dict[str, Any] = {}
        for c in info.metadata:
            for attr, key, excl in (("ge", "minimum", False), ("gt", "minimum", True),
                                    ("le", "maximum", False), ("lt", "maximum", True)):
                if getattr(c, attr, None) is not None:
                    spec[key] = getattr(c, attr)
                    spec["exclusive_" + key] = excl
        extra = info.json_schema_extra or {}
        specs.append(
            FieldSpec(
                path=f"{prefix}.{name}",
                name=name,
                kind=kind,
                default=info.get_default(call_default_factory=True),
                help=info.description or "",
                advanced=bool(extra.get("advanced", False)),
                choices=choices,
                title=str(extra.get("title", "")),
                path_kind=extra.get("path_kind"),
                trainer_fields=tuple(extra.get("trainer_field", ())),
                affects_memory=bool(extra.get("memory", False)),
                **spec,
            )
        )
    return specs


SECTIONS: dict[str, type[Section]] = {
    name: info.annotation for name, info in RunConfig.model_fields.items()  # type: ignore[misc]
}


def all_field_specs() -> list[FieldSpec]:
    return [spec for name, cls in SECTIONS.items() for spec in field_specs(cls, name)]


def local_path_settings() -> list[str]:
    """Settings that name a hub id, or a local file or folder relative to the run file when one exists
    there (snapshots make them absolute, Save As rebases them, a run folder freezes them; all three
    through `with_local_paths`, which adds each reward function's `model`)."""
    return [s.path for s in all_field_specs() if s.path_kind == "hub_or_local"]


def with_local_paths(config: RunConfig, change: Callable[[str], str | None]) -> RunConfig:
    """A copy of `config` with `change(value)` applied to every set value that may name a local file or
    folder relative to the run file: the local_path_settings() and each reward function's `model`.
    `change` returns the new value, or None to keep the value as it is."""
    out = config.model_copy(deep=True)
    for path in local_path_settings():
        section_name, key = path.split(".")
        section = getattr(out, section_name)
        value = getattr(section, key)
        new = change(value) if value else None
        if new is not None:
            setattr(section, key, new)
    for fn in out.rewards.functions:
        new = change(fn.model) if fn.model else None
        if new is not None:
            fn.model = new
    return out


def memory_settings() -> set[str]:
    """Settings that change the estimated peak GPU memory (the window recomputes it after their edits)."""
    return {s.path for s in all_field_specs() if s.affects_memory}


def get_value(config: RunConfig, path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def set_value(config: RunConfig, path: str, value: Any) -> RunConfig:
    """A copy of `config` with one setting changed, validated; raises ConfigError naming the field."""
    data = config.model_dump(mode="json")
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return config_from_dict(data)
