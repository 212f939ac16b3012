"""VRAM estimate of a run before anything is loaded: weights, LoRA, optimizer, activations, KV cache.

Computed from the model's config.json alone (no weights), so `validate` and the window can show
it in a fraction of a second. It predicts PyTorch's peak allocated memory on one GPU (the CUDA
context, ~0.5 GiB, and allocator slack come on top). `grpo-studio bench` prints it beside the
measured peak; the activation factors below were checked against those measurements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from grpo_studio.config import RunConfig

GIB = 2**30

# Bytes per parameter of a bitsandbytes 4-bit weight: packed nibbles plus the block scales
# (64-value blocks; with double quantization the scales themselves take 8 bits + a second level).
BNB4_BYTES = {True: 0.5 + 1.0 / 64 + 4.0 / (64 * 256), False: 0.5 + 4.0 / 64}


@dataclass(frozen=True)
class Shape:
    """The sizes of a decoder-only transformer, read from its config.json."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Shape":
        c = config.get("text_config", config)
        heads = c["num_attention_heads"]
        return cls(
            hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads,
            kv_heads=c.get("num_key_value_heads") or heads,
            head_dim=c.get("head_dim") or c["hidden_size"] // heads,
            intermediate=c.get("intermediate_size") or 4 * c["hidden_size"], vocab=c["vocab_size"],
            tied=bool(c.get("tie_word_embeddings", False)),
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection of one layer."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.layers * 2 * self.hidden + self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes


@dataclass
class VramEstimate:
    parts: dict[str, float] = field(default_factory=dict)  # bytes by component
    peak_phase: str = ""  # "generation" or "training": the phase that sets the peak
    generation_mode: str = "trl"  # which generator the estimate is for (see generation_mode.py)
    merged_layers: int = 0  # "mixed" mode: how many layers the generator merges
    mode_reason: str = ""  # why that mode, when it was chosen for a card's memory
    layout: str = ""  # the training layout the estimate assumes (training_layout.Layout.summary)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def gib(self) -> float:
        return self.total / GIB

    def lines(self) -> list[str]:
        width = max(len(k) for k in self.parts)
        out = [f"{k:<{width}}  {v / GIB:7.2f} GiB" for k, v in self.parts.items()]
        return out + [f"{'total (peak, ' + self.peak_phase + ')':<{width}}  {self.gib():7.2f} GiB"]


def _dtype_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def estimate(shape: Shape, cfg: RunConfig, *, dtype: str = "bfloat16", generation_mode: str = "trl",
             merged_layers: int = 0, world_size: int = 1, liger: bool = False, packed: bool = False) -> VramEstimate:
    """Peak allocated bytes on one GPU for this run's model, LoRA, batch and generation settings.

    The step has two phases that never overlap: generation (KV cache, sampling buffers, and the fast
    generator's weights) and training (activations). What lives through both (weights, LoRA, gradients,
    optimizer state) is counted once; the peak is the larger phase on top of it."""
    g, lora = cfg.grpo, cfg.lora
    wb = _dtype_bytes(dtype)
    quant = cfg.quantization.load_in
    parts: dict[str, float] = {}

    # Weights: quantized projections, 16-bit embeddings / head / norms.
    other = shape.params - shape.linear_params
    if quant == "4bit":
        parts["weights"] = shape.linear_params * BNB4_BYTES[cfg.quantization.double_quant] + other * wb
    elif quant == "8bit":
        parts["weights"] = shape.linear_params * (1 + 4.0 / shape.hidden) + other * wb
    else:
        parts["weights"] = shape.params * wb

    # Trainable parameters, their gradients and the optimizer's state.
    targets = lora_targets(shape, cfg)
    if lora.enabled:
        trainable = shape.layers * sum(lora.r * (a + b) for a, b in targets.values())
        # PEFT keeps adapters in float32 over a 16-bit base; TRL casts them to bf16 over a quantized one.
        pb = 2 if quant != "16bit" else 4
    else:
        trainable, pb = shape.params, wb
    state = {"adamw_torch": 2 * pb, "adamw_8bit": 2, "paged_adamw_8bit": 2, "adafactor": 1, "sgd": 0}[g.optimizer]
    parts["trainable params"] = trainable * pb if lora.enabled else 0
    parts["gradients"] = trainable * pb
    parts["optimizer state"] = trainable * state

    # Generation: the KV cache of one generation batch, sampling buffers over the vocabulary, and what
    # the generator holds for the weights (generation_weight_bytes).
    batch = cfg.generation_batch(world_size) // world_size
    prompt, completion = cfg.data.max_prompt_length, g.max_completion_length
    kv = shape.kv_bytes_per_token(wb) * batch * (prompt + completion)
    sampling = batch * shape.vocab * 4 * 4  # fp32 logits, scaled copy, noise, log-softmax
    # The prompts' forward pass (prefill), all rows at once: at the MLP the gate/up output, its
    # activation and product (4 x intermediate) beside a few hidden-sized tensors, some in float32.
    # Measured on an H200 (7B shape, 32 prompts of 128 tokens): the mixed mode's peak sat 0.74 GiB
    # above the estimate without this term, at 10 and at 18 merged layers alike; this gives 0.80.
    prefill = prompt * (4 * shape.intermediate + 8 * shape.hidden) * wb  # a row
    generation: dict[str, float] = {}
    if generation_mode == "trl":
        # transformers' dynamic cache grows by concatenation: briefly two copies of the last layer's.
        generation["KV cache, sampling"] = kv + sampling
        generation["prefill activations"] = prefill * batch
    else:
        weights = generation_weight_bytes(shape, cfg, generation_mode, wb, merged_layers)
        if weights:
            generation[f"generation weights ({generation_mode})"] = weights
        generation["KV cache (static), sampling"] = kv + sampling
        # The fast generator prefills each distinct prompt once (fast_generation._distinct_rows).
        generation["prefill activations"] = prefill * distinct_prompts(batch, g.num_generations)

    micro = g.per_device_train_batch_size
    seq = prompt + completion
    # On CUDA, LoRA layers without dropout train through fused_lora.py, which keeps fewer intermediates.
    fused = lora.enabled and lora.dropout == 0
    act_per_token = activation_bytes_per_token(shape, lora.gradient_checkpointing != "off", wb, fused=fused,
                                               liger=liger)
    # TRL's fused LM head scores the completion tokens in [<=4096 tokens, <=32768 vocab] tiles (autocast dtype).
    head_tiles = min(micro * completion, 4096) * min(32768, shape.vocab) * wb + micro * seq * 4 * 3
    training_peak = training_tokens(cfg, packed) * act_per_token + head_tiles
    if sum(generation.values()) >= training_peak:
        parts.update(generation)
        phase = "generation"
    else:
        parts["training activations"] = training_peak
        phase = "training"
    return VramEstimate(parts, phase, generation_mode, merged_layers if generation_mode == "mixed" else 0)


def distinct_prompts(rows: int, num_generations: int) -> int:
    """Prompts in a generation batch of `rows` completions, `num_generations` a prompt."""
    return max(1, rows // max(1, num_generations))


def training_tokens(cfg: RunConfig, packed: bool) -> int:
    """Tokens of one micro-step's forward at full lengths: TRL's grid, or packed (packed_layout.py) each
    prompt once for its completions, where that saves the share packing asks for. The completions of a
    generation batch are shuffled across its micro-steps, so a micro-step holds nearly every prompt of the
    batch once it has more completions than the batch has prompts."""
    from grpo_studio.engine.packing_rule import pays

    g = cfg.grpo
    micro, prompt, completion = g.per_device_train_batch_size, cfg.data.max_prompt_length, g.max_completion_length
    grid = micro * (prompt + completion)
    prompts = distinct_prompts(cfg.generation_batch(1), g.num_generations)
    tokens = min(micro, prompts) * prompt + micro * completion
    return tokens if packed and pays(tokens, grid) else grid


def lora_targets(shape: Shape, cfg: RunConfig) -> dict[str, tuple[int, int]]:
    if cfg.lora.target_modules == "all-linear":
        return shape.linear_shapes()
    return {k: v for k, v in shape.linear_shapes().items() if k in cfg.lora.target_modules}


# The projections the fast generator computes together (one input each); fast_weights.layer_groups.
PROJECTION_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("o_proj",), ("down_proj",))


def lora_stack_params(shape: Shape, cfg: RunConfig) -> int:
    """Values in one layer's LoRA stacks as the quantized generator holds them (fast_weights.QuantProjection):
    per group, the adapted projections' A matrices stacked [R, K] and their B matrices as one
    block-diagonal [N, R] over all the group's outputs, zeros included."""
    sizes, targets = shape.linear_shapes(), lora_targets(shape, cfg)
    total = 0
    for names in PROJECTION_GROUPS:
        rank = cfg.lora.r * sum(name in targets for name in names)
        if rank:
            total += rank * (sizes[names[0]][0] + sum(sizes[name][1] for name in names))
    return total


def generation_weight_bytes(shape: Shape, cfg: RunConfig, mode: str, wb: int = 2, merged_layers: int = 0) -> float:
    """Bytes the fast generator allocates for weights during a generation, beyond the trained model.

    merged: a 16-bit copy of every projection with the LoRA update merged in (and of a LoRA-trained
    head). quantized: it reads the stored quantized weights as they are, with 16-bit stacks of the
    LoRA factors, and a scratch buffer to dequantize one projection at a time for the prompts (prefill).
    mixed: the merged copy of `merged_layers` layers, the quantized mode's stacks for the others."""
    if mode == "merged":
        return shape.linear_params * wb
    if mode in ("quantized", "mixed"):
        merged = min(merged_layers, shape.layers) if mode == "mixed" else 0
        per_layer_stacks = lora_stack_params(shape, cfg) if cfg.lora.enabled else 0
        quantized = shape.layers - merged
        scratch = max(a * b for a, b in shape.linear_shapes().values()) if quantized else 0
        copy = merged * shape.linear_params // shape.layers
        return (copy + quantized * per_layer_stacks + scratch) * wb
    return 0.0


def activation_bytes_per_token(shape: Shape, checkpointing: bool, wb: int, fused: bool = False,
                               liger: bool = False) -> float:
    """Bytes kept for the backward pass per token of a micro-batch.

    The factors were fitted to peaks measured by `grpo-studio bench` on an H200 (Qwen2.5-1.5B shape,
    LoRA r=16 on every projection, 8 and 32 sequences of 384 tokens): with checkpointing the recompute
    of a layer holds ~1.6 layers' intermediates at once (its outputs' gradients beside them). Without
    checkpointing, PEFT's LoRA forward keeps 1.06 layers' worth a layer; the fused update
    (`fused`, fused_lora.py) 0.91 (fitted on 2026-12-02 to the 1.5B bf16 and 0.5B 4-bit peaks, 32
    sequences: 34.9 and 15.8 GiB measured, both 0.91 within 1%). With Liger's kernels (`liger`,
    liger_layers.py) the norms keep no float32 copy of their input and SwiGLU not its SiLU output (its
    backward recomputes it)."""
    h, i = shape.hidden, shape.intermediate
    per_layer_full = wb * (10 * h + 4 * i) + 4 * h  # attention + MLP intermediates, fp32 norm inputs
    if liger:
        per_layer_full -= 4 * h + wb * i
    if checkpointing:
        # One checkpointed input per layer, and the intermediates of the layer being recomputed.
        return shape.layers * h * wb + 1.6 * per_layer_full
    # Refitted with Liger on (2026-12-03, call W, H200, packed prompts): 1.00 of the reduced figure at the
    # 1.5B bf16 and 0.5B 4-bit shapes (22.34 and 9.93 GiB measured; 0.99 and 1.00 each).
    return (1.0 if liger and fused else 0.91 if fused else 1.06) * shape.layers * per_layer_full


def packs_prompts(model_config: dict[str, Any]) -> bool:
    """Whether training on a GPU packs micro-batches with each prompt once (run.py's switches, and a model
    the packed attention serves: packed_logps.padding_free_blocker and prompts_can_be_shared, from config.json)."""
    from grpo_studio.engine.generation_mode import SUPPORTED_MODEL_TYPES, sliding_window_in_use

    c = model_config.get("text_config", model_config)
    if os.environ.get("GRPO_STUDIO_PADDING_FREE", "1") == "0" or os.environ.get("GRPO_STUDIO_SHARED_PROMPTS", "1") == "0":
        return False
    return (c.get("model_type") in SUPPORTED_MODEL_TYPES and c.get("_attn_implementation", "sdpa") in (None, "sdpa")
            and not sliding_window_in_use(c) and not c.get("attention_dropout"))


def estimate_for_run(run: Any, generation_mode: str | None = None, capacity_bytes: float | None = None,
                     on_gpu: bool = True) -> VramEstimate | None:
    """The estimate for a loaded run file, or None when the model's config.json isn't at hand.

    `generation_mode` None: the mode the run would use (generation_mode.choose), on a card with
    `capacity_bytes` of memory for this process when that is known."""
    from grpo_studio.engine.model import model_path, read_model_config

    config = read_model_config(model_path(run), run.config.model.revision)
    if config is None:
        return None
    return estimate_for_config(config, run.config, generation_mode, capacity_bytes, on_gpu=on_gpu)


def estimate_for_config(model_config: dict[str, Any], cfg: RunConfig, generation_mode: str | None = None,
                        capacity_bytes: float | None = None, on_gpu: bool = True, world_size: int = 1,
                        merged_layers: int = 0, liger: bool | None = None, packed: bool | None = None) -> VramEstimate:
    """`estimate_for_run` for a config.json already read. With `generation_mode` None, the estimate of
    the step plan this run would get (step_plan.py): its generation mode and training layout. `liger`
    and `packed` None: whether training on this GPU would use Liger's kernels (liger_layers.py) and pack
    each prompt once for its completions (run.py, packed_layout.py)."""
    from grpo_studio.engine.liger_layers import would_install
    from grpo_studio.engine.step_plan import plan_step

    dtype = cfg.model.dtype if cfg.model.dtype != "auto" else "bfloat16"
    shape = Shape.from_config(model_config)
    if liger is None:
        liger = on_gpu and would_install(model_config)
    if packed is None:
        packed = on_gpu and packs_prompts(model_config)
    if generation_mode is not None:
        return estimate(shape, cfg, dtype=dtype, generation_mode=generation_mode, merged_layers=merged_layers,
                        world_size=world_size, liger=liger, packed=packed)
    plan = plan_step(cfg, model_config, capacity_bytes, on_gpu=on_gpu, world_size=world_size)
    est = estimate(shape, plan.config, dtype=dtype, generation_mode=plan.mode.mode,
                   merged_layers=plan.mode.merged_layers, world_size=world_size, liger=liger, packed=packed)
    est.mode_reason = plan.mode.reason
    est.layout = plan.layout.summary()
    return est
