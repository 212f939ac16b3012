"""Micro-benchmark of one decode step from a 4-bit base: the Triton kernel against the bf16 copy.

Run on a GPU (one H200: under 4 minutes), from the repository root:

    python tests/engine/measure_quant_decode.py            # both shapes, kernel sweep, decode table
    python tests/engine/measure_quant_decode.py --shapes 7b --sweep-seconds 0   # no sweep

What it does, in order (the tables are printed at the end, the decode table last):
1. Memory bandwidth: a 2 GiB device-to-device copy (bytes read + written, per second).
2. Kernel sweep (`--sweep-seconds`, default 100): each projection group of the `--shapes` (Qwen2.5
   0.5B, 1.5B, 7B; default 1.5B and 7B) at batch 32 (q/k/v with biases, gate/up, o, down; NF4 with double quantization,
   64-blocks; LoRA r=16 per layer of the group) through `quant_linear` over a grid of block sizes,
   warps, pipeline stages and split-K targets. Each launch is timed inside a CUDA graph that
   cycles through enough copies of the weights to exceed the L2 cache 3x. The best launch per group
   goes into `quant_matmul.TUNED` for step 3, and is printed as a literal to paste there
   (`--write-tuned FILE` also writes it for GRPO_STUDIO_QMM_TUNED=FILE). Beside the sweep: each group as
   a bf16 matmul, as bitsandbytes' dequantize + matmul, and through the kernel with either code lookup
   at the launch TUNED gave it before the sweep.
3. One decode step of Qwen2.5-1.5B and 7B shapes (random weights quantized by bitsandbytes to
   NF4 + double quantization, LoRA r=16 on all projections, batch 32, prompts of 368 tokens so
   the KV cache spans 384-416 positions) through `FastGenerator.generate` with CUDA graphs in
   three ways: "merged" (today's bf16 copy), "quantized" (the kernel), and "bnb deq+mm"
   (the quantized mode with every step dequantizing each weight by bitsandbytes and multiplying
   densely, i.e. bitsandbytes' own dequantize + matmul). A step's time is (generate with 48 new
   tokens - generate with 16) / 32, medians of 3, so prefill and capture cancel out.
   Bytes per step = the weights as this mode reads them (merged: the bf16 copy; quantized: the
   packed 4-bit values + scales + LoRA stacks; bnb: the 4-bit values + a bf16 copy written and read
   back) + the LM head (bf16) + the KV cache (SDPA reads the whole buffer). Roofline = those bytes
   / measured bandwidth / step time. Peak = max allocated during the generate calls.

`--modes` picks the decode table's rows; `--profile` first prints the quantized mode's kernels by GPU
time over a prefill and 8 eager decode steps; `--ncu GROUP` only launches one group's kernel, for
Nsight Compute (launch_for_profiler says how).

`--dry-run` runs tiny shapes on the CPU (reference path, no graphs) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grpo_studio.engine import quant_matmul as qm  # noqa: E402
from grpo_studio.engine.bench import ARCHS  # noqa: E402
from grpo_studio.engine.fast_generation import FastGenerator, SamplingSettings  # noqa: E402
from grpo_studio.engine.fast_weights import QuantProjection  # noqa: E402

GIB = 2**30
# The bench's Qwen2.5 shapes (config.json of the hub models) and its tiny one, under short names.
SHAPES = {"0.5b": ARCHS["qwen2.5-0.5b"], "1.5b": ARCHS["qwen2.5-1.5b"], "7b": ARCHS["qwen2.5-7b"],
          "tiny": ARCHS["tiny"]}
RANK = 16


def group_shapes(shape: dict) -> dict[str, tuple[int, list[int], bool]]:
    """group -> (K, rows of each stacked weight, has bias), for one decoder layer."""
    h, i = shape["hidden_size"], shape["intermediate_size"]
    kv = shape["num_key_value_heads"] * h // shape["num_attention_heads"]
    return {"qkv": (h, [h, kv, kv], True), "gate_up": (h, [i, i], False), "o": (h, [h], False), "down": (i, [h], False)}


# ---- timing helpers ----------------------------------------------------------------------------------


def measure_bandwidth(device: str) -> float:
    """Bytes per second of a large device-to-device copy (read + written)."""
    if device != "cuda":
        return 50e9
    src = torch.empty(2 * GIB, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / 10
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 2 * GIB / seconds


def graph_seconds(fn, launches: int, replays: int = 10) -> float:
    """Seconds per call of `fn(i)` for i in range(launches), captured in one CUDA graph."""
    for i in range(min(launches, 2)):
        fn(i)  # compile, warm up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(launches):
            fn(i)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / (replays * launches)


# ---- 2. the kernel sweep -------------------------------------------------------------------------------


def random_group(K: int, rows: list[int], bias: bool, batch: int, device: str, seed: int):
    from bitsandbytes.nn import Params4bit

    g = torch.Generator(device=device).manual_seed(seed)
    parts = [qm.QuantWeight.from_param(Params4bit(
        torch.randn(n, K, generator=g, device=device, dtype=torch.bfloat16) * 0.02, requires_grad=False,
        quant_type="nf4", compress_statistics=True, blocksize=64).to(device)) for n in rows]
    n_total, rank = sum(rows), RANK * len(rows)
    inputs = dict(bias=torch.randn(n_total, device=device, dtype=torch.bfloat16) if bias else None,
                  lora_xa=torch.randn(batch, rank, device=device, dtype=torch.bfloat16),
                  lora_b=torch.randn(n_total, rank, device=device, dtype=torch.bfloat16) * 0.01)
    return parts, inputs


def sweep_configs() -> list[qm.Config]:
    """Launch shapes to try, the likeliest first: one pipeline stage (2-3 stages route the code
    lookups through shared memory: 5-8x slower on an H200), 4-8 warps, 64-256 rows a tile, and
    split-K for 1-8 programs a multiprocessor."""
    out = [qm.DEFAULT_CONFIG]
    for waves in (8.0, 4.0, 2.0, 1.0):
        for block_n, warps in ((128, 8), (128, 4), (64, 4), (256, 8)):
            config = qm.Config(block_n=block_n, num_warps=warps, num_stages=1, waves=waves)
            if config not in out:
                out.append(config)
    out += [qm.Config(num_stages=stages, waves=4.0) for stages in (2, 3)]
    return out


def config_text(c: qm.Config) -> str:
    return f"block_n={c.block_n},num_warps={c.num_warps},num_stages={c.num_stages},waves={c.waves:g}"


def build_groups(shapes: list[str], batch: int, l2_bytes: int, device: str) -> dict:
    """(shape, group) -> (copies of its random quantized weights, LoRA/bias inputs, bytes of one copy)."""
    built = {}
    for name in shapes:
        for group, (K, parts_rows, bias) in group_shapes(SHAPES[name]).items():
            one, inputs = random_group(K, parts_rows, bias, batch, device, seed=0)
            per_copy = sum(p.decode_bytes() for p in one)
            copies = max(1, math.ceil(3 * l2_bytes / per_copy))
            built[(name, group)] = ([one] + [random_group(K, parts_rows, bias, batch, device, seed=s)[0]
                                             for s in range(1, copies)], inputs, per_copy)
    return built


def kernel_sweep(shapes: list[str], built: dict, batch: int, bandwidth: float, seconds: float, device: str):
    """Rows of (shape, group, config, µs, roofline) and the best config per (shape, group)."""
    rows, best = [], {}
    deadline = time.perf_counter() + seconds
    groups = [(name, g, *spec) for name in shapes for g, spec in group_shapes(SHAPES[name]).items()]
    x = {K: torch.randn(batch, K, device=device, dtype=torch.bfloat16) for _, _, K, _, _ in groups}
    for config in sweep_configs():
        for name, group, K, parts_rows, bias in groups:
            if time.perf_counter() > deadline:
                return rows, best
            copies, inputs, per_copy = built[(name, group)]
            read = per_copy + qm.decode_bytes(copies[0], batch, RANK * len(parts_rows))["lora"]
            try:
                sec = graph_seconds(lambda i: qm.quant_linear(x[K], copies[i % len(copies)], config=config, **inputs),
                                    launches=len(copies))
            except Exception as exc:  # noqa: BLE001 - a launch shape that doesn't compile is a result too
                rows.append((name, group, config_text(config), float("nan"), f"failed: {type(exc).__name__}"))
                print(f"failed: {config_text(config)} on {group}: {type(exc).__name__}: {exc}"[:400], flush=True)
                continue
            rows.append((name, group, config_text(config), sec * 1e6, f"{read / bandwidth / sec:.0%}"))
            if sec < best.get((name, group), (None, math.inf))[1]:
                best[(name, group)] = (config, sec)
    return rows, best


def dense_reference_rows(shapes: list[str], built: dict, batch: int, bandwidth: float, l2_bytes: int,
                         device: str, tuned: dict) -> list[tuple]:
    """The same groups as a bf16 matmul (the merged copy), as bitsandbytes dequantize + matmul, and
    through the kernel at the launch `tuned` gives them with each of its code lookups."""
    import bitsandbytes.functional as bnbf

    rows = []
    for name in shapes:
        for group, (K, parts_rows, bias) in group_shapes(SHAPES[name]).items():
            N = sum(parts_rows)
            x = torch.randn(batch, K, device=device, dtype=torch.bfloat16)
            copies = max(1, math.ceil(3 * l2_bytes / (N * K * 2)))
            ws = [torch.randn(N, K, device=device, dtype=torch.bfloat16) for _ in range(copies)]
            sec = graph_seconds(lambda i, ws=ws: torch.nn.functional.linear(x, ws[i % copies]), launches=copies)
            rows.append((name, group, "bf16 matmul (the merged copy)", sec * 1e6, f"{N * K * 2 / bandwidth / sec:.0%}"))
            del ws
            quantized, _, per_copy = built[(name, group)]

            def deq(i: int) -> None:
                for p in quantized[i % len(quantized)]:
                    torch.nn.functional.linear(x, bnbf.dequantize_4bit(p.param.data, p.param.quant_state))
            try:
                sec = graph_seconds(deq, launches=len(quantized))
                rows.append((name, group, "bitsandbytes dequantize + matmul", sec * 1e6,
                             f"{per_copy / bandwidth / sec:.0%} of the 4-bit bytes"))
            except Exception as exc:  # noqa: BLE001
                rows.append((name, group, "bitsandbytes dequantize + matmul", float("nan"), f"failed: {exc}"[:60]))
            # The kernel with each code lookup at the launch quant_matmul had before the sweep (`tuned`).
            _, inputs, _ = built[(name, group)]
            read = per_copy + qm.decode_bytes(quantized[0], batch, RANK * len(parts_rows))["lora"]
            for lookup in ("register", "bitsandbytes"):
                previous, qm.LOOKUP = qm.LOOKUP, lookup
                try:
                    sec = graph_seconds(lambda i: qm.quant_linear(x, quantized[i % len(quantized)], config=tuned[
                        (name, group)], **inputs), launches=len(quantized))
                finally:
                    qm.LOOKUP = previous
                rows.append((name, group, f"4-bit kernel, {lookup} lookup, {config_text(tuned[(name, group)])}",
                             sec * 1e6, f"{read / bandwidth / sec:.0%}"))
    return rows


# ---- 3. one decode step of a whole model ------------------------------------------------------------------


def build_model(name: str, device: str):
    """A random-init Qwen2 of this shape, its projections quantized by bitsandbytes (NF4, double
    quantization), with a PEFT LoRA r=16 on all of them (B random: a trained adapter)."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**SHAPES[name], max_position_embeddings=4096)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for attr, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      device="meta")
                q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", blocksize=64).to(device)
                if lin.bias is not None:
                    q.bias = lin.bias
                setattr(parent, attr, q)
    model.is_loaded_in_4bit = True  # what transformers' bitsandbytes loader marks; PEFT then wraps bnb layers
    peft = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for pname, p in peft.named_parameters():
            if "lora_B" in pname:
                p.normal_(std=0.01)
    if device == "cuda":
        torch.cuda.empty_cache()
    return peft.eval()


