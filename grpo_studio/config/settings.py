"""The settings tree of a run file: sections of typed fields, each with its default, its valid
range or choices and one line of help, plus the checks that span several fields.

Pure: it reads no dataset, no reward file and no model weights (those checks live in
`grpo_studio.engine.checks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# File extensions that the local dataset loader understands, mapped to the `datasets` builder.
DATA_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

PathKind = Literal["hub_or_local", "file", "folder"]

# GRPOConfig fields that GRPO Studio sets without a setting of its own, and why `grpo.extra` may not
# change them (the fields that settings map to are named on the settings: `trainer_field`).
STUDIO_TRAINER_FIELDS = {
    "use_cpu": "it follows model.device",
    "bf16": "it follows model.dtype",
    "fp16": "it follows model.dtype",
    "gradient_checkpointing_kwargs": "it goes with lora.gradient_checkpointing",
    "save_strategy": "Stop and Resume need a checkpoint every run.save_steps",
    "remove_unused_columns": "reward functions get every dataset column (e.g. answer)",
    "logging_nan_inf_filter": "a NaN or infinite loss must reach the health alarms",
    "run_name": "trackers (run.report_to) name the run after its folder",
    "project": "trackers (run.report_to) file the runs under grpo-studio",
    "disable_tqdm": "progress is reported as events",
    "log_completions": "the run store keeps every sampled completion",
    "dataloader_num_workers": "the prompts are read in the training process",
}


def setting(default: Any, help: str, *, advanced: bool = False, title: str = "", path_kind: PathKind | None = None,
            trainer_field: str | tuple[str, ...] | None = None, memory: bool = False, **constraints: Any) -> Any:
    """A config field and its facts, in one place (forms, the CLI, the trainer mapping and the VRAM
    estimate read them from here; `metadata.FieldSpec` is how they are read):

    - default, one line of help, and whether forms fold it under 'Advanced';
    - `title`: what the window calls it (with its unit), when the name is too terse;
    - `path_kind`: a path relative to the run file: "hub_or_local" (a hub id, or a local file or
      folder when one exists there), "file" or "folder";
    - `trainer_field`: the TRL GRPOConfig field it sets (a tuple: the first is set, the others are
      aliases); `grpo.extra` may not set these;
    - `memory`: it changes the estimated peak GPU memory.
    """
    facts: dict[str, Any] = {"advanced": advanced}
    if title:
        facts["title"] = title
    if path_kind:
        facts["path_kind"] = path_kind
    if trainer_field:
        facts["trainer_field"] = [trainer_field] if isinstance(trainer_field, str) else list(trainer_field)
    if memory:
        facts["memory"] = True
    return Field(default, description=help, json_schema_extra=facts, **constraints)


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated."""

    # NaN and infinity are never a meaningful setting (eval.threshold = nan made every answer wrong).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSettings(Section):
    name: str = setting("", "Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or local folder of the base model.",
        title="Model", path_kind="hub_or_local", memory=True)
    revision: str = setting("", "Hub revision (branch, tag or commit); empty for the default.", advanced=True,
        memory=True)
    trust_remote_code: bool = setting(
        False, "Run Python code shipped with the model. Only for models you trust.", advanced=True,
        title="Trust remote code", trainer_field="trust_remote_code"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = setting(
        "auto", "Weight dtype: auto = bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU.",
        title="Weight dtype", memory=True
    )
    max_seq_length: int = setting(
        1024, "Longest prompt + completion in tokens; must fit the model's context.", ge=16, le=1_048_576,
        title="Max sequence length (tokens)"
    )
    device: Literal["auto", "cuda", "cpu"] = setting(
        "auto", "Where to train: auto = CUDA GPU when present, else CPU.", advanced=True, title="Device", memory=True
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = setting(
        "auto", "Attention kernel; auto lets transformers choose.", advanced=True, title="Attention kernel"
    )
    cpu_threads: int = setting(
        0, "Threads PyTorch uses when training on the CPU; 0 = its default. Tiny models run fastest on 1.",
        ge=0, le=1024, advanced=True
    )


class QuantizationSettings(Section):
    load_in: Literal["16bit", "8bit", "4bit"] = setting(
        "16bit", "Load the base model in 16-bit, or quantized to 8-bit / 4-bit with bitsandbytes (QLoRA).",
        title="Load weights in", memory=True
    )
    quant_type: Literal["nf4", "fp4"] = setting("nf4", "4-bit data type.", advanced=True, title="4-bit type")
    double_quant: bool = setting(True, "Also quantize the 4-bit scales (saves ~0.4 bit/param).", advanced=True,
        title="Double quantization", memory=True)
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = setting(
        "auto", "Dtype of the matmuls on quantized weights; auto follows model.dtype.", advanced=True,
        title="Compute dtype"
    )


class LoraSettings(Section):
    enabled: bool = setting(True, "Train LoRA adapters; off trains every weight (needs far more memory).",
        title="Train a LoRA adapter", memory=True)
    r: int = setting(16, "LoRA rank: capacity of the adapter.", ge=1, le=1024, title="Rank (r)", memory=True)
    alpha: float = setting(32, "LoRA alpha: the update is scaled by alpha / r.", gt=0, le=4096, title="Alpha")
    dropout: float = setting(0.0, "Dropout on the LoRA input. Above 0, the LoRA layers on a GPU train through "
                             "PEFT's own forward instead of the fused one (slower, more memory).", ge=0.0, lt=1.0,
                             memory=True)
    target_modules: list[str] | Literal["all-linear"] = setting(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Module names that get adapters, or \"all-linear\".", title="Target modules", memory=True,
    )
    use_rslora: bool = setting(False, "Rank-stabilized LoRA: scale by alpha / sqrt(r).", advanced=True,
        title="Rank-stabilized (rsLoRA)")
    modules_to_save: list[str] = setting(
        [], "Modules trained in full and saved with the adapter (e.g. lm_head).", advanced=True
    )
    gradient_checkpointing: Literal["auto", "on", "off"] = setting(
        "auto", "Recompute activations in the backward pass: less memory, slower (up to 2x the training "
        "half); auto = off on a GPU with memory for it, on otherwise (off on the CPU).",
        title="Gradient checkpointing", trainer_field="gradient_checkpointing", memory=True
    )

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _old_checkpointing(cls, value: Any) -> Any:
        # Run files before "auto" said true / false.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not value:
            raise ValueError('needs at least one module name, or "all-linear"')
        return value


class DataSettings(Section):
    source: str = setting("", "Hub dataset id (e.g. openai/gsm8k) or local .jsonl/.json/.csv/.parquet file.",
        title="Source (file or hub id)", path_kind="hub_or_local")
    subset: str = setting("", "Hub dataset configuration (e.g. main for openai/gsm8k); empty for none.")
    split: str = setting("train", "Split used for training.")
    prompt_column: str = setting("prompt", "Column that holds the prompt text.")
    answer_column: str = setting(
        "answer", "Column with the ground truth, passed to reward functions as `answer`; empty for none."
    )
    answer_pattern: str = setting(
        "",
        r"Regex that extracts the ground truth from the answer column (group 1), e.g. ####\s*(.+)$ for GSM8K.",
        title="Answer pattern (regex)",
    )
    prompt_template: str = setting(
        "{prompt}", "How the prompt is written: {prompt} is the prompt column; any {column} of the row works too."
    )
    system_prompt: str = setting("", "System message put before every prompt (chat models) or above it (others).")
    chat_template: Literal["auto", "on", "off"] = setting(
        "auto", "Format prompts with the tokenizer's chat template: auto = when the tokenizer has one."
    )
    max_rows: int = setting(0, "Use at most this many training rows; 0 = all.", ge=0, title="Max rows (0 = all)")
    max_prompt_length: int = setting(
        512, "Prompts longer than this many tokens are left out of training.", ge=1, le=1_048_576,
        title="Max prompt length (tokens)", memory=True
    )

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class RewardFunction(Section):
    name: str = setting("", "Name of a function in the reward file (TRL signature: prompts, completions, **columns).")
    model: str = setting(
        "", "Instead of a function: hub id or folder of a sequence-classification reward model.", advanced=True,
        path_kind="hub_or_local"
    )
    weight: float = setting(1.0, "Weight of this reward in the total.", ge=-1000, le=1000,
        trainer_field="reward_weights")

    @property
    def label(self) -> str:
        """What the UI, metrics and samples call this reward."""
        return self.name or Path(self.model).name or self.model


class RewardSettings(Section):
    file: str = setting("rewards.py", "Python file with the reward functions, relative to the run file.",
        path_kind="file")
    functions: list[RewardFunction] = setting(
        [], "Reward functions and their weights; empty = every function in the file whose name ends in _reward."
    )
    isolate: bool = setting(
        True, "Run the reward file in its own process with a time limit per call, so a hang or crash ends the run "
        "cleanly; off = in the training process (no overhead, no protection).", advanced=True,
        title="Run rewards in their own process"
    )
    timeout_s: float = setting(
        30.0, "Longest one call of a reward function may take (isolated rewards); then the run stops or skips.",
        gt=0, le=86_400, advanced=True, title="Time limit per call (s)"
    )
    load_timeout_s: float = setting(
        120.0, "Longest the reward file may take to load, imports included (isolated rewards).",
        gt=0, le=86_400, advanced=True, title="Time limit to load the file (s)"
    )
    on_error: Literal["stop", "skip"] = setting(
        "stop", "When a reward function fails mid-run: stop (checkpoint + reason), or skip (its scores for that "
        "batch are None and the failure is counted).", advanced=True, title="When a reward fails"
    )
    max_consecutive_failures: int = setting(
        3, "With on_error = skip: stop anyway after this many failed calls of one function in a row.",
        ge=1, le=1_000_000, advanced=True, title="Failures in a row before stopping"
    )


Optimizer = Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"]

# Our optimizer names (short, what users type) to transformers' `optim` names.
OPTIMIZER_NAMES = {
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "adafactor": "adafactor",
    "sgd": "sgd",
}


class GrpoSettings(Section):
    per_device_train_batch_size: int = setting(
        8, "Completions per GPU per micro-step (not prompts: prompts = this x steps / num_generations).", ge=1, le=4096,
        title="Completions per device batch", trainer_field="per_device_train_batch_size", memory=True
    )
    gradient_accumulation_steps: int = setting(1, "Micro-steps per optimizer step.", ge=1, le=1024,
        title="Gradient accumulation (steps)", trainer_field="gradient_accumulation_steps", memory=True)
    auto_micro_batch: bool = setting(
        True, "On a GPU with memory for it, train each generation batch in fewer, larger micro-steps (the same "
        "gradients for the grpo, dr_grpo, dapo and cispo losses; far fewer kernel launches).", advanced=True,
        title="Larger micro-steps when memory allows", memory=True
    )
    learning_rate: float = setting(5e-6, "Peak learning rate.", gt=0, le=1.0, trainer_field="learning_rate")
    lr_scheduler_type: Literal["constant", "constant_with_warmup", "linear", "cosine"] = setting(
        "linear", "Learning-rate schedule.", title="LR schedule", trainer_field="lr_scheduler_type"
    )
    warmup_ratio: float = setting(0.0, "Fraction of the steps spent warming up the learning rate.", ge=0, lt=1,
        title="Warmup (fraction of steps)", trainer_field=("warmup_steps", "warmup_ratio"))
    weight_decay: float = setting(0.0, "AdamW weight decay.", ge=0, le=1, advanced=True, trainer_field="weight_decay")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm; 0 disables clipping.", ge=0, advanced=True,
        title="Max grad norm", trainer_field="max_grad_norm")
    max_steps: int = setting(250, "Optimizer steps to train.", ge=1, le=10_000_000,
        title="Training steps", trainer_field="max_steps")
    num_generations: int = setting(8, "Completions sampled per prompt (the group).", ge=2, le=1024,
        title="Completions per prompt (group)", trainer_field="num_generations")
    generation_batch_size: int = setting(
        0, "Completions generated at once; 0 = one optimizer step's worth.", ge=0, advanced=True,
        title="Generation batch (completions)", trainer_field="generation_batch_size", memory=True
    )
    max_completion_length: int = setting(256, "Longest completion in tokens.", ge=1, le=1_048_576,
        title="Max completion length (tokens)", trainer_field="max_completion_length", memory=True)
    optimizer: Optimizer = setting(
        "adamw_torch", "Optimizer; adamw_8bit keeps its state in 8 bits (bitsandbytes, CUDA only).",
        trainer_field="optim", memory=True
    )
    beta: float = setting(0.0, "KL penalty towards the base model; 0 skips the reference pass.", ge=0, le=100,
        title="KL coefficient (beta)", trainer_field="beta")
    epsilon: float = setting(0.2, "Lower clipping range of the policy ratio.", gt=0, le=10, advanced=True,
        title="Clip epsilon", trainer_field="epsilon")
    epsilon_high: float = setting(
        0.0, "Upper clipping range; 0 = same as epsilon (DAPO suggests 0.28).", ge=0, le=100, advanced=True,
        title="Clip epsilon, upper", trainer_field="epsilon_high"
    )
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = setting(
        "dapo", "How token losses are aggregated (dapo: per active token across the batch).", advanced=True,
        title="Loss aggregation", trainer_field="loss_type", memory=True  # (merged micro-steps: training_layout)
    )
    scale_rewards: Literal["group", "batch", "none"] = setting(
        "group", "Divide advantages by the reward std of the group, of the batch, or not at all.", advanced=True,
        title="Scale advantages by std", trainer_field="scale_rewards"
    )
    temperature: float = setting(1.0, "Sampling temperature of the generations (below 0.01 the logits overflow).",
                                 ge=0.01, le=10, trainer_field="temperature")
    top_p: float = setting(1.0, "Nucleus sampling: keep the most likely tokens up to this mass.", gt=0, le=1,
        title="Top-p", trainer_field="top_p")
    top_k: int = setting(0, "Sample only from the k most likely tokens; 0 = no limit.", ge=0, advanced=True,
        title="Top-k", trainer_field="top_k")
    num_iterations: int = setting(1, "Optimizer passes over each generation batch (mu).", ge=1, le=64, advanced=True,
        title="Passes per batch (mu)", trainer_field="num_iterations")
    mask_truncated_completions: bool = setting(
        False, "Leave completions cut at max length out of the loss (DAPO).", advanced=True,
        trainer_field="mask_truncated_completions"
    )
    seed: int = setting(42, "Random seed (data order, LoRA init, sampling).", ge=0, le=2**32 - 1, trainer_field="seed")
    fast_generation: Literal["auto", "quantized", "mixed", "merged", "off"] = setting(
        "auto", "Sampling: GRPO Studio's generators (quantized: reads a 4/8-bit base as stored; merged: a 16-bit "
        "copy with LoRA merged in; mixed: as many merged layers as fit, the rest quantized) or TRL's generate "
        "(off); auto = the fastest that fits this GPU's memory.",
        advanced=True, title="Fast generation", memory=True
    )
    extra: dict[str, Any] = setting(
        {}, "Any other TRL GRPOConfig field, e.g. {repetition_penalty = 1.1}.", advanced=True,
        title="Other GRPOConfig fields"
    )

    @field_validator("fast_generation", mode="before")
    @classmethod
    def _old_fast_generation(cls, value: Any) -> Any:
        # Run files before the generation modes said "on": the merged copy, the only fast path then.
        return "merged" if value == "on" else value

    @field_validator("extra")
    @classmethod
    def _not_managed(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in STUDIO_TRAINER_FIELDS:
                raise ValueError(f"{key!r} is set by GRPO Studio: {STUDIO_TRAINER_FIELDS[key]}")
            if key in MANAGED_TRAINER_FIELDS:
                raise ValueError(f"{key!r} is a setting of its own: use {MANAGED_TRAINER_FIELDS[key]}")
        return value


class EvalSettings(Section):
    source: str = setting("", "Held-out dataset (hub id or file); empty = data.source.",
        title="Held-out data", path_kind="hub_or_local")
    split: str = setting("test", "Held-out split (for hub datasets; a local file is one split).",
        title="Held-out split")
    limit: int = setting(0, "Evaluate at most this many rows; 0 = all.", ge=0, title="Row limit (0 = all)")
    correctness: str = setting(
        "", "Reward function that decides 'correct'; empty = the first whose name contains 'correct'.",
        title="Correctness reward"
    )
    threshold: float = setting(1.0, "A completion is correct when that reward is at least this.",
        title="Correct when reward ≥")
    format: str = setting(
        "", "Reward function that decides 'well formatted' for the format rate; empty = the first whose name "
        "contains 'format', else data.answer_pattern found in the completion.", advanced=True,
        title="Format reward"
    )
    format_threshold: float = setting(
        1.0, "A completion is well formatted when that reward is at least this.", advanced=True,
        title="Well formatted when reward ≥"
    )
    batch_size: int = setting(32, "Prompts generated at once during evaluation.", ge=1, le=4096,
        title="Batch size (prompts)")


class AlarmSettings(Section):
    """Health alarms: thresholds on the logged metrics. Steps count logged steps (run.logging_steps)."""

    enabled: bool = setting(True, "Watch the training metrics and raise health alarms with advice.",
        title="Watch the run")
    zero_spread_steps: int = setting(
        5, "Alarm when every group's completions get the same reward for this many steps in a row; 0 = off.",
        ge=0, le=1_000_000, title="No reward spread for (steps)"
    )
    zero_spread_fraction: float = setting(
        1.0, "Fraction of groups without reward spread that counts as 'every group'.", gt=0, le=1, advanced=True,
        title="Share of groups without spread"
    )
    truncated_fraction: float = setting(
        0.5, "Alarm when at least this fraction of completions is cut at grpo.max_completion_length.",
        gt=0, le=1, title="Truncated share (of completions)"
    )
    truncated_steps: int = setting(
        3, "Steps in a row with that many truncated completions before the alarm; 0 = off.", ge=0, le=1_000_000,
        title="Truncated for (steps)"
    )
    non_finite: bool = setting(True, "Alarm when the loss or the gradient norm is NaN or infinite.",
        title="NaN / infinite loss")
    reward_window: int = setting(
        50, "Alarm when the mean reward has not moved over this many steps; 0 = off.", ge=0, le=1_000_000,
        title="Reward flat over (steps)"
    )
    reward_min_change: float = setting(
        0.01, "Smallest change of the mean reward (second half of the window vs first half) that counts as moving.",
        ge=0, advanced=True, title="Smallest reward change"
    )
    entropy_ratio: float = setting(
        0.1, "Alarm when the token entropy falls below this fraction of its value at the start; 0 = off.",
        ge=0, lt=1, title="Entropy below (of start)"
    )
    entropy_steps: int = setting(
        3, "Steps in a row with collapsed entropy before the alarm.", ge=1, le=1_000_000, advanced=True,
        title="Low entropy for (steps)"
    )


class RunSettings(Section):
    name: str = setting("run", "Name of the run; its folder is output_dir/name-date-time.", title="Run name")
    output_dir: str = setting("runs", "Folder for run folders, relative to the run file (runs of the built-in "
                              "run files go to the user data folder instead).",
        title="Runs folder", path_kind="folder", trainer_field="output_dir")
    logging_steps: int = setting(1, "Log metrics every N optimizer steps.", ge=1,
        title="Log every (steps)", trainer_field="logging_steps")
    save_steps: int = setting(50, "Save a resumable checkpoint every N optimizer steps.", ge=1,
        title="Checkpoint every (steps)", trainer_field="save_steps")
    save_total_limit: int = setting(2, "Keep only the newest N checkpoints; 0 keeps all.", ge=0,
        title="Checkpoints kept (0 = all)", trainer_field="save_total_limit")
    samples_per_step: int = setting(
        0, "Sampled completions stored per step for the samples browser; 0 = all.", ge=0, advanced=True,
        title="Samples stored per step (0 = all)"
    )
    report_to: list[Literal["tensorboard", "trackio", "wandb"]] = setting(
        [], "Also send the metrics to these trackers: tensorboard (RUN_DIR/tensorboard), trackio, wandb; empty = "
        "the run store only. Each needs its package (pip install tensorboard / trackio / wandb).", advanced=True,
        title="Trackers", trainer_field="report_to"
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("use letters, digits, '.', '_' or '-' (it names a folder)")
        return value


class RunConfig(Section):
    model: ModelSettings = ModelSettings()
    quantization: QuantizationSettings = QuantizationSettings()
    lora: LoraSettings = LoraSettings()
    data: DataSettings = DataSettings()
    rewards: RewardSettings = RewardSettings()
    grpo: GrpoSettings = GrpoSettings()
    eval: EvalSettings = EvalSettings()
    alarms: AlarmSettings = AlarmSettings()
    run: RunSettings = RunSettings()

    # ---- derived values -------------------------------------------------------------------
    def generation_batch(self, world_size: int = 1) -> int:
        """Completions generated at once (TRL's generation_batch_size)."""
        if self.grpo.generation_batch_size:
            return self.grpo.generation_batch_size
        g = self.grpo
        return g.per_device_train_batch_size * g.gradient_accumulation_steps * world_size

    def problems(self, world_size: int = 1) -> list["ConfigProblem"]:
        """Cross-field checks that need nothing but the config itself."""
        out: list[ConfigProblem] = []
        g = self.grpo
        batch = self.generation_batch(world_size)
        if batch % g.num_generations:
            how = (
                f"grpo.generation_batch_size {batch}"
                if g.generation_batch_size
                else f"{g.per_device_train_batch_size} completions x {g.gradient_accumulation_steps} "
                f"accumulation steps" + (f" x {world_size} GPUs" if world_size > 1 else "")
            )
            out.append(
                ConfigProblem(
                    "grpo.num_generations",
                    f"{g.num_generations} does not divide the generation batch {batch} ({how})",
                )
            )
        if g.generation_batch_size and g.generation_batch_size % (g.per_device_train_batch_size * world_size):
            out.append(
                ConfigProblem(
                    "grpo.generation_batch_size",
                    f"{g.generation_batch_size} is not a multiple of per_device_train_batch_size "
                    f"{g.per_device_train_batch_size}",
                )
            )
        total = self.data.max_prompt_length + g.max_completion_length
        if total > self.model.max_seq_length:
            out.append(
                ConfigProblem(
                    "model.max_seq_length",
                    f"{self.model.max_seq_length} is shorter than data.max_prompt_length "
                    f"{self.data.max_prompt_length} + grpo.max_completion_length {g.max_completion_length} = {total}",
                )
            )
        if not self.model.name.strip():
            out.append(ConfigProblem("model.name", "is empty: give a hub id or a local folder"))
        if not self.data.source.strip():
            out.append(ConfigProblem("data.source", "is empty: give a hub dataset id or a local file"))
        if not self.data.prompt_column.strip():
            out.append(ConfigProblem("data.prompt_column", "is empty"))
        if self.quantization.load_in != "16bit" and not self.lora.enabled:
            out.append(
                ConfigProblem(
                    "quantization.load_in",
                    f"{self.quantization.load_in} weights cannot be trained directly: turn lora.enabled on",
                )
            )
        for i, fn in enumerate(self.rewards.functions):
            if bool(fn.name) == bool(fn.model):
                out.append(
                    ConfigProblem(f"rewards.functions[{i}]", "give either name (a function) or model, not both")
                )
        labels = [fn.label for fn in self.rewards.functions]
        for label in {x for x in labels if labels.count(x) > 1}:
            out.append(ConfigProblem("rewards.functions", f"{label!r} is listed twice"))
        return out


def _trainer_fields() -> dict[str, str]:
    """Every GRPOConfig field GRPO Studio sets: field -> the setting to use instead (or why it is fixed)."""
    out: dict[str, str] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            item = (getattr(info.annotation, "__args__", None) or [None])[0]
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                walk(info.annotation, name)
            elif isinstance(item, type) and issubclass(item, BaseModel):  # a table: list[RewardFunction]
                walk(item, f"{prefix}.{name}[]")
            for field in (info.json_schema_extra or {}).get("trainer_field", ()):
                out[field] = f"{prefix}.{name}"

    walk(RunConfig, "")
    out.update({field: f"set by GRPO Studio: {why}" for field, why in STUDIO_TRAINER_FIELDS.items()})
    return out


# GRPOConfig fields that the run file manages itself: setting them through `grpo.extra` would silently
# fight the studio, so validation rejects them and names the right key (or why the value is fixed).
MANAGED_TRAINER_FIELDS = _trainer_fields()


@dataclass(frozen=True)
class ConfigProblem:
    """One problem with a run file: the field path and the reason, as users read them."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ConfigError(Exception):
    """A run file that cannot be used, with every problem found."""

    def __init__(self, problems: list[ConfigProblem], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__("\n".join(str(p) for p in problems))
