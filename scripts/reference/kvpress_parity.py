#!/usr/bin/env python3
"""Outside reference for infokv's eviction policies: NVIDIA kvpress 0.5.5 on the same model and
the same token ids as infokv_eval, compared on which tokens each policy keeps and on the NLL of a
continuation read after the compressed prefill cache.

  kvpress_parity.py cases   [--cases a,b]
  kvpress_parity.py run     --model GGUF --tokens tokens.json --contexts 1025,2100,4096
                            --budgets 0.4,0.25,0.125 --continuation 256 --out DIR
                            [--cases a,b] [--threads N]
  kvpress_parity.py compare --ours DIR --kvpress DIR [--report FILE.md] [thresholds]

`cases` prints the infokv_eval variant specs of the selected cases, comma-joined on one line.
`run` is the kvpress side (needs torch, transformers and kvpress; see kvpress_requirements.txt);
it writes DIR/kvpress_keep_sets.jsonl and DIR/kvpress_quality.csv.
`compare` needs only the standard library: it reads DIR/keep_sets.jsonl + DIR/quality.csv
(infokv_eval) and the kvpress files, prints a Markdown table and exits 1 when a threshold fails.

Budgets are keep ratios b. infokv keeps int(b*T) tokens, kvpress max(1, int(T*(1-r))) with
r = 1 - b; `run` computes both counts and reports any setting where they differ.

How `run` drives kvpress. kvpress compresses in a forward hook on every attention layer during
prefill: BasePress.forward_hook calls press.compress(module, hidden_states, keys, values,
attentions, kwargs) and writes what it returns back into the cache. One prefill per (press,
budget, context) is too slow on a small CPU, so `run` does one prefill per context and attention
implementation under a fan-out press (a BasePress, so kvpress's own hook and context manager do
the plumbing) whose compress() calls every selected press's compress() on the very same
arguments, recovers the kept positions by matching the returned rows against the input rows, and
hands the cache back unchanged. Then each setting's compressed cache is rebuilt in a DynamicCache
and the continuation is read after it. For the first setting the press is also run the ordinary
way (`with press(model): model.model(...)`, as kvpress's pipeline prefills) and its kept
positions must equal the fan-out's.

Continuation protocol (the same as infokv_eval): cont = ids[C:C+n]; fed after the cache with
position_ids C..C+n-1 (positions continue from the true length, as in kvpress's pipeline, not
from the compressed length); logits row j predicts cont[j+1]; NLL is the mean over the n-1 rows of
-log_softmax(row)[cont[j+1]] in float64 from the float32 logits; nll_full uses the uncompressed
cache; delta_nll = nll - nll_full.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Callable


def _kvpress():
    # Imported on first use so that `cases` and `compare` run without torch installed.
    import kvpress

    return kvpress


@dataclass(frozen=True)
class Case:
    name: str  # kvpress-side label
    spec: str  # infokv_eval variant spec, also our side's policy label
    press: Callable[[float], object]  # compression ratio -> kvpress press
    attn: str = "sdpa"  # attention implementation the press needs
    # 'exact', or how kvpress differs by design; anything but 'exact' is checked by nesting.
    expectation: str = "exact"

    @property
    def granularity(self) -> str:
        return self.spec.rsplit("@", 1)[1]

    @property
    def exact(self) -> bool:
        return self.expectation == "exact"


CASES: list[Case] = [
    Case("streamingllm", "streamingllm:sinks=4,recent=0@per_layer_head",
         lambda r: _kvpress().StreamingLLMPress(compression_ratio=r, n_sink=4)),
    Case("knorm", "knorm:sinks=0,recent=0@per_layer_head",
         lambda r: _kvpress().KnormPress(compression_ratio=r)),
    Case("snapkv-k5", "snapkv:kernel=5,sinks=0,recent=0@per_layer_head",
         lambda r: _kvpress().SnapKVPress(compression_ratio=r, window_size=64, kernel_size=5)),
    Case("snapkv-k9", "snapkv:kernel=9,sinks=0,recent=0@per_layer_head",
         lambda r: _kvpress().SnapKVPress(compression_ratio=r, window_size=64, kernel_size=9)),
    Case("pyramidkv-k5", "pyramidkv:kernel=5,sinks=0,recent=0@per_layer_head",
         lambda r: _kvpress().PyramidKVPress(compression_ratio=r, window_size=64, kernel_size=5),
         expectation=(
             "kvpress rounds each layer's budget with round() from a float total and falls back to "
             "round(T*(1-r)) on every layer when its pyramid preconditions fail; infokv keeps int(b*T) "
             "per layer on average with largest-remainder apportioning. Per-layer counts may differ; "
             "both take the top of the same scores, so the smaller keep set must lie inside the larger.")),
    # kvpress averages the last query's attention over all query heads of the layer and gives every
    # KV head the same scores: that is infokv's per_layer granularity.
    Case("tova", "tova:sinks=0,recent=0@per_layer",
         lambda r: _kvpress().TOVAPress(compression_ratio=r)),
    Case("expected-attention", "expected-attention:sinks=0,recent=0@per_layer_head",
         lambda r: _kvpress().ExpectedAttentionPress(compression_ratio=r)),
    # kvpress divides each key's summed attention by the number of queries that saw it, as mean=1 does.
    Case("h2o-mean", "h2o:mean=1,sinks=0,recent=0@per_layer_head",
         lambda r: _kvpress().ObservedAttentionPress(compression_ratio=r), attn="eager"),
]


def select_cases(arg: str | None) -> list[Case]:
    if not arg:
        return list(CASES)
    by_name = {c.name: c for c in CASES}
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def budget_key(b: float) -> str:
    # Budgets travel through JSON and CSV text on both sides; compare them by a stable spelling.
    return f"{float(b):.9g}"


def infokv_count(b: float, t: int) -> int:
    return int(b * t)


# ----------------------------------------------------------------------------------------------
# run: the kvpress side


def _log(msg: str) -> None:
    print(msg, flush=True)


class MatchError(RuntimeError):
    pass


class RowMatcher:
    """Recovers which cache positions a press kept, per KV head, from the rows it returned.

    A press returns gathered copies of (key, value) rows, so every returned row is bit-identical to
    exactly one input row. Rows are compared as raw bits: a fingerprint (an exact integer linear
    form of the row's 16-bit pieces with random coefficients) finds the candidate, and the whole row
    is then compared; any head where that is not conclusive falls back to an exact row sort.
    """

    _coef = None

    def __init__(self, keys, values):
        import torch

        self.torch = torch
        self.rows = self._bits(keys, values)  # (H, T, P) 16-bit pieces of the rows
        self.fp = self._fingerprint(self.rows)
        self.sorted_fp, self.order = self.fp.sort(dim=-1)

    def _bits(self, keys, values):
        torch = self.torch
        assert keys.shape[0] == 1 and values.shape[0] == 1, "batch size 1 only"
        return torch.cat([keys[0], values[0]], dim=-1).contiguous().view(torch.int16)

    def _fingerprint(self, rows):
        torch = self.torch
        pieces = rows.to(torch.int64) & 0xFFFF  # (H, N, P), each < 2**16
        width = pieces.shape[-1]
        if RowMatcher._coef is None or RowMatcher._coef.numel() != width:
            g = torch.Generator().manual_seed(20240607)
            # Bounded so that the sum stays below 2**63: exact integer arithmetic, no wrap-around.
            bound = (1 << 63) // (width * 0xFFFF)
            RowMatcher._coef = torch.randint(1, bound, (width,), generator=g, dtype=torch.int64)
        return (pieces * RowMatcher._coef).sum(-1)

    def indices(self, keys, values):
        """(H, n) int64: the input position of each returned row, in the press's order."""
        torch = self.torch
        rows = self._bits(keys, values)
        n_heads, t, width = self.rows.shape
        if rows.shape[0] != n_heads or rows.shape[2] != width:
            raise MatchError(f"returned rows of shape {tuple(rows.shape)} vs input {tuple(self.rows.shape)}")
        fp = self._fingerprint(rows)
        lo = torch.searchsorted(self.sorted_fp, fp)
        hi = torch.searchsorted(self.sorted_fp, fp, right=True)
        idx = self.order.gather(-1, lo.clamp(max=t - 1))
        ok = (hi - lo) == 1
        ok &= (self.rows.gather(1, idx.unsqueeze(-1).expand(-1, -1, width)) == rows).all(-1)
        for h in range(n_heads):
            if not bool(ok[h].all()):
                idx[h] = self._exact(h, rows[h])
        for h in range(n_heads):
            if idx[h].unique().numel() != idx.shape[1]:
                raise MatchError(f"head {h}: two returned rows map to the same input position")
        return idx

    def _exact(self, h, rows):
        torch = self.torch
        t = self.rows.shape[1]
        uniq, inv = torch.unique(torch.cat([self.rows[h], rows]), dim=0, return_inverse=True)
        inv_in, inv_out = inv[:t], inv[t:]
        seen = torch.bincount(inv_in, minlength=uniq.shape[0])[inv_out]
        if bool((seen != 1).any()):
            bad = int((seen != 1).nonzero()[0, 0])
            raise MatchError(f"head {h}: returned row {bad} matches {int(seen[bad])} input rows, not exactly one")
        where = torch.full((uniq.shape[0],), -1, dtype=torch.int64)
        where[inv_in] = torch.arange(t)
        return where[inv_out]


def _fanout_press_class():
    from kvpress import BasePress

    @dataclass
    class FanOutPress(BasePress):
        """Calls every member press's compress() on the arguments kvpress's hook passes, records
        what each kept, and leaves the cache uncompressed for the next member and the next layer."""

        members: list = field(default_factory=list)  # [(key, press)]

        def __post_init__(self):
            self.kept = {key: {} for key, _ in self.members}  # key -> layer -> (H, n) positions
            self.compressed = {key: {} for key, _ in self.members}  # key -> layer -> (keys, values)
            self.seconds = {key: 0.0 for key, _ in self.members}

        def post_init_from_model(self, model):
            for _, press in self.members:
                press.post_init_from_model(model)

        def compress(self, module, hidden_states, keys, values, attentions, kwargs):
            import torch

            layer = module.layer_idx
            keys_before, values_before = keys.clone(), values.clone()
            matcher = RowMatcher(keys, values)
            for key, press in self.members:
                t0 = time.perf_counter()
                k, v = press.compress(module, hidden_states, keys, values, attentions, kwargs)
                self.seconds[key] += time.perf_counter() - t0
                # The fan-out is only faithful if presses do not write into their inputs.
                if not (torch.equal(keys, keys_before) and torch.equal(values, values_before)):
                    raise RuntimeError(f"{key}: press modified the keys/values it was given (layer {layer})")
                try:
                    self.kept[key][layer] = matcher.indices(k, v)
                except MatchError as e:
                    raise MatchError(f"{key}, layer {layer}: {e}") from None
                self.compressed[key][layer] = (k, v)
            return keys, values

    return FanOutPress


_TAIL_CAUSAL = "infokv_tail_causal_sdpa"


def _tail_causal_sdpa(module, query, key, value, attention_mask, dropout=0.0, **kwargs):
    # transformers builds one mask for all layers from layer 0's cache length, which cannot serve a
    # cache whose layers kept different numbers of tokens (PyramidKV). The new queries are the last
    # q keys of every layer, so each layer gets the causal mask aligned to its own bottom-right.
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    q, k = query.shape[2], key.shape[2]
    allowed = torch.ones(q, k, dtype=torch.bool, device=query.device).tril(diagonal=k - q)
    return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, allowed[None, None], dropout=dropout, **kwargs)


