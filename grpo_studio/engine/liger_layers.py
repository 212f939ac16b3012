"""Liger's fused kernels for the training forward's RMSNorm, SwiGLU and rotary embeddings, on CUDA.

Why: at the Qwen2.5-7B shape in 4-bit, once the training half was packed and laid out as one micro-step,
it was bound by the GPU, and a profile by input shape (H200, fixed lengths, `GRPO_STUDIO_PROFILE_SHAPES=1`)
put ~150 ms of its 0.88 s of GPU time in those three layers' elementwise kernels: the norms' float32
copies, powers, means and products, SwiGLU's SiLU and product (forward, recompute and backward over
[tokens, 18944]), and the rotary embedding's products and concatenations. Liger-Kernel (LinkedIn) fuses
each into one Triton kernel forward and one backward. In the same call the training half took 0.83 s
with them against 0.96 s without (7B, mixed mode, `--vram-limit 16`).

The same arithmetic as transformers' layers up to rounding order (the GPU test compares log-probs and
LoRA gradients). The fused cross-entropy is left out: TRL's fused LM head computes the log-probs.
On the CPU nothing changes, so a CPU run stays bit-identical to plain TRL. `GRPO_STUDIO_LIGER=0` turns
it off (a measurement's knob); without the package the log says what it would bring.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

INSTALL_HINT = "pip install liger-kernel: ~14% faster training half measured at the 7B shape"


def install(model: Any) -> str:
    """Patch the model's norms, MLPs and rotary embeddings with Liger's kernels where it can; returns
    the log line that says what was done, or why not."""
    from grpo_studio.engine.fast_weights import causal_lm

    if os.environ.get("GRPO_STUDIO_LIGER", "1") == "0":
        return "training: Liger kernels off (GRPO_STUDIO_LIGER=0)"
    if importlib.util.find_spec("liger_kernel") is None:
        return f"training: Liger kernels not installed ({INSTALL_HINT})"
    lm = causal_lm(model)
    config = lm.config.get_text_config()
    layers = layers_for(config.model_type, getattr(config, "hidden_act", None))
    if layers is None:
        return f"training: no Liger kernels for model type {config.model_type!r}"
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    # Given an instance, Liger patches its modules, and also the modeling module's classes (for models
    # made later) and its rotary function (which the attention layers call by that global name). The
    # classes are put back: a model made later in this process, on any device, is transformers' own.
    modeling = sys.modules[type(lm).__module__]
    classes = {name: value for name, value in vars(modeling).items()
               if isinstance(value, type) and name.endswith(("RMSNorm", "MLP"))}
    MODEL_TYPE_TO_APPLY_LIGER_FN[config.model_type](model=lm, **layers)
    for name, value in classes.items():
        setattr(modeling, name, value)
    names = [name for name, on in (("RMSNorm", layers["rms_norm"]), ("SwiGLU", layers["swiglu"]),
                                   ("rotary embeddings", layers["rope"])) if on]
    return f"training: Liger kernels for {', '.join(names)}"


def would_install(model_config: dict[str, Any]) -> bool:
    """Whether `install` would patch a model of this config.json on a GPU (the VRAM estimate asks)."""
    config = model_config.get("text_config", model_config)
    return (os.environ.get("GRPO_STUDIO_LIGER", "1") != "0" and importlib.util.find_spec("liger_kernel") is not None
            and layers_for(config.get("model_type", ""), config.get("hidden_act", "silu")) is not None)


def layers_for(model_type: str, hidden_act: str | None) -> dict[str, bool] | None:
    """The keyword arguments of Liger's per-architecture function for this model (None: not patched).
    The families the fast path serves, whose Liger functions patch these layers of an instance and no
    more; SwiGLU only over a SiLU MLP (patching an instance, Liger does not check the activation)."""
    from grpo_studio.engine.generation_mode import SUPPORTED_MODEL_TYPES

    if model_type not in SUPPORTED_MODEL_TYPES:
        return None
    return dict(rms_norm=True, rope=True, swiglu=hidden_act in ("silu", "swish"),
                cross_entropy=False, fused_linear_cross_entropy=False)
