#!/usr/bin/env python3
"""Turns the benchmark JSON of scripts/run_benchmarks.sh into the Markdown ratio table.

Every ratio divides two medians measured in the same run on the same machine: a kernel against
the machine's own limit (Eigen sgemm on the same shape, stream-read or memcpy bandwidth) or
against the standard-library baseline (std::nth_element)."""
import json
import os
import re
import sys

out_dir, arch, callgrind = sys.argv[1], sys.argv[2] or "baseline x86-64", sys.argv[3] if len(sys.argv) > 3 else ""
MODELS = {"0": "Llama-3.1-8B", "1": "SmolLM2-135M"}


def load(area):
    with open(os.path.join(out_dir, area + ".json")) as f:
        data = json.load(f)
    med = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name", "median") != "median" or b.get("error_occurred"):
            continue  # a skipped ISA (the CPU lacks it) has no timing
        med[b["run_name"]] = b
    return data["context"], med


def seconds(b):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
    return b["real_time"] * scale


def find(med, pattern):
    for name, b in med.items():
        if re.fullmatch(pattern, name):
            return b
    raise KeyError(pattern)


# The widest ISA this CPU ran: the binaries hold every ISA's kernels and skip those the CPU lacks.
ISAS = (("amx_t", "AMX"), ("avx512_t", "AVX-512"), ("avx2_t", "AVX2"), ("scalar_t", "scalar"))


def widest(med, pattern):
    """(row, ISA label) of the widest ISA that ran; pattern has {isa} where the tag goes."""
    for tag, label in ISAS:
        try:
            return find(med, pattern.format(isa=tag)), label
        except KeyError:
            pass
    raise KeyError(pattern)


def verdict(value, target, higher=True):
    ok = value >= target if higher else value <= target
    return "meets" if ok else "MISSES"


rows = []
ctx, att = load("attention")
for m in ("0", "1"):
    for t in ("4096", "32768", "131072"):
        ours, isa = widest(att, rf"BM_WindowScoring<infokv::simd::{{isa}}, infokv::bfloat16>/model:{m}/tokens:{t}")
        eig = find(att, rf"BM_EigenSgemm/model:{m}/tokens:{t}")
        r = ours["GFLOPS"] / eig["GFLOPS"]
        rows.append((f"window scoring ({isa}, bf16), " + MODELS[m] + f", T={int(t)//1024}K",
                     f"{ours['GFLOPS']:.1f} GFLOP/s vs Eigen sgemm {eig['GFLOPS']:.1f}", f"{r:.2f}", ">= 0.70",
                     verdict(r, 0.70)))
# AMX (where the CPU has it): against the AVX-512 kernel on the same shape and cache type, and
# against the tile loop's peak, all in the same run.
try:
    peak = find(att, r"BM_AmxTilePeak")["GFLOPS"]
except KeyError:
    peak = None
if peak:
    for elem in ("bfloat16", "half"):
        for m in ("0", "1"):
            for t in ("4096", "32768", "131072"):
                amx = find(att, rf"BM_WindowScoring<infokv::simd::amx_t, infokv::{elem}>/model:{m}/tokens:{t}")
                avx = find(att, rf"BM_WindowScoring<infokv::simd::avx512_t, infokv::{elem}>/model:{m}/tokens:{t}")
                name = f"window scoring (AMX, {'bf16' if elem == 'bfloat16' else 'f16'}), {MODELS[m]}, T={int(t)//1024}K"
                r = amx["GFLOPS"] / avx["GFLOPS"]
                rows.append((name + " vs AVX-512", f"{amx['GFLOPS']:.0f} GFLOP/s vs {avx['GFLOPS']:.0f}", f"{r:.2f}",
                             ">= 5", verdict(r, 5.0)))
                f = amx["GFLOPS"] / peak
                rows.append((name + " vs AMX peak", f"{amx['GFLOPS']:.0f} GFLOP/s vs tile loop {peak:.0f}", f"{f:.2f}",
                             ">= 0.25", verdict(f, 0.25)))

_, keys = load("keys")
stream = find(keys, r"Limit_StreamRead")["bytes_per_second"]
memcpy_keys = find(keys, r"Limit_Memcpy")["bytes_per_second"]
for scattered in ("0", "1"):
    for m in ("0", "1"):
        for t in ("4096", "32768", "131072"):
            ours, isa = widest(keys, rf"BM_KeyNorms<infokv::simd::{{isa}}>/model:{m}/tokens:{t}/scattered:{scattered}")
            r = ours["bytes_per_second"] / stream
            order = "pages scattered" if scattered == "1" else "pages in order"
            rows.append((f"key norms ({isa}, bf16, {order}), {MODELS[m]}, T={int(t)//1024}K",
                         f"{ours['bytes_per_second']/1e9:.1f} GB/s vs stream read {stream/1e9:.1f}", f"{r:.2f}",
                         ">= 0.70", verdict(r, 0.70)))
for t in ("4194304", "33554432"):
    ours, isa = widest(keys, rf"BM_AccumulateAttention<infokv::simd::{{isa}}>/tokens:{t}")
    r = ours["bytes_per_second"] / stream
    rows.append((f"accumulated attention ({isa}), {int(t) // (1 << 20)}M entries",
                 f"{ours['bytes_per_second']/1e9:.1f} GB/s (read+write) vs stream read {stream/1e9:.1f}", f"{r:.2f}",
                 ">= 0.70", verdict(r, 0.70)))

