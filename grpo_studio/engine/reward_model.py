"""A sequence-classification model (hub id or local folder) as a reward function.

A run file lists one as `[[rewards.functions]] model = "..."`. Training loads it here (so a bad path
or a model without a classification head fails before the base model loads, naming the setting) and
hands the loaded model to TRL's GRPOTrainer, which scores each `prompt + completion` with it: the
first logit. `RewardModelFunction` does the same scoring outside the trainer, for the reward test
bench and evaluation, so what you check is what trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpo_studio.config import LoadedRun
from grpo_studio.engine.model import ModelError, _hint_for_load_error, _short
from grpo_studio.engine.rewards import check_rewards


@dataclass
class RewardModel:
    label: str
    model: Any  # transformers PreTrainedModel with a sequence-classification head
    tokenizer: Any


def reward_model_field(run: LoadedRun, label: str) -> str:
    """The setting that names this reward model, for error messages."""
    for i, fn in enumerate(run.config.rewards.functions):
        if fn.model and fn.label == label:
            return f"rewards.functions[{i}].model"
    return "rewards.functions"


def load_reward_model(run: LoadedRun, name: str, label: str, dtype: str = "float32") -> RewardModel:
    """Load the model and its tokenizer on the CPU; the trainer (or `to`) moves it to its device."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    field = reward_model_field(run, label)
    local = run.resolve(name)
    path = str(local) if local.is_dir() else name
    if not local.is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise ModelError(f"folder not found: {local}", field=field)
    trust = run.config.model.trust_remote_code
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, trust_remote_code=trust, dtype=getattr(torch, dtype))
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types; all mean "cannot load"
        raise ModelError(f"cannot load reward model {name!r}: {_short(exc)}", field=field,
                         hint=_hint_for_load_error(name, exc)) from None
    # As TRL does: the score is read at the last non-pad token, so the model must know the pad id.
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    model.eval()
    return RewardModel(label, model, tokenizer)


def reward_model_texts(prompts: list, completions: list, tokenizer: Any) -> list[str]:
    """What the reward model reads, exactly as TRL builds it: prompt + completion, chat template applied
    to conversations (trl.data_utils.apply_chat_template on {"messages": ...}; a test holds them equal)."""
    if prompts and isinstance(prompts[0], list):
        return [tokenizer.apply_chat_template(p + c, tokenize=False) for p, c in zip(prompts, completions)]
    return [p + c for p, c in zip(prompts, completions)]


class RewardModelFunction:
    """Scores completions with a reward model, outside the trainer; called like any reward function."""

    def __init__(self, reward_model: RewardModel, batch_size: int = 16):
        self.reward_model = reward_model
        self.__name__ = reward_model.label
        self.batch_size = batch_size
        self.path = None
        self.line = None

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        import torch

        rm = self.reward_model
        texts = reward_model_texts(prompts, completions, rm.tokenizer)
        device = next(rm.model.parameters()).device
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = rm.tokenizer(text=texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                 padding_side="right", add_special_tokens=False).to(device)
            with torch.inference_mode():
                scores += rm.model(**batch).logits[:, 0].float().tolist()
        return check_rewards(self.__name__, scores, len(completions))

    def close(self) -> None:
        pass
