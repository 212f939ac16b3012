"""The run file: a typed, validated settings tree saved as TOML.

One tree serves the GUI forms, the CLI (`--set section.key=value`), the training worker and the
tests. Every field carries its default, its valid range or choices and one line of help; forms
and tooltips read that metadata through `field_specs`. Errors always name the field path and
the reason, e.g. `grpo.num_generations: 3 does not divide the generation batch 8`.

    settings.py   the sections and their fields, cross-field checks
    run_file.py   TOML load / save, overrides, ConfigError
    metadata.py   FieldSpec for forms and docs, get/set by path

Import from here: `from grpo_studio.config import load_run, RunConfig`.
"""

from grpo_studio.config.metadata import (
    SECTIONS,
    FieldSpec,
    all_field_specs,
    field_specs,
    get_value,
    local_path_settings,
    memory_settings,
    set_value,
    with_local_paths,
)
from grpo_studio.config.run_file import (
    LoadedRun,
    apply_overrides,
    config_from_dict,
    dumps_run,
    load_run,
    loads_run,
    parse_override,
    save_run,
)
from grpo_studio.config.settings import (
    DATA_FILE_FORMATS,
    MANAGED_TRAINER_FIELDS,
    OPTIMIZER_NAMES,
    STUDIO_TRAINER_FIELDS,
    AlarmSettings,
    ConfigError,
    ConfigProblem,
    DataSettings,
    EvalSettings,
    GrpoSettings,
    LoraSettings,
    ModelSettings,
    QuantizationSettings,
    RewardFunction,
    RewardSettings,
    RunConfig,
    RunSettings,
    Section,
    setting,
)

__all__ = [
    "DATA_FILE_FORMATS", "MANAGED_TRAINER_FIELDS", "OPTIMIZER_NAMES", "SECTIONS", "AlarmSettings", "ConfigError",
    "ConfigProblem", "DataSettings", "EvalSettings", "FieldSpec", "GrpoSettings", "LoadedRun", "LoraSettings",
    "ModelSettings", "QuantizationSettings", "RewardFunction", "RewardSettings", "RunConfig", "RunSettings",
    "STUDIO_TRAINER_FIELDS", "Section", "all_field_specs", "apply_overrides", "config_from_dict", "dumps_run",
    "field_specs", "get_value", "load_run", "loads_run", "local_path_settings", "memory_settings", "parse_override",
    "save_run", "set_value", "setting", "with_local_paths",
]
