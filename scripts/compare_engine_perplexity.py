#!/usr/bin/env python3
"""Compares the perplexity dumps of llama-infokv and infokv_engine on the same text (--dump of
both `perplexity` commands, same --ctx, --ratio, sinks, recent, slack; infokv_engine with
--granularity per_sequence, the only keep-set shape llama.cpp's cells allow).

Per chunk it sets the two engines' positions kept by the prompt's compression (the first
eviction) side by side, and over all chunks each engine's delta NLL (compressed minus full cache,
on the same predictions). The noise of a delta is its standard error over blocks of --block
consecutive predictions (neighbouring predictions are correlated, so a per-token error would be
too small). Exit 1 when a check fails:
  - the mean keep-set overlap is below --min-overlap (0.9);
  - the engines' deltas differ by more than --noise-multiple (2) standard errors of either delta.

usage: compare_engine_perplexity.py LLAMA_DUMP ENGINE_DUMP --sinks N --recent N [--block 32]
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jsonl_records import read_jsonl  # noqa: E402


def load(path):
    rows = read_jsonl(path, "chunk")
    for r in rows:
        for key in ("chunk", "kept_after_prefill", "nll_full", "nll"):
            if key not in r:
                sys.exit(f"error: {path}: a chunk without '{key}' (not a perplexity --dump?)")
        if len(r["nll"]) != len(r["nll_full"]):
            sys.exit(f"error: {path}: chunk {r['chunk']} has {len(r['nll'])} compressed and "
                     f"{len(r['nll_full'])} full-cache predictions")
    return {r["chunk"]: r for r in rows}


def block_mean_se(values, block):
    """Mean of values and the standard error of that mean over consecutive blocks."""
    means = [sum(values[i:i + block]) / len(values[i:i + block]) for i in range(0, len(values), block)]
    n = len(means)
    m = sum(values) / len(values)
    if n < 2:
        return m, float("nan")
    var = sum((x - sum(means) / n) ** 2 for x in means) / (n - 1)
    return m, math.sqrt(var / n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("llama")
    ap.add_argument("engine")
    ap.add_argument("--sinks", type=int, required=True)
    ap.add_argument("--recent", type=int, required=True)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--min-overlap", type=float, default=0.9)
    ap.add_argument("--noise-multiple", type=float, default=2.0)
    a = ap.parse_args()
    la, en = load(a.llama), load(a.engine)
    chunks = sorted(set(la) & set(en))
    if not chunks:
        sys.exit("error: the two dumps share no chunk")
    if set(la) != set(en):
        print(f"note: only the {len(chunks)} chunks both dumps hold are compared")

    print("| chunk | kept (llama.cpp / engine) | overlap | overlap outside sinks + recent | "
          "delta NLL llama.cpp | delta NLL engine |")
    print("|---|---|---|---|---|---|")
    overlaps, scored_overlaps = [], []
    d_llama, d_engine, gap = [], [], []
    for c in chunks:
        l, e = la[c], en[c]
        if l.get("first_token") != e.get("first_token"):
            sys.exit(f"error: chunk {c} starts at token {l.get('first_token')} in one dump and "
                     f"{e.get('first_token')} in the other (different --ctx?)")
        if len(l["nll"]) != len(e["nll"]):
            sys.exit(f"error: chunk {c}: {len(l['nll'])} predictions against {len(e['nll'])}")
        A, B = set(l["kept_after_prefill"]), set(e["kept_after_prefill"])
        # The prompt is half the chunk; its last `recent` positions and first `sinks` are kept by
        # both whatever the scores say.
        half = len(l["nll"]) + 1
        prot = lambda p: p < a.sinks or p >= half - a.recent
        As, Bs = {p for p in A if not prot(p)}, {p for p in B if not prot(p)}
        ov = len(A & B) / max(len(A), len(B), 1)
        sov = len(As & Bs) / max(len(As), len(Bs), 1)
        overlaps.append(ov)
        if As or Bs:
            scored_overlaps.append(sov)
        dl = [x - y for x, y in zip(l["nll"], l["nll_full"])]
        de = [x - y for x, y in zip(e["nll"], e["nll_full"])]
        d_llama += dl
        d_engine += de
        gap += [x - y for x, y in zip(dl, de)]
        scored = f"{sov:.3f} ({len(As & Bs)} of {max(len(As), len(Bs))})" if As or Bs else "- (nothing scored)"
        print(f"| {c} | {len(A)} / {len(B)} | {ov:.3f} | {scored} | "
              f"{sum(dl) / len(dl):+.4f} | {sum(de) / len(de):+.4f} |")

    ml, sl = block_mean_se(d_llama, a.block)
    me, se = block_mean_se(d_engine, a.block)
    mg, sg = block_mean_se(gap, a.block)
    full_l = sum(sum(la[c]["nll_full"]) for c in chunks) / len(d_llama)
    full_e = sum(sum(en[c]["nll_full"]) for c in chunks) / len(d_engine)
    mo = sum(overlaps) / len(overlaps)
    print(f"\n{len(d_llama)} predictions in {len(chunks)} chunks; full-cache mean NLL llama.cpp {full_l:.4f}, "
          f"engine {full_e:.4f}")
    print(f"delta NLL (compressed - full): llama.cpp {ml:+.4f} (s.e. {sl:.4f}), engine {me:+.4f} (s.e. {se:.4f}); "
          f"difference {mg:+.4f} (paired s.e. {sg:.4f}); s.e. over blocks of {a.block} predictions")
    ok = True
    if not scored_overlaps:
        print("FAIL: the budget holds only the sinks and the recent window: no position was chosen by score "
              "(raise --ctx or --ratio, or lower --recent)")
        return 1
    print(f"keep sets of the first eviction: overlap mean {mo:.3f}, min {min(overlaps):.3f}; outside the sinks and "
          f"the recent window mean {sum(scored_overlaps) / len(scored_overlaps):.3f}, min {min(scored_overlaps):.3f}")
    if mo < a.min_overlap:
        print(f"FAIL: the mean overlap {mo:.3f} is below {a.min_overlap}")
        ok = False
    noise = a.noise_multiple * max(sl, se)
    if not abs(ml - me) <= noise:
        print(f"FAIL: the deltas differ by {abs(ml - me):.4f}, more than {a.noise_multiple} s.e. ({noise:.4f})")
        ok = False
    if ok:
        print(f"PASS: overlap >= {a.min_overlap}; the deltas differ by {abs(ml - me):.4f} <= {a.noise_multiple} s.e. "
              f"({noise:.4f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