class Reference:
    def __init__(self, model_path: str, threads: int):
        import torch
        import transformers
        from transformers import AttentionInterface, AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        self.torch = torch
        torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        _kvpress()  # its import wraps the registered attention functions; ours needs no wrapping
        AttentionInterface.register(_TAIL_CAUSAL, _tail_causal_sdpa)
        t0 = time.perf_counter()
        model_path = os.path.abspath(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(model_path), gguf_file=os.path.basename(model_path),
            dtype=torch.float32, attn_implementation="sdpa").eval()
        cfg = self.model.config
        self.num_layers = cfg.num_hidden_layers
        self.num_kv_heads = cfg.num_key_value_heads
        _log(f"loaded {os.path.basename(model_path)} in {time.perf_counter() - t0:.1f} s "
             f"({type(self.model).__name__}: {self.num_layers} layers, {cfg.num_attention_heads} query heads, "
             f"{self.num_kv_heads} KV heads; torch {torch.__version__}, transformers {transformers.__version__}, "
             f"kvpress {_kvpress_version()}, {threads} threads)")

    def set_attn(self, impl: str) -> None:
        if self.model.config._attn_implementation != impl:
            self.model.set_attn_implementation(impl)

    def prefill(self, ids, press=None):
        from transformers import DynamicCache

        cache = DynamicCache()
        # kvpress's pipeline prefills through the base model: the LM head is not needed.
        if press is None:
            self.model.model(input_ids=ids[None], past_key_values=cache)
        else:
            with press(self.model):
                self.model.model(input_ids=ids[None], past_key_values=cache)
        return cache

    def continuation_nll(self, layers, cont, context: int, impl: str):
        """layers: [(keys, values)] per layer. Returns (nll, predictions, float32 logits)."""
        torch = self.torch
        from transformers import DynamicCache

        uniform = len({k.shape[2] for k, _ in layers}) == 1
        self.set_attn(impl if uniform else _TAIL_CAUSAL)
        try:
            cache = DynamicCache(ddp_cache_data=[(k, v) for k, v in layers])
            pos = torch.arange(context, context + cont.shape[0])[None]
            logits = self.model(input_ids=cont[None], past_key_values=cache, position_ids=pos).logits[0]
        finally:
            self.set_attn(impl)
        logp = torch.log_softmax(logits[:-1].to(torch.float64), dim=-1)
        nll = -logp.gather(1, cont[1:, None]).mean()
        return float(nll), cont.shape[0] - 1, logits


