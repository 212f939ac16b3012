"""Fast sampling of GRPO completions: the policy's own weights, a static KV cache, CUDA graphs.

Why: inside TRL's GRPOTrainer, `model.generate` on a PEFT model spends most of every step
launching small kernels from Python (LoRA doubles the matmuls of every projection); measured on
an H100, generation ran at 1-3% of the memory-bandwidth bound and took 85-95% of each step.

How:
- Projection weights in one of three modes (fast_weights.py), q/k/v and gate/up fused:
  "merged" (default): a 16-bit copy of the projections with the LoRA update merged in (a
  quantized base is dequantized first): one dense matmul per group, at most one 16-bit copy of
  the weights in extra memory.
  "quantized" (4-bit or 8-bit bitsandbytes base): no copy; each decode step reads the packed
  weights through a fused dequantize-matmul kernel (quant_matmul.py) and applies LoRA as its
  low-rank product, so it reads about a quarter of the bytes of a bf16 copy; extra memory is the
  stacked LoRA factors (117 MiB at 7B with r=16 everywhere) and, during a prefill, one
  dequantized weight.
  "mixed" (a quantized base on a card with room for part of the copy): the first
  `merged_layers` layers merged, the rest quantized. The merged layers decode faster (on an H200
  the merged copy's step took 4.97 ms at the 7B shape, the quantized one 5.66 ms; 6.3-6.6 against
  10.5 ms when the mode was new), so the memory a card has left over buys speed layer by layer.
  Embeddings, norms and the LM head are shared with the trained model. `sync()` refreshes the
  copies in place after every optimizer step: the policy that samples is the policy being trained.
- Prompts are prefilled once into a preallocated KV cache (each distinct prompt once, its keys and
  values copied to the rows that share it: GRPO samples several completions a prompt); every
  decode step then has the same shapes, so on CUDA one step (forward, sampling, bookkeeping) is
  captured as a CUDA graph and replayed, which removes the per-kernel launch cost. On the CPU the
  same code runs eagerly.
  Between the projections, the step's element-wise work (norms, RoPE, residual adds, the gated
  activation) is fused by torch.compile into a few kernels a layer (decode_ops.py).
- Positions are buffer indices, exactly as the training forward sees a left-padded prompt
  followed by its completion, so log-probs match the training forward (RoPE is shift-invariant).

Supported: decoder-only models of the Llama family (llama, qwen2, qwen3, mistral without a
sliding window); 16-bit, bitsandbytes 4-bit or 8-bit base weights; LoRA adapters or full
fine-tuning. Anything else raises `Unsupported` and the trainer falls back to TRL's generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from grpo_studio.engine.decode_ops import FusedOps, fusion_wanted, plain_activation, rms
from grpo_studio.engine.fast_weights import (Unsupported, base_linear, causal_lm, is_quantized, layer_groups,
                                             module_weight, planned_projection_bytes, projection)

SUPPORTED_MODEL_TYPES = {"llama", "qwen2", "qwen3", "mistral"}
WEIGHT_MODES = ("merged", "mixed", "quantized")

__all__ = ["FastGenerator", "Generation", "SamplingSettings", "Unsupported", "WEIGHT_MODES"]


@dataclass
class SamplingSettings:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_new_tokens: int = 0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    suppress_tokens: tuple[int, ...] = ()


@dataclass
class Generation:
    completion_ids: list[list[int]]  # each ends with its EOS token when it stopped before the limit
    logprobs: list[list[float]]  # log p(token) under the sampling temperature, before top-k/top-p


def check_supported(model: Any, weights: str = "merged") -> Any:
    """The text config of a model the fast path can serve in this weights mode (else Unsupported)."""
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights={weights!r}: one of {WEIGHT_MODES}")
    config = causal_lm(model).config.get_text_config()
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise Unsupported(f"model type {config.model_type!r} (supported: {sorted(SUPPORTED_MODEL_TYPES)})")
    # Qwen2/Qwen3 switch the window on with `use_sliding_window`; Mistral has no switch: a set
    # `sliding_window` slides. A window as long as the model's context never does.
    window = getattr(config, "sliding_window", None)
    sliding = bool(window) and getattr(config, "use_sliding_window", True) \
        and window < getattr(config, "max_position_embeddings", window + 1)
    if sliding or "sliding_attention" in (getattr(config, "layer_types", None) or ()):
        raise Unsupported(f"sliding-window attention (window {window})")
    if weights != "merged" and not any(is_quantized(m) for layer in causal_lm(model).model.layers
                                       for group in layer_groups(layer).values() for m in group):
        raise Unsupported(f"weights={weights!r} needs a 4-bit or 8-bit (bitsandbytes) base")
    return config


def layer_weights(weights: str, index: int, merged_layers: int) -> str:
    """The mode of one layer's projections: "mixed" merges the first `merged_layers` layers."""
    if weights != "mixed":
        return weights
    return "merged" if index < merged_layers else "quantized"