def decode_bytes_per_step(gen: FastGenerator, mode: str, batch: int, kv_len: int) -> int:
    lm = gen.model
    weights = 0
    for layer in gen.layers:
        for proj in layer.projections:
            if isinstance(proj, QuantProjection):
                packed = sum(p.decode_bytes() for p in proj.parts)
                lora = (proj.lora_a.numel() + proj.lora_b.numel()) * 2 if proj.rank else 0
                dense = proj.n_total * proj.cols * 2
                weights += packed + lora + (2 * dense if mode == "bnb deq+mm" else 0)
            else:  # the merged copy (given back between generations: its size, not the tensor)
                weights += proj.nbytes()
    head = lm.lm_head.weight.numel() * lm.lm_head.weight.element_size()
    cfg = lm.config
    kv = batch * kv_len * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * \
        (cfg.hidden_size // cfg.num_attention_heads) * 2
    return weights + head + kv


def time_decode(model, mode: str, batch: int, prompt_len: int, device: str) -> dict:
    weights = "merged" if mode == "merged" else "quantized"
    original_call = QuantProjection.__call__
    lookup, split_sum = qm.LOOKUP, qm.SPLIT_SUM
    if mode == "quantized (bitsandbytes lookup)":  # the kernel's code lookup before the tenth session
        qm.LOOKUP = "bitsandbytes"
    if mode == "quantized (split-sum kernel)":  # split-K partials summed by a second launch (before the tenth)
        qm.SPLIT_SUM = "kernel"
    if mode == "bnb deq+mm":  # every step: bitsandbytes dequantizes each weight, then a dense matmul
        QuantProjection.__call__ = lambda self, h, prefill=False: original_call(self, h, prefill=True)
    try:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if device == "cuda" else 0
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(10, model.config.vocab_size - 10, (batch, prompt_len), generator=g).tolist()
        seconds = {}
        gen = FastGenerator(model, SamplingSettings(max_new_tokens=16), weights=weights)
        for new in (16, 48):
            gen.sampling = SamplingSettings(max_new_tokens=new, min_new_tokens=new, pad_token_id=0, eos_token_ids=(2,))
            gen.generate(prompts)  # compile, warm up
            runs = []
            for _ in range(3):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                gen.generate(prompts)
                if device == "cuda":
                    torch.cuda.synchronize()
                runs.append(time.perf_counter() - start)
            seconds[new] = statistics.median(runs)
        step = (seconds[48] - seconds[16]) / 32
        read = decode_bytes_per_step(gen, mode, batch, prompt_len + 32)
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
        return dict(mode=mode, step_ms=step * 1e3, bytes=read, graphs=gen.use_cuda_graphs and not gen.graph_failures,
                    extra=gen.extra_bytes(), peak=peak, before=before)
    finally:
        QuantProjection.__call__ = original_call
        qm.LOOKUP, qm.SPLIT_SUM = lookup, split_sum


def profile_decode(model, batch: int, prompt_len: int, device: str, top: int = 14) -> str:
    """Kernel time by name over 8 eager decode steps of the quantized mode (no graphs, so the
    profiler sees every kernel; each kernel's GPU time is what a graph replays)."""
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(10, model.config.vocab_size - 10, (batch, prompt_len), generator=g).tolist()
    gen = FastGenerator(model, SamplingSettings(max_new_tokens=9, min_new_tokens=9, pad_token_id=0,
                                                eos_token_ids=(2,)), weights="quantized", use_cuda_graphs=False)
    gen.generate(prompts)  # compile, warm up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        gen.generate(prompts)
        if device == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)