def _kvpress_version() -> str:
    from importlib.metadata import version

    return version("kvpress")


def _streams(kept_by_layer, num_layers: int) -> list[list[int]]:
    return [sorted(int(i) for i in kept_by_layer[l][h].tolist())
            for l in range(num_layers) for h in range(kept_by_layer[l].shape[0])]


def cmd_run(args) -> int:
    # transformers' GGUF loader draws a bare tqdm bar that its logging switches cannot turn off;
    # tqdm reads this when imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    from kvpress.utils import compute_n_kept

    cases = select_cases(args.cases)
    contexts = [int(x) for x in args.contexts.split(",")]
    budgets = [float(x) for x in args.budgets.split(",")]
    n = args.continuation
    if n < 2:
        raise SystemExit("--continuation must be at least 2 (one prediction)")
    with open(args.tokens, encoding="utf-8") as f:
        tok = json.load(f)
    ids = torch.tensor(tok["ids"], dtype=torch.int64)
    need = max(contexts) + n
    if ids.numel() < need:
        raise SystemExit(f"{args.tokens}: {ids.numel()} ids, need {need} (largest context + continuation)")
    if tok.get("model") and tok["model"] != os.path.basename(args.model):
        _log(f"warning: tokens.json was written for {tok['model']}, running {os.path.basename(args.model)}")
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    t_start = time.perf_counter()
    ref = Reference(args.model, threads)
    L, H = ref.num_layers, ref.num_kv_heads
    _log(f"tokens: {ids.numel()} ids from {tok.get('text', '?')} (offset {tok.get('offset', '?')}); "
         f"contexts {contexts}, budgets {budgets}, continuation {n}; cases {', '.join(c.name for c in cases)}")

    os.makedirs(args.out, exist_ok=True)
    keep_path = os.path.join(args.out, "kvpress_keep_sets.jsonl")
    quality_path = os.path.join(args.out, "kvpress_quality.csv")
    count_mismatches = []
    self_check = None
    FanOutPress = _fanout_press_class()
    with open(keep_path, "w", encoding="utf-8") as keep_f, open(quality_path, "w", newline="", encoding="utf-8") as q_f:
        qw = csv.writer(q_f)
        qw.writerow(["case", "context", "budget", "predictions", "nll_full", "nll", "delta_nll", "kept_tokens"])
        for ci, C in enumerate(contexts):
            ctx, cont = ids[:C], ids[C:C + n]
            for b in budgets:
                theirs = compute_n_kept(C, 1 - b)
                if infokv_count(b, C) != theirs:
                    count_mismatches.append((C, b))
                    _log(f"note: C={C} b={b}: infokv keeps int(b*T) = {infokv_count(b, C)}, "
                         f"kvpress max(1, int(T*(1-r))) = {theirs}")
            results = {}  # (case name, budget) -> row
            for impl in [a for a in ("sdpa", "eager") if any(c.attn == a for c in cases)]:
                group = [c for c in cases if c.attn == impl]
                ref.set_attn(impl)
                fan = FanOutPress(members=[((c.name, b), c.press(1 - b)) for c in group for b in budgets])
                t0 = time.perf_counter()
                with torch.inference_mode():
                    cache = ref.prefill(ctx, fan)
                full = [(layer.keys, layer.values) for layer in cache.layers]
                del cache
                press_s = sum(fan.seconds.values())
                _log(f"[C={C}] {impl} prefill with {len(fan.members)} presses fanned out: "
                     f"{time.perf_counter() - t0:.1f} s (of which compress() {press_s:.1f} s)")

                if ci == 0 and cases[0].attn == impl:
                    self_check = _self_check(ref, cases[0], budgets[0], ctx, full, fan, L)

                t0 = time.perf_counter()
                with torch.inference_mode():
                    nll_full, preds, logits_full = ref.continuation_nll(full, cont, C, impl)
                    _log(f"[C={C}] {impl} full-cache NLL {nll_full:.6f} over {preds} predictions "
                         f"({time.perf_counter() - t0:.1f} s)")
                    if ci == 0 and impl == "sdpa":
                        _check_tail_causal(ref, full, cont, C, logits_full)
                    del logits_full
                    for c in group:
                        for b in budgets:
                            key = (c.name, b)
                            layers = [fan.compressed[key][l] for l in range(L)]
                            t0 = time.perf_counter()
                            nll, preds, _ = ref.continuation_nll(layers, cont, C, impl)
                            streams = _streams(fan.kept[key], L)
                            kept = sum(len(s) for s in streams)
                            per_layer = sorted({len(s) for s in streams})
                            _log(f"[C={C}] {c.name:<18} b={b:<6} kept {kept:>7} "
                                 f"(per stream {per_layer[0]}..{per_layer[-1]}) NLL {nll:.6f} "
                                 f"delta {nll - nll_full:+.6f} ({time.perf_counter() - t0:.1f} s, "
                                 f"compress {fan.seconds[key]:.2f} s)")
                            results[key] = (nll_full, nll, preds, kept, streams)
                del fan, full
            for c in cases:
                for b in budgets:
                    nll_full, nll, preds, kept, streams = results[(c.name, b)]
                    keep_f.write(json.dumps({
                        "scenario": "prefill", "window": 0, "context": C, "budget": b, "policy": c.name,
                        "granularity": "per_layer_head", "num_layers": L, "num_kv_heads": H,
                        "streams": streams}, separators=(",", ":")) + "\n")
                    qw.writerow([c.name, C, b, preds, repr(nll_full), repr(nll), repr(nll - nll_full), kept])
            keep_f.flush()
            q_f.flush()

    _log(f"wrote {keep_path} and {quality_path}")
    if count_mismatches:
        _log(f"budget counts: infokv and kvpress differ at {len(count_mismatches)} (context, budget) settings (above)")
    else:
        _log("budget counts: int(b*T) equals kvpress's compute_n_kept(T, 1-b) at every (context, budget)")
    _log(f"self-check: {self_check}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _log(f"total {time.perf_counter() - t_start:.1f} s, peak RSS {peak:.0f} MiB")
    return 0


def _self_check(ref, case, b, ctx, full, fan, num_layers) -> str:
    """kvpress's own hook on an ordinary prefill must keep what the fan-out recorded."""
    t0 = time.perf_counter()
    with ref.torch.inference_mode():
        cache = ref.prefill(ctx, case.press(1 - b))
    for l in range(num_layers):
        got = RowMatcher(*full[l]).indices(cache.layers[l].keys, cache.layers[l].values)
        want = fan.kept[(case.name, b)][l]
        if got.shape != want.shape or not ref.torch.equal(got, want):
            raise SystemExit(f"self-check FAILED: {case.name} C={ctx.numel()} b={b} layer {l}: kvpress's own "
                             f"prefill kept different positions than the fan-out")
    msg = (f"held: {case.name} at C={ctx.numel()}, b={b}: an ordinary `with press(model)` prefill kept the same "
           f"ordered positions as the fan-out in all {num_layers} layers x {full[0][0].shape[1]} KV heads "
           f"({time.perf_counter() - t0:.1f} s)")
    _log(f"self-check {msg}")
    return msg


def _check_tail_causal(ref, full, cont, C, logits_full) -> None:
    # The per-layer mask used for PyramidKV caches must agree with transformers' own mask
    # wherever the latter applies: on a cache whose layers all have the same length.
    torch = ref.torch
    from transformers import DynamicCache

    ref.set_attn(_TAIL_CAUSAL)
    try:
        cache = DynamicCache(ddp_cache_data=[(k, v) for k, v in full])
        pos = torch.arange(C, C + cont.shape[0])[None]
        logits = ref.model(input_ids=cont[None], past_key_values=cache, position_ids=pos).logits[0]
    finally:
        ref.set_attn("sdpa")
    diff = float((logits - logits_full).abs().max())
    if diff > 1e-3:
        raise SystemExit(f"per-layer causal mask disagrees with transformers' mask by {diff:g} in logits")
    _log(f"[C={C}] per-layer causal mask (for PyramidKV's uneven layers) matches transformers' mask on the "
         f"full cache: max |logit diff| {diff:.2e}")


# ----------------------------------------------------------------------------------------------
# compare


def _read_keep_sets(path: str, label_of: dict) -> dict:
    """label_of: policy label -> case name. Returns (case, context, budget key) -> record."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("scenario") != "prefill" or int(r.get("window", 0)) != 0:
                continue
            name = label_of.get(r["policy"])
            if name is None:
                continue
            key = (name, int(r["context"]), budget_key(r["budget"]))
            want = {"per_layer_head": r["num_layers"] * r["num_kv_heads"], "per_layer": r["num_layers"],
                    "per_sequence": 1}.get(r["granularity"])
            if want is None or len(r["streams"]) != want:
                raise SystemExit(f"{path}:{lineno}: {len(r['streams'])} streams for granularity {r['granularity']}")
            out[key] = r
    return out


def _read_csv(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _stream_for(rec: dict, l: int, h: int) -> list[int]:
    g = rec["granularity"]
    if g == "per_layer_head":
        return rec["streams"][l * rec["num_kv_heads"] + h]
    if g == "per_layer":
        return rec["streams"][l]
    return rec["streams"][0]


def _fmt(x, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def cmd_compare(args) -> int:
    cases = select_cases(args.cases)
    explicit = bool(args.cases)
    ours_keep = _read_keep_sets(os.path.join(args.ours, "keep_sets.jsonl"), {c.spec: c.name for c in cases})
    kvp_keep = _read_keep_sets(os.path.join(args.kvpress, "kvpress_keep_sets.jsonl"), {c.name: c.name for c in cases})
    spec_to_name = {c.spec: c.name for c in cases}
    ours_q, kvp_q = {}, {}
    for r in _read_csv(os.path.join(args.ours, "quality.csv")):
        if r["scenario"] == "prefill" and int(r["window"]) == 0 and r["policy"] in spec_to_name:
            ours_q[(spec_to_name[r["policy"]], int(r["context"]), budget_key(r["budget"]))] = r
    names = {c.name for c in cases}
    for r in _read_csv(os.path.join(args.kvpress, "kvpress_quality.csv")):
        if r["case"] in names:
            kvp_q[(r["case"], int(r["context"]), budget_key(r["budget"]))] = r

    order = {c.name: i for i, c in enumerate(cases)}
    settings = sorted(set(ours_keep) | set(kvp_keep) | set(ours_q) | set(kvp_q),
                      key=lambda k: (order[k[0]], k[1], -float(k[2])))
    by_name = {c.name: c for c in cases}
    failures = []
    rows = []
    for key in settings:
        case = by_name[key[0]]
        name, C, b = key
        why = []
        for what, table in (("our keep set", ours_keep), ("kvpress keep set", kvp_keep),
                            ("our quality row", ours_q), ("kvpress quality row", kvp_q)):
            if key not in table:
                why.append(f"{what} missing")
        o, k = ours_keep.get(key), kvp_keep.get(key)
        j_mean = j_min = c_mean = c_min = None
        identical = total = kept_o = kept_k = None
        dn_layers = dn_max = None
        if o and k:
            L, H = k["num_layers"], k["num_kv_heads"]
            if (o["num_layers"], o["num_kv_heads"]) != (L, H):
                why.append(f"model shape differs: ours {o['num_layers']}x{o['num_kv_heads']}, kvpress {L}x{H}")
            else:
                jac, con, layer_dn = [], [], [0] * L
                identical, total, kept_o, kept_k = 0, L * H, 0, 0
                for l in range(L):
                    for h in range(H):
                        a, bb = set(_stream_for(o, l, h)), set(_stream_for(k, l, h))
                        inter, union = len(a & bb), len(a | bb)
                        jac.append(inter / union if union else 1.0)
                        small = min(len(a), len(bb))
                        con.append(inter / small if small else 1.0)
                        identical += a == bb
                        kept_o += len(a)
                        kept_k += len(bb)
                        layer_dn[l] = max(layer_dn[l], abs(len(a) - len(bb)))
                j_mean, j_min = sum(jac) / len(jac), min(jac)
                c_mean, c_min = sum(con) / len(con), min(con)
                dn_layers, dn_max = sum(d > 0 for d in layer_dn), max(layer_dn)
                if case.exact:
                    if j_mean < args.jaccard_mean:
                        why.append(f"mean Jaccard {j_mean:.4f} < {args.jaccard_mean}")
                    if j_min < args.jaccard_min:
                        why.append(f"min Jaccard {j_min:.4f} < {args.jaccard_min}")
                else:
                    if c_mean < args.contain_mean:
                        why.append(f"mean nesting {c_mean:.4f} < {args.contain_mean}")
                    if c_min < args.contain_min:
                        why.append(f"min nesting {c_min:.4f} < {args.contain_min}")
        qo, qk = ours_q.get(key), kvp_q.get(key)
        d_o = d_k = d_d = f_o = f_k = f_d = None
        if qo and qk:
            d_o, d_k = float(qo["delta_nll"]), float(qk["delta_nll"])
            f_o, f_k = float(qo["nll_full"]), float(qk["nll_full"])
            d_d, f_d = abs(d_o - d_k), abs(f_o - f_k)
            if int(qo["predictions"]) != int(qk["predictions"]):
                why.append(f"predictions differ ({qo['predictions']} vs {qk['predictions']})")
            if not d_d <= args.delta_nll_tol:
                why.append(f"|Δ delta_nll| {d_d:.4g} > {args.delta_nll_tol}")
            if not f_d <= args.nll_full_tol:
                why.append(f"|Δ nll_full| {f_d:.3g} > {args.nll_full_tol}")
        if why:
            failures.append(f"{name} C={C} b={b}: " + "; ".join(why))
        rows.append([
            name, str(C), b, _fmt(j_mean, ".4f"), _fmt(j_min, ".4f"),
            "–" if identical is None else f"{identical}/{total}",
            _fmt(c_min, ".4f") if not case.exact else "–",
            _fmt(kept_o, "d"), _fmt(kept_k, "d"),
            "–" if dn_layers is None else f"{dn_layers}/{k['num_layers']} ({dn_max})",
            _fmt(d_o, ".5f"), _fmt(d_k, ".5f"), _fmt(d_d, ".1e"),
            _fmt(f_o, ".6f"), _fmt(f_k, ".6f"), _fmt(f_d, ".1e"),
            "ok" if not why else "**FAIL**",
        ])

    absent = [c.name for c in cases if not any(s[0] == c.name for s in settings)]
    if explicit:
        failures += [f"{n}: no setting on either side" for n in absent]
    if not settings:
        failures.append("no settings found on either side")

    head = ["case", "C", "b", "J mean", "J min", "identical", "nested min", "kept ours", "kept kvpress",
            "Δn layers (max)", "ΔNLL ours", "ΔNLL kvpress", "\\|diff\\|", "NLL full ours", "NLL full kvpress",
            "\\|diff\\|", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "J: Jaccard of the keep sets per (layer, KV head); a per_layer keep set of ours is compared "
              "with each KV head of its layer. Kept: summed over (layer, KV head). Δn layers: layers whose "
              "keep-set sizes differ (largest difference). Nested: |smaller ∩ larger| / |smaller| per (layer, head).",
              "",
              f"Thresholds: exact cases mean J ≥ {args.jaccard_mean}, min J ≥ {args.jaccard_min}; "
              f"non-exact cases mean nesting ≥ {args.contain_mean}, min nesting ≥ {args.contain_min}; "
              f"|Δ delta_nll| ≤ {args.delta_nll_tol}; |Δ nll_full| ≤ {args.nll_full_tol}.", ""]
    lines += [f"- `{c.name}` ↔ `{c.spec}`" + ("" if c.exact else f": {c.expectation}") +
              (" (not run)" if c.name in absent else "") for c in cases]
    if failures:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in failures]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(report)
    if failures:
        print(f"{len(failures)} failing setting(s):", file=sys.stderr)
        for f_ in failures:
            print(f"  {f_}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("cases", help="print the infokv_eval variant specs of the selected cases")
    p.add_argument("--cases", help="comma-separated case names (default: all)")

    p = sub.add_parser("run", help="run kvpress and write DIR/kvpress_keep_sets.jsonl, DIR/kvpress_quality.csv")
    p.add_argument("--model", required=True, help="GGUF file")
    p.add_argument("--tokens", required=True, help="tokens.json written by infokv_eval")
    p.add_argument("--contexts", required=True, help="comma-separated prefill lengths")
    p.add_argument("--budgets", required=True, help="comma-separated keep ratios")
    p.add_argument("--continuation", type=int, required=True, help="continuation tokens after each context")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")

    p = sub.add_parser("compare", help="compare infokv_eval's output with kvpress's")
    p.add_argument("--ours", required=True, help="directory with keep_sets.jsonl and quality.csv")
    p.add_argument("--kvpress", required=True, help="directory with kvpress_keep_sets.jsonl and kvpress_quality.csv")
    p.add_argument("--report", help="also write the Markdown table here")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--jaccard-mean", type=float, default=0.995, help="exact cases: minimum mean Jaccard")
    p.add_argument("--jaccard-min", type=float, default=0.95, help="exact cases: minimum per-stream Jaccard")
    p.add_argument("--contain-mean", type=float, default=0.995,
                   help="non-exact cases: minimum mean |smaller ∩ larger| / |smaller|")
    p.add_argument("--contain-min", type=float, default=0.95,
                   help="non-exact cases: minimum per-stream |smaller ∩ larger| / |smaller|")
    p.add_argument("--delta-nll-tol", type=float, default=0.003, help="maximum |our delta_nll - kvpress's|")
    p.add_argument("--nll-full-tol", type=float, default=1e-4, help="maximum |our nll_full - kvpress's|")

    args = ap.parse_args(argv)
    if args.cmd == "cases":
        print(",".join(c.spec for c in select_cases(args.cases)))
        return 0
    if args.cmd == "run":
        return cmd_run(args)
    return cmd_compare(args)


if __name__ == "__main__":
    sys.exit(main())
