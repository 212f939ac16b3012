"""Load the base model and its tokenizer from a hub id or a local folder.

Both go through the same transformers calls; a local folder is simply a path. The device and
dtype are chosen from the run file (`auto` = a CUDA GPU in bfloat16 where supported, float16 on
older GPUs, float32 on the CPU); bitsandbytes 4-bit/8-bit is used when the run file asks for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_studio.config import LoadedRun, ModelSettings
from grpo_studio.engine import hub


class ModelError(Exception):
    """The model or tokenizer cannot be loaded; `field` names the setting to fix."""

    def __init__(self, message: str, field: str = "model.name", hint: str = ""):
        self.field = field
        self.message = message
        self.hint = hint
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda" | "cpu"
    dtype: str  # "bfloat16" | "float16" | "float32"
    local_rank: int = 0

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def model_path(run: LoadedRun) -> str:
    """A local folder (absolute) when the name points at one, else the hub id unchanged."""
    name = run.config.model.name.strip()
    candidate = run.resolve(name)
    if candidate.is_dir():
        return str(candidate)
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        raise ModelError(f"folder not found: {candidate}")
    return name


def choose_placement(settings: ModelSettings) -> Placement:
    import torch

    cuda = torch.cuda.is_available()
    device = settings.device if settings.device != "auto" else ("cuda" if cuda else "cpu")
    if device == "cuda" and not cuda:
        raise ModelError("is 'cuda' but no CUDA GPU is visible to PyTorch", field="model.device",
                         hint="Set model.device = \"auto\" to train on the CPU, or check the GPU driver.")
    dtype = settings.dtype
    if dtype == "auto":
        if device == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    if device == "cpu" and dtype == "float16":
        raise ModelError("float16 training is not supported on the CPU; use float32 or bfloat16",
                         field="model.dtype")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cpu" and settings.cpu_threads:
        # Small matrices gain nothing from more threads, and threads waiting for a busy core cost a lot.
        torch.set_num_threads(settings.cpu_threads)
    return Placement(device, dtype, local_rank)


def skip_unused_bitsandbytes(run: LoadedRun, placement: Placement) -> bool:
    """Keep bitsandbytes out of a CPU run that neither quantizes nor uses an 8-bit optimizer.

    peft and TRL import it whenever it is installed; on the CPU that costs several CPU-seconds of
    torch.compile set-up per process (the demo's start on a busy machine) and, on CPUs with AVX-512
    BF16, a 'Failed to load CPU gemm_4bit_forward from kernels-community' notice, for nothing. A None
    in sys.modules makes it look absent to import and find_spec alike. Returns whether it did."""
    import sys

    cfg = run.config
    optimizer = cfg.grpo.optimizer.lower()
    if placement.device != "cpu" or cfg.quantization.load_in != "16bit" or "8bit" in optimizer \
            or "bnb" in optimizer or "paged" in optimizer or "bitsandbytes" in sys.modules:
        return False
    sys.modules["bitsandbytes"] = None  # type: ignore[assignment]
    return True


def read_model_config(path_or_id: str, revision: str = "") -> dict[str, Any] | None:
    """config.json of a local folder, or of a hub model when it is cached; None if unknown."""
    local = Path(path_or_id)
    if local.is_dir():
        f = local / "config.json"
        if not f.is_file():
            raise ModelError(f"{local} has no config.json: is it a transformers model folder?")
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{f}: unreadable config.json ({exc})") from None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path_or_id, "config.json", revision=revision or None)
    except Exception:  # noqa: BLE001 - a malformed id just means "not cached"
        return None
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text(encoding="utf-8"))
    return None


def context_length(model_config: dict[str, Any]) -> int | None:
    text = model_config.get("text_config", model_config)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(text.get(key), int):
            return text[key]
    return None


def tokenizer_class(name: str) -> Any:
    """AutoTokenizer, except for a local folder whose tokenizer_config.json declares a generic
    `tokenizers` tokenizer: some transformers versions force a model type's own tokenizer class
    (e.g. Qwen2's BPE) on such folders, which mangles a custom vocabulary."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config = Path(name) / "tokenizer_config.json"
    if config.is_file():
        try:
            declared = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
        except (OSError, json.JSONDecodeError):
            declared = None
        if declared in ("TokenizersBackend", "PreTrainedTokenizerFast"):
            return PreTrainedTokenizerFast
    return AutoTokenizer


def load_tokenizer(run: LoadedRun) -> Any:
    cfg = run.config.model
    name = model_path(run)
    hub_id = not Path(name).is_dir()
    if hub_id:
        hub.ensure()  # a few seconds at most; offline from the cache if the hub does not answer
    try:
        tok = tokenizer_class(name).from_pretrained(
            name, revision=cfg.revision or None, trust_remote_code=cfg.trust_remote_code
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, HF errors...
        raise load_error(f"cannot load the tokenizer of {name!r}", name, exc, hub_id) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation continues prompts on the right
    return tok


def quantization_config(run: LoadedRun, placement: Placement) -> Any:
    from grpo_studio.engine.library_configs import bnb_config

    q = run.config.quantization
    if q.load_in == "16bit":
        return None
    if placement.device != "cuda":
        raise ModelError(f"{q.load_in} loading needs a CUDA GPU (bitsandbytes); this run is on the CPU",
                         field="quantization.load_in", hint="Use load_in = \"16bit\" on the CPU.")
    return bnb_config(q, placement)


def load_model(run: LoadedRun, placement: Placement) -> Any:
    """The base model, on its device, in its dtype, quantized if asked; not yet wrapped in LoRA."""
    from transformers import AutoModelForCausalLM

    cfg = run.config.model
    name = model_path(run)
    kwargs: dict[str, Any] = {
        "revision": cfg.revision or None,
        "trust_remote_code": cfg.trust_remote_code,
        "dtype": placement.torch_dtype,
    }
    if cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    quant = quantization_config(run, placement)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if placement.device == "cuda":
        kwargs["device_map"] = {"": placement.local_rank}
    hub_id = not Path(name).is_dir()
    if hub_id:
        hub.ensure()
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise load_error(f"cannot load {name!r}", name, exc, hub_id) from None
    return model


def load_error(what: str, name: str, exc: BaseException, hub_id: bool, field: str = "model.name") -> ModelError:
    """A load failure as a ModelError; a hub id that is not cached while the hub is unreachable says so
    (HF_HUB_OFFLINE, the local-folder route) instead of repeating the library's connection error."""
    state = hub.state()
    if hub_id and state is not None and not state.online and "trust_remote_code" not in str(exc):
        return ModelError(hub.not_on_this_machine("model", name, field), field=field)
    return ModelError(f"{what}: {_short(exc)}", field=field, hint=_hint_for_load_error(name, exc))


def check_target_modules(model: Any, target_modules: list[str] | str) -> None:
    """Every LoRA target must name a linear layer of this model; the error lists the real ones."""
    if isinstance(target_modules, str):
        return
    import torch

    linear_names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            linear_names.add(full_name.rsplit(".", 1)[-1])
    missing = [m for m in target_modules if m not in linear_names]
    if missing:
        raise ModelError(
            f"{', '.join(repr(m) for m in missing)} not found in this model; its linear layers are: "
            f"{', '.join(sorted(linear_names))} (or use \"all-linear\")",
            field="lora.target_modules",
        )


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _hint_for_load_error(name: str, exc: BaseException) -> str:
    text = str(exc)
    if "trust_remote_code" in text:
        return "This model ships its own code: set model.trust_remote_code = true if you trust it."
    if "offline" in text.lower() or "connect" in text.lower() or "resolve" in text.lower():
        return (f"{name!r} is not a local folder and the Hugging Face Hub could not be reached. "
                "Download the model once with network access, or point model.name at a local folder.")
    return ""
