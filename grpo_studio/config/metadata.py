"""What forms, tooltips and `grpo-studio settings` need to know about each setting, read from the
settings tree itself, and path-based access to values (`grpo.learning_rate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

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
                **spec,
            )
        )
    return specs


SECTIONS: dict[str, type[Section]] = {
    name: info.annotation for name, info in RunConfig.model_fields.items()  # type: ignore[misc]
}


def all_field_specs() -> list[FieldSpec]:
    return [spec for name, cls in SECTIONS.items() for spec in field_specs(cls, name)]


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