class _Layer:
    """One decoder layer as the generator uses it: norms, and four projection groups."""

    def __init__(self, layer: Any, dtype: torch.dtype, weights: str):
        attn = layer.self_attn
        self.input_norm = _norm(layer.input_layernorm)
        self.post_norm = _norm(layer.post_attention_layernorm)
        self.q_norm = _norm(attn.q_norm) if hasattr(attn, "q_norm") else None  # Qwen3
        self.k_norm = _norm(attn.k_norm) if hasattr(attn, "k_norm") else None
        self.act = plain_activation(layer.mlp.act_fn)
        groups = layer_groups(layer)
        self.qkv, self.gate_up, self.o, self.down = (projection(groups[g], dtype, weights)
                                                     for g in ("qkv", "gate_up", "o", "down"))
        self.q_size, self.kv_size = (base_linear(m).out_features for m in groups["qkv"][:2])
        self.inter = base_linear(groups["gate_up"][0]).out_features

    @property
    def projections(self) -> tuple[Any, ...]:
        return self.qkv, self.gate_up, self.o, self.down


class FastGenerator:
    """Samples completions for batches of tokenized prompts from the current policy.

    weights="merged" keeps a 16-bit copy of the projections with LoRA merged; "quantized" reads a
    4-bit/8-bit bitsandbytes base in place; "mixed" merges the first `merged_layers` layers and reads
    the rest in place (see the module doc). `on_graph_failure(reason)` is called when a CUDA graph
    can't be captured (decoding then continues without graphs). `fuse_decode`: compile the decode
    step's element-wise kernels (decode_ops.py; None: on CUDA, unless GRPO_STUDIO_FUSED_DECODE says)."""

    def __init__(self, model: Any, sampling: SamplingSettings, *, use_cuda_graphs: bool = True,
                 weights: str = "merged", merged_layers: int = 0,
                 on_graph_failure: Callable[[str], None] | None = None, fuse_decode: bool | None = None):
        config = check_supported(model, weights)
        self.model = causal_lm(model)
        self.weights = weights
        self.merged_layers = merged_layers if weights == "mixed" else 0
        inner = self.model.model
        self.embed = module_weight(inner.embed_tokens)
        self.norm = _norm(inner.norm)
        self.rotary = inner.rotary_emb
        self.device = self.embed.device
        self.dtype = self.embed.dtype  # the model's own compute dtype: sample with the numbers it trains with
        self.layers = [_Layer(layer, self.dtype, layer_weights(weights, i, merged_layers))
                       for i, layer in enumerate(inner.layers)]
        self.head = projection([self.model.lm_head], self.dtype, "merged")  # shared unless adapted
        self.n_heads = config.num_attention_heads
        self.n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.scale = self.head_dim ** -0.5
        self.sampling = sampling
        self.use_cuda_graphs = use_cuda_graphs and self.device.type == "cuda"
        self._warmed: set[tuple[int, int]] = set()  # (batch, length) of the decode steps captured so far
        self.on_graph_failure = on_graph_failure
        # The decode step's element-wise kernels fused (decode_ops.py); `ops.on_failure` hears of a failed compile.
        self.ops = FusedOps(fusion_wanted(self.device) if fuse_decode is None else fuse_decode)
        self._graph: Any = None
        self._rope: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.graph_failures: list[str] = []
        self.synced_version = -1
        self._weights_released = False
        self.sync()

    @classmethod
    def planned_extra_bytes(cls, model: Any, weights: str = "merged", merged_layers: int = 0) -> int:
        """What `extra_bytes()` of a generator for this model would be, without building it."""
        check_supported(model, weights)
        lm = causal_lm(model)
        dtype = module_weight(lm.model.embed_tokens).dtype
        total = planned_projection_bytes([lm.lm_head], dtype, "merged")
        for i, layer in enumerate(lm.model.layers):
            mode = layer_weights(weights, i, merged_layers)
            total += sum(planned_projection_bytes(group, dtype, mode) for group in layer_groups(layer).values())
        return total

    # -- weights -----------------------------------------------------------------------------
    @torch.no_grad()
    def sync(self, version: int = 0) -> None:
        """Refresh the generator's weight copies from the live parameters (after an optimizer step)."""
        for layer in self.layers:
            for proj in layer.projections:
                proj.refresh()
        self.head.refresh()
        self.synced_version = version
        self._weights_released = False

    def extra_bytes(self) -> int:
        """Memory the generator owns beyond the trained model (merged copies or LoRA stacks)."""
        return self.head.nbytes() + sum(p.nbytes() for layer in self.layers for p in layer.projections)

    def prefill_scratch_bytes(self) -> int:
        """Transient memory of a prefill in quantized mode: the largest dequantized weight."""
        return max(p.scratch_bytes() for layer in self.layers for p in layer.projections)

    # -- the forward pass --------------------------------------------------------------------
    def _prefill(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of whole prompts (B, S, H), writing their keys and values at positions 0..S-1
        of the cache rows: row r gets prompt rows[r] (None: prompt r)."""
        B, S, _ = x.shape
        write = torch.arange(S, device=x.device)
        for i, layer in enumerate(self.layers):
            h = rms(x, *layer.input_norm)
            q, k, v = layer.qkv(h, prefill=True).split([layer.q_size, layer.kv_size, layer.kv_size], -1)
            q = q.view(B, S, self.n_heads, self.head_dim)
            k = k.view(B, S, self.n_kv, self.head_dim)
            if layer.q_norm is not None:
                q, k = rms(q, *layer.q_norm), rms(k, *layer.k_norm)
            q, k = q.transpose(1, 2), k.transpose(1, 2)
            v = v.view(B, S, self.n_kv, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.k_cache[i].index_copy_(2, write, k if rows is None else k.index_select(0, rows))
            self.v_cache[i].index_copy_(2, write, v if rows is None else v.index_select(0, rows))
            attn = _attention(q, k, v, mask, self.scale)
            x = x + layer.o(attn.transpose(1, 2).reshape(B, S, -1), prefill=True)
            x = x + self._mlp(layer, rms(x, *layer.post_norm), prefill=True)
        return x

    def _mlp(self, layer: _Layer, h: torch.Tensor, prefill: bool = False) -> torch.Tensor:
        gate, up = layer.gate_up(h, prefill=prefill).split(layer.inter, dim=-1)
        return layer.down(layer.act(gate) * up, prefill=prefill)

    def _decode_layers(self, x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        """One new token per row through every layer, with as few kernels as the math allows: every
        kernel costs a launch, and at decode sizes the launches are most of the time. Returns the last
        layer's output after the final norm (each residual add is fused with the norm that follows it)."""
        B = x.shape[0]
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        ops = self.ops
        h = ops.rms(x, *self.layers[0].input_norm)
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(h)  # (B, 1, (H + 2 KV) D)
            qk = ops.rope_qk(qkv, cos, sin_signed, H, KV, layer.q_norm, layer.k_norm)
            self.k_cache[i].index_copy_(2, self.cur, qk[:, :, H:].transpose(1, 2))
            self.v_cache[i].index_copy_(2, self.cur, qkv[..., (H + KV) * D:].view(B, 1, KV, D).transpose(1, 2))
            # Grouped-query attention without repeating keys: the G query heads that share a key head
            # become G "query positions" of that head, all under the same mask.
            q = qk[:, 0, :H].view(B, KV, H // KV, D)
            attn = F.scaled_dot_product_attention(q, self.k_cache[i], self.v_cache[i], attn_mask=mask,
                                                  scale=self.scale)
            x, h = ops.add_rms(x, layer.o(attn.reshape(B, 1, H * D)), *layer.post_norm)
            down = layer.down(ops.gated(layer.gate_up(h), layer.inter, layer.act))
            following = self.layers[i + 1].input_norm if i + 1 < len(self.layers) else self.norm
            x, h = ops.add_rms(x, down, *following)
        return h

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(rms(x, *self.norm)).float()

    # -- sampling -----------------------------------------------------------------------------
    def _sample(self, logits: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row and its log-prob, with no host sync (so it can live in a CUDA graph).

        Gumbel-max sampling, exact for a categorical: argmax(logits - log E) with E ~ Exp(1)."""
        s = self.sampling
        if s.temperature != 1.0:
            logits = logits / s.temperature
        if s.suppress_tokens:
            logits.index_fill_(1, self.suppress, float("-inf"))
        if s.min_new_tokens and s.eos_token_ids:
            # Index tensors live on the device: a host-side index would copy memory mid-capture.
            block = torch.where(step < s.min_new_tokens, float("-inf"), 0.0).expand(logits.shape[0], len(self.eos))
            logits.index_add_(1, self.eos, block)
        normalizer = torch.logsumexp(logits, dim=-1)
        filtered = logits
        if s.top_k and s.top_k < logits.shape[-1]:
            kth = torch.topk(filtered, s.top_k, dim=-1).values[:, -1:]
            filtered = filtered.masked_fill(filtered < kth, float("-inf"))
        if s.top_p < 1.0:
            sorted_logits, order = torch.sort(filtered, descending=True, dim=-1)
            probs = torch.softmax(sorted_logits, dim=-1)
            drop = probs.cumsum(-1) - probs > s.top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            filtered = torch.full_like(filtered, float("-inf")).scatter(-1, order, sorted_logits)
        noise = torch.empty_like(filtered).exponential_()
        token = torch.argmax(noise.log_().neg_().add_(filtered), dim=-1)
        return token, logits.gather(-1, token[:, None])[:, 0] - normalizer

    # -- generation ---------------------------------------------------------------------------
    def _allocate(self, batch: int, length: int) -> None:
        shape = (batch, self.n_kv, length, self.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.v_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        n = self.sampling.max_new_tokens
        self.tok = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.cur = torch.zeros(1, dtype=torch.long, device=self.device)
        self.step = torch.zeros(1, dtype=torch.long, device=self.device)
        self.done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        self.valid = torch.zeros(batch, 1, 1, length, dtype=torch.bool, device=self.device)
        self.out_tokens = torch.zeros(batch, n, dtype=torch.long, device=self.device)
        self.out_logps = torch.zeros(batch, n, dtype=torch.float32, device=self.device)
        self.positions = torch.arange(length, device=self.device)
        self.eos = torch.tensor(self.sampling.eos_token_ids or [-1], device=self.device)
        self.suppress = torch.tensor(self.sampling.suppress_tokens or [0], device=self.device)

    def _release(self) -> None:
        """Give the KV cache and the graph's memory back between generations: training needs it."""
        self._graph = None
        for name in ("k_cache", "v_cache", "tok", "cur", "step", "done", "valid", "out_tokens", "out_logps"):
            self.__dict__.pop(name, None)

    def _rope_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """cos, sin and sign-folded sin (see _decode_layers) for positions 0..length-1, shape (length, D)."""
        if self._rope is None or self._rope[0] < length:
            dummy = torch.zeros(1, 1, self.head_dim, dtype=self.dtype, device=self.device)
            cos, sin = self.rotary(dummy, torch.arange(length, device=self.device)[None])
            cos, sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
            half = self.head_dim // 2
            signed = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
            self._rope = (length, cos, sin, signed)
        return self._rope[1], self._rope[2], self._rope[3]

    def _decode_step(self) -> None:
        """One token for every row, entirely on the device (capturable as a CUDA graph)."""
        x = F.embedding(self.tok, self.embed)[:, None, :].to(self.dtype)
        cos = self.cos.index_select(0, self.cur)[None, None]  # (1, 1, 1, D)
        sin_signed = self.sin_signed.index_select(0, self.cur)[None, None]
        # Additive, built once a step: given booleans, every layer's attention call builds this same
        # mask again (a fill and a masked fill: 56 kernels a step at 28 layers, ~0.15 ms on an H200).
        visible = self.valid & (self.positions <= self.cur)
        mask = torch.zeros(visible.shape, dtype=self.dtype, device=self.device).masked_fill_(~visible, float("-inf"))
        h = self._decode_layers(x, cos, sin_signed, mask)
        token, logp = self._sample(self.head(h[:, -1]).float(), self.step)
        self._emit(token, logp)
        self.cur.add_(1)

    def _emit(self, token: torch.Tensor, logp: torch.Tensor) -> None:
        token = torch.where(self.done, self.sampling.pad_token_id, token)
        logp = torch.where(self.done, 0.0, logp)
        self.out_tokens.index_copy_(1, self.step, token[:, None])
        self.out_logps.index_copy_(1, self.step, logp[:, None])
        self.done |= (token[:, None] == self.eos[None, :]).any(dim=1)
        self.tok.copy_(token)
        self.step.add_(1)

    def _capture(self) -> Any:
        """A CUDA graph of one decode step, or None when capture fails (then steps run eagerly)."""
        state = (self.tok, self.cur, self.step, self.done, self.out_tokens, self.out_logps)
        saved = [t.clone() for t in state]
        # The warm-up's random draws must not shift the sample: with the generator's state put back,
        # replay i draws what eager step i would have (graph-safe RNG advances the same offsets).
        rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        try:
            # Warm-up: lazy inits (cuBLAS, compiled and Triton kernels for these shapes) happen outside
            # the capture. Once a step of these shapes was captured, they are done: the next generation
            # of the same batch and length only captures (two eager steps less a training step).
            shape = (self.tok.shape[0], self.positions.shape[0])
            if shape not in self._warmed:
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):
                        self._decode_step()
                torch.cuda.current_stream().wait_stream(stream)
                torch.cuda.set_rng_state(rng, self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._decode_step()
            self._warmed.add(shape)
        except Exception as exc:  # noqa: BLE001 - a model we can't capture still generates, eagerly
            reason = f"{type(exc).__name__}: {exc}"
            self.graph_failures.append(reason)
            self.use_cuda_graphs = False
            graph = None
            if rng is not None:
                torch.cuda.set_rng_state(rng, self.device)
            if self.on_graph_failure is not None:
                self.on_graph_failure(reason)
        for t, s in zip(state, saved):
            t.copy_(s)  # undo the warm-up steps (their cache writes are overwritten before being read)
        return graph

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], max_prompt_length: int | None = None) -> Generation:
        if self._weights_released:
            self.sync(self.synced_version)
        try:
            return self._generate(prompt_ids, max_prompt_length)
        finally:
            self._release()
            self._release_weights()

    def _release_weights(self) -> None:
        """Merged copies exist only while generating: the training half that follows needs the memory
        (the VRAM estimate counts them in the generation phase alone). `sync` makes them again; the
        quantized mode's LoRA stacks stay, so it needs no refresh before the next generation."""
        released = [proj.release() for layer in self.layers for proj in layer.projections]
        released.append(self.head.release())
        self._weights_released = any(released)

    def _generate(self, prompt_ids: list[list[int]], max_prompt_length: int | None) -> Generation:
        s = self.sampling
        batch = len(prompt_ids)
        width = max(len(p) for p in prompt_ids)
        length = max(width, max_prompt_length or 0) + s.max_new_tokens
        self._allocate(batch, length)
        self.cos, self.sin, self.sin_signed = self._rope_tables(length)
        ids = torch.full((batch, width), s.pad_token_id, dtype=torch.long)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        ids = ids.to(self.device)
        starts = torch.tensor([width - len(p) for p in prompt_ids], device=self.device)
        self.valid.copy_((self.positions[None, :] >= starts[:, None])[:, None, None, :])

        # Prefill: the prompts' keys and values, and the first token. Positions are buffer indices,
        # as in the training forward of a left-padded batch.
        pos = torch.arange(width, device=self.device)
        mask = (pos[None, :] <= pos[:, None])[None] & self.valid[:, 0, :, :width]
        mask |= torch.eye(width, dtype=torch.bool, device=self.device)[None]  # pad rows attend to themselves
        # GRPO asks for several completions of each prompt: each distinct prompt is prefilled once and its
        # keys, values and last hidden state go to all its rows (7/8 of the prefill's work at 8 a prompt).
        first, rows = _distinct_rows(prompt_ids)
        spread = None
        if len(first) < batch:
            pick = torch.tensor(first, device=self.device)
            ids, mask, spread = ids[pick], mask[pick], torch.tensor(rows, device=self.device)
        x = F.embedding(ids, self.embed).to(self.dtype)
        x = self._prefill(x, self.cos[:width][None, None], self.sin[:width][None, None], mask[:, None], spread)
        last = x[:, -1] if spread is None else x[:, -1].index_select(0, spread)
        token, logp = self._sample(self._logits(last), self.step)
        self._emit(token, logp)
        self.cur.fill_(width)

        # Decode: the remaining tokens, one captured step at a time, checking for the end now and then.
        if self.use_cuda_graphs:
            self._graph = self._capture()
        for t in range(1, s.max_new_tokens):
            if self._graph is not None:
                self._graph.replay()
            else:
                self._decode_step()
            if t % 32 == 0 and bool(self.done.all()):
                break

        tokens, logps = self.out_tokens.tolist(), self.out_logps.tolist()
        eos = set(s.eos_token_ids)
        completions, logprobs = [], []
        for row, lp in zip(tokens, logps):
            end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            completions.append(row[:end])
            logprobs.append(lp[:end])
        return Generation(completions, logprobs)


def _distinct_rows(prompt_ids: list[list[int]]) -> tuple[list[int], list[int]]:
    """(the first row of each distinct prompt, in order; each row's index into that list)."""
    index: dict[tuple[int, ...], int] = {}
    first, rows = [], []
    for r, prompt in enumerate(prompt_ids):
        key = tuple(prompt)
        if key not in index:
            index[key] = len(first)
            first.append(r)
        rows.append(index[key])
    return first, rows


def _norm(module: Any) -> tuple[torch.Tensor, float]:
    """(weight, eps) of an RMSNorm layer of the Llama family."""
    eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", None) or 1e-6
    return module.weight, float(eps)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    if q.shape[1] != k.shape[1]:
        try:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=True)
        except TypeError:  # torch < 2.5
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