_, sel = load("select")
for t in ("4096", "32768", "131072"):
    ours, isa = widest(sel, rf"BM_TopKSelect<infokv::simd::{{isa}}>/tokens:{t}")
    nth = find(sel, rf"BM_NthElement/tokens:{t}")
    r = seconds(nth) / seconds(ours)
    target = ">= 3x" if t != "4096" else "(none)"
    rows.append((f"top-k selection ({isa}, 25% of T), T={int(t)//1024}K",
                 f"{seconds(ours)*1e6:.1f} us vs std::nth_element {seconds(nth)*1e6:.1f} us", f"{r:.1f}x", target,
                 verdict(r, 3.0) if t != "4096" else "-"))

_, comp = load("compaction")
memcpy_bw = find(comp, r"Limit_Memcpy")["bytes_per_second"]
for runs in ("0", "1"):
    for layout in ("layout_nhd", "layout_hnd"):
        for m in ("0", "1"):
            for t in ("32768", "131072"):
                ours = find(comp, rf"BM_Compaction<infokv::{layout}>/model:{m}/tokens:{t}/runs:{runs}")
                r = ours["bytes_per_second"] / memcpy_bw
                pattern = "kept in runs of 8" if runs == "1" else "every 4th kept"
                rows.append((f"compaction ({layout[7:].upper()}, {pattern}), {MODELS[m]}, T={int(t)//1024}K",
                             f"{ours['bytes_per_second']/1e9:.1f} GB/s vs memcpy {memcpy_bw/1e9:.1f}", f"{r:.2f}",
                             ">= 0.70", verdict(r, 0.70)))

_, ent = load("entropy")
stream_e = find(ent, r"Limit_StreamRead")["bytes_per_second"]
for v in ("49152", "128256", "152064"):
    ours, isa = widest(ent, rf"BM_TopKEntropy<infokv::simd::{{isa}}>/vocab:{v}")
    ref = find(ent, rf"BM_TopKEntropy<infokv::simd::scalar_t>/vocab:{v}")
    rows.append((f"top-256 entropy ({isa}), vocab {int(v):,}",
                 f"{seconds(ours)*1e6:.1f} us ({ours['bytes_per_second']/1e9:.1f} GB/s; scalar {seconds(ref)*1e6:.0f} us)",
                 f"{ours['bytes_per_second']/stream_e:.2f}", "(report)", "-"))

_, evo = load("evolution")
for m in ("0", "1"):
    ours, isa = widest(evo, rf"BM_LayerEvolution<infokv::simd::{{isa}}>/model:{m}")
    rows.append((f"layer evolution ({isa}), one token, {MODELS[m]}", f"{seconds(ours)*1e6:.1f} us", "-", "(report)", "-"))

_, ev = load("event")
event_rows = []
for m, t in (("0", "32768"), ("1", "4096"), ("1", "32768")):
    b = find(ev, rf"BM_CompressionEvent/model:{m}/tokens:{t}/iterations:1")
    event_rows.append((MODELS[m], t, seconds(b)))
obs = {m: seconds(find(ev, rf"BM_ObserveStep/model:{m}")) for m in ("0", "1")}

print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz; build -march={arch}; "
      f"{ctx.get('date', '')}. Medians of 3 repetitions.\n")
print("| hot path | measured | ratio | target | |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")

print("\n| compression event (InfoKV, per-layer keep sets, keep 25%) | time |")
print("|---|---|")
for name, t, s in event_rows:
    print(f"| {name}, T={int(t)//1024}K, one event | {s*1e3:.0f} ms |")
for m in ("0", "1"):
    print(f"| {MODELS[m]}, one decode step's observe (entropy, evolution, query ring) | {obs[m]*1e6:.0f} us |")

# Breakdown of the Llama-3.1-8B 32K event from its parts, each measured above on the same shape.
m = kModels = None
llama = next(s for n, t, s in event_rows if n == MODELS["0"])
scoring = seconds(widest(att, r"BM_WindowScoring<infokv::simd::{isa}, infokv::bfloat16>/model:0/tokens:32768")[0]) * 32 * 8
select = seconds(widest(sel, r"BM_TopKSelect<infokv::simd::{isa}>/tokens:32768")[0]) * 32
compaction = seconds(find(comp, r"BM_Compaction<infokv::layout_nhd>/model:0/tokens:32768/runs:0")) * 32
rest = llama - scoring - select - compaction
print("\nLlama-3.1-8B, 32K tokens, one event, from the parts measured above (x 32 layers, x 8 KV heads):\n")
print("| part | ms | share |")
print("|---|---|---|")
for name, s in (("window attention scoring", scoring), ("top-k selection", select), ("compaction (NHD)", compaction),
                ("the rest (entropy softmax, pooling, sorting by position, plan)", rest)):
    print(f"| {name} | {s*1e3:.0f} | {100*s/llama:.0f}% |")

if callgrind and os.path.exists(callgrind):
    total = None
    with open(callgrind) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
    if total is not None:
        print(f"\nCallgrind: one compression event (SmolLM2-135M shape, T=1K, AVX2 build) = {total:,} instructions "
              "(`valgrind --tool=callgrind --toggle-collect='*infokv_compression_event*' infokv_event_once 1024`).")