def launch_for_profiler(shape: str, group: str, batch: int, device: str) -> int:
    """Three plain launches of one group (no graph), for a hardware-counter profile:

        ncu --clock-control none --set full -k regex:_qmm_kernel -c 1 -o $OUT/qmm \\
            python3 tests/engine/measure_quant_decode.py --shapes 7b --ncu gate_up
        ncu --import $OUT/qmm.ncu-rep --page details --csv > $OUT/qmm.csv

    (stall reasons, occupancy, memory throughput; ncu reads counters on Firecracker machines only)."""
    K, rows, bias = group_shapes(SHAPES[shape])[group]
    if device != "cuda":
        print(f"{shape} {group}: K={K}, rows={rows} (on the CPU there is no kernel to profile)")
        return 0
    parts, inputs = random_group(K, rows, bias, batch, device, seed=0)
    x = torch.randn(batch, K, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        qm.quant_linear(x, parts, **inputs)
    torch.cuda.synchronize()
    print(f"{shape} {group}: {qm.plan(batch, parts, qm.config_for(batch, K, sum(rows)), qm._sm_count(x.device))}")
    return 0


# ---- the report --------------------------------------------------------------------------------------------


def print_table(title: str, header: list[str], rows: list[tuple]) -> None:
    print(f"\n{title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="1.5b,7b")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=368)
    parser.add_argument("--sweep-seconds", type=float, default=100.0)
    parser.add_argument("--modes", default="merged,quantized,bnb deq+mm", help="decode table rows (also "
                        "'quantized (bitsandbytes lookup)': the kernel's code lookup before the tenth session; "
                        "'quantized (split-sum kernel)': split-K partials summed by a second launch, as before it)")
    parser.add_argument("--profile", action="store_true", help="kernel times of the quantized mode's decode")
    parser.add_argument("--ncu", metavar="GROUP", help="only launch the kernel on one group (qkv, gate_up, o, "
                        "down) of the first shape 3 times, for Nsight Compute (see launch_for_profiler)")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: checks the script only")
    parser.add_argument("--write-tuned", metavar="PATH", help="write the sweep's best launches as JSON, for "
                        "GRPO_STUDIO_QMM_TUNED=PATH (quant_matmul.read_tuned)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    device = "cpu" if args.dry_run else "cuda"
    shapes = ["tiny"] if args.dry_run else args.shapes.split(",")
    if args.ncu:
        return launch_for_profiler(shapes[0], args.ncu, args.batch, device)
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, "L2_cache_size", 60 * 2**20)
        print(f"{props.name}, {props.multi_processor_count} SMs, L2 {l2 / 2**20:.0f} MiB, torch {torch.__version__}, "
              f"triton {getattr(qm.triton, '__version__', 'absent')}", flush=True)
    else:
        l2 = 2**20
    bandwidth = measure_bandwidth(device)
    print(f"device-to-device copy: {bandwidth / 1e12:.2f} TB/s (read + written)", flush=True)

    sweep_rows, best, reference_rows = [], {}, []
    if device == "cuda" and args.sweep_seconds > 0:
        built = build_groups(shapes, args.batch, l2, device)
        tuned = {(name, group): qm.config_for(args.batch, K, sum(rows))  # before the sweep re-tunes them
                 for name in shapes for group, (K, rows, _) in group_shapes(SHAPES[name]).items()}
        print(f"sweep weights built at {time.perf_counter() - started:.0f} s", flush=True)
        sweep_rows, best = kernel_sweep(shapes, built, args.batch, bandwidth, args.sweep_seconds, device)
        reference_rows = dense_reference_rows(shapes, built, args.batch, bandwidth, l2, device, tuned)
        del built
        written = []
        for (name, group), (config, _) in best.items():
            K, parts_rows, _ = group_shapes(SHAPES[name])[group]
            bucket = min(64, max(16, 1 << (args.batch - 1).bit_length()))
            qm.TUNED[(bucket, K, sum(parts_rows))] = config
            written.append({"batch": bucket, "K": K, "N": sum(parts_rows), "config": config_text(config)})
        if args.write_tuned:
            Path(args.write_tuned).write_text(json.dumps(written, indent=1), encoding="utf-8")
        print(f"sweep done at {time.perf_counter() - started:.0f} s", flush=True)

    decode_rows = []
    for name in shapes:
        model = build_model(name, device)
        print(f"{name}: model built at {time.perf_counter() - started:.0f} s", flush=True)
        if args.profile:
            print(f"\n{name}, quantized mode, prefill + 8 eager decode steps, kernels by GPU time:\n"
                  f"{profile_decode(model, args.batch, args.prompt_len, device)}", flush=True)
        for mode in args.modes.split(","):
            try:
                r = time_decode(model, mode, args.batch, args.prompt_len, device)
            except torch.cuda.OutOfMemoryError as exc:
                decode_rows.append((name, mode, "OOM", "", "", "", "", "", str(exc)[:40]))
                continue
            decode_rows.append((name, mode, f"{r['step_ms']:.3f}", f"{r['bytes'] / GIB:.2f}",
                                f"{r['bytes'] / bandwidth / (r['step_ms'] / 1e3):.0%}" if r["step_ms"] > 0 else "-",
                                f"{r['extra'] / GIB:.2f}", f"{r['peak'] / GIB:.2f}", f"{r['before'] / GIB:.2f}",
                                "yes" if r["graphs"] else "NO"))
            print(f"  {mode}: {decode_rows[-1][2]} ms/step", flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    if sweep_rows:
        by_group: dict[tuple[str, str], list[tuple]] = {}
        for row in sweep_rows:
            by_group.setdefault(row[:2], []).append(row)
        top = [r for rows in by_group.values() for r in sorted(rows, key=lambda r: (math.isnan(r[3]), r[3]))[:4]]
        tried = len(sweep_rows) // max(1, len(by_group))
        print_table(f"Kernel sweep, batch {args.batch} (4 fastest launches per group of {tried} tried; "
                    "roofline on the 4-bit bytes + scales + LoRA)",
                    ["shape", "group", "launch", "µs", "roofline"], top)
        print_table("The same groups, other ways", ["shape", "group", "way", "µs", "roofline"], reference_rows)
        totals: dict[str, float] = {}
        for name, group, text, us, _ in sweep_rows:
            totals[text] = totals.get(text, 0.0) + (us if not math.isnan(us) else math.inf)
        complete = {t: v for t, v in totals.items() if sum(r[2] == t for r in sweep_rows) == len(by_group)}
        if complete:
            text, total = min(complete.items(), key=lambda kv: kv[1])
            print(f"\nBest single launch for every group: {text} ({total:.1f} µs for one layer's groups)")
        print("\nquant_matmul.TUNED entries (batch bucket, K, N) -> best launch:")
        for (name, group), (config, sec) in best.items():
            K, parts_rows, _ = group_shapes(SHAPES[name])[group]
            bucket = min(64, max(16, 1 << (args.batch - 1).bit_length()))
            print(f"    ({bucket}, {K}, {sum(parts_rows)}): Config.parse(\"{config_text(config)}\"),"
                  f"  # {name} {group}: {sec * 1e6:.1f} µs")
    print_table(f"One decode step, batch {args.batch}, KV {args.prompt_len + 16}-{args.prompt_len + 48} positions, "
                f"LoRA r={RANK} on all projections, NF4 + double quantization, CUDA graphs "
                f"(bandwidth {bandwidth / 1e12:.2f} TB/s; total {time.perf_counter() - started:.0f} s)",
                ["shape", "mode", "ms/step", "GiB read/step", "roofline", "generator extra GiB", "peak GiB",
                 "model GiB", "graphs"], decode_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
