#!/usr/bin/env python3
"""Tables and plots of llama-infokv-reason results (any number of JSON Lines files).

  report.py RESULTS.jsonl [MORE.jsonl ...] --out DIR [--reference infokv:alpha=0.95]

Per (model, problem set, interval, token limit, attention path) and setting (variant, budget): accuracy with a 95%
Wilson interval, answers given, tokens generated, the share stopped by the token limit, evictions
and whether every step kept the budget. Then every variant against the reference variant on the
same problems at the same budget: problems only the reference gets right (b), only the other gets
right (c), and the exact two-sided McNemar p-value (binomial test of b against b + c at 1/2).
Writes DIR/report.md, DIR/summary.json and one accuracy-vs-budget plot per model, set and attention
path (DIR/accuracy-<model>-<set>[-flash].png; needs matplotlib, skipped with a note when it is
absent).
"""
import argparse
import collections
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jsonl_records import read_jsonl  # noqa: E402


def wilson(k, n, z=1.959963984540054):
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def mcnemar_exact(b, c):
    """Two-sided exact McNemar p-value: P(X <= min(b, c)) * 2 for X ~ Bin(b + c, 1/2), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def budget_key(label):
    """Order on the budget axis: shares ascending, then token counts ascending, then the full cache."""
    if label == "full":
        return (2, 0.0)
    if label.endswith("%"):
        return (0, float(label[:-1]))
    return (1, float(label))


def load(paths):
    rows = [r for p in paths for r in read_jsonl(p, allow_empty=True)]
    if not rows:
        sys.exit("error: no results in " + ", ".join(paths))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reference", default="infokv:alpha=0.95", help="the variant every other is paired with")
    a = ap.parse_args()
    rows = load(a.results)
    os.makedirs(a.out, exist_ok=True)

    groups = collections.defaultdict(lambda: collections.defaultdict(dict))  # config -> (variant, budget) -> id -> row
    for r in rows:
        cfg = (r["model"], r["set"], r["interval"], r["n_predict"], bool(r.get("flash_attn", False)))
        groups[cfg][(r["variant"], r["budget"])][r["id"]] = r

    md, summary = [], []
    for cfg in sorted(groups):
        model, pset, interval, n_predict, flash = cfg
        settings = groups[cfg]
        attn = ", flash attention" if flash else ""
        md.append(f"## {model} on {pset} (compression every {interval} decode steps, at most {n_predict} tokens{attn})\n")
        md.append("| variant | budget | problems | right | accuracy (95% CI) | answered | tokens | stopped by limit | "
                  "evictions | within budget |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        variants = sorted({v for v, _ in settings}, key=lambda v: (v != "full", v != "none", not v.startswith("infokv"), v))
        for v in variants:
            for b in sorted({b for vv, b in settings if vv == v}, key=budget_key):
                rs = list(settings[(v, b)].values())
                n, k = len(rs), sum(r["correct"] for r in rs)
                lo, hi = wilson(k, n)
                entry = dict(model=model, set=pset, interval=interval, n_predict=n_predict, flash_attn=flash, variant=v, budget=b, problems=n,
                             right=k, accuracy=k / n, ci95=[lo, hi],
                             answered=sum(r["answered"] for r in rs) / n,
                             tokens=sum(r["tokens"] for r in rs) / n,
                             hit_limit=sum(r["hit_limit"] for r in rs) / n,
                             evictions=sum(r["evictions"] for r in rs) / n,
                             within_budget=all(r["within_budget"] for r in rs))
                summary.append(entry)
                md.append(f"| {v} | {b} | {n} | {k} | {100 * k / n:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) | "
                          f"{100 * entry['answered']:.0f}% | {entry['tokens']:.0f} | {100 * entry['hit_limit']:.0f}% | "
                          f"{entry['evictions']:.2f} | {'yes' if entry['within_budget'] else 'NO'} |")
        md.append("")
        # Paired comparisons with the reference variant (and with the full cache) at each budget.
        for ref in (a.reference, "full"):
            lines = []
            for (v, b), byid in sorted(settings.items(), key=lambda kv: (kv[0][0], budget_key(kv[0][1]))):
                if v == ref or v in ("full", "none"):
                    continue
                other = settings.get((ref, "full" if ref == "full" else b))
                if other is None:
                    continue
                common = sorted(set(byid) & set(other))
                if not common:
                    continue
                bb = sum(other[i]["correct"] and not byid[i]["correct"] for i in common)
                cc = sum(byid[i]["correct"] and not other[i]["correct"] for i in common)
                p = mcnemar_exact(bb, cc)
                diff = (cc - bb) / len(common)
                lines.append(f"| {v} | {b} | {len(common)} | {bb} | {cc} | {100 * diff:+.1f} | {p:.3g} |")
            if lines:
                name = "the full cache" if ref == "full" else ref
                md.append(f"Paired with {name} on the same problems (b: only {name} right; c: only the variant right; "
                          "exact McNemar p):\n")
                md.append(f"| variant | budget | problems | b | c | variant - {ref} (points) | p |")
                md.append("|---|---|---|---|---|---|---|")
                md.extend(lines)
                md.append("")

    with open(os.path.join(a.out, "report.md"), "w", encoding="utf-8") as f:
        f.write("# Reasoning accuracy under KV-cache compression (llama-infokv-reason)\n\n")
        f.write("Generated by scripts/reasoning/report.py from " + ", ".join(os.path.basename(p) for p in a.results) + ".\n\n")
        f.write("\n".join(md) + "\n")
    with open(os.path.join(a.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print("\n".join(md))

    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed: no plots written", file=sys.stderr)
        return
    for cfg in sorted(groups):
        model, pset, interval, n_predict, flash = cfg
        entries = [e for e in summary
                   if (e["model"], e["set"], e["interval"], e["n_predict"], e["flash_attn"]) == cfg]
        budgets = sorted({e["budget"] for e in entries if e["budget"] != "full"}, key=budget_key)
        if not budgets:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        xs = list(range(len(budgets)))
        full = [e for e in entries if e["variant"] == "full"]
        if full:
            f0 = full[0]
            ax.axhline(100 * f0["accuracy"], color="black", lw=1.5, label=f"full cache ({100 * f0['accuracy']:.0f}%)")
            ax.axhspan(100 * f0["ci95"][0], 100 * f0["ci95"][1], color="black", alpha=0.08)
        variants = sorted({e["variant"] for e in entries if e["budget"] != "full"})
        for k, v in enumerate(variants):
            pts = {e["budget"]: e for e in entries if e["variant"] == v}
            ys = [100 * pts[b]["accuracy"] if b in pts else float("nan") for b in budgets]
            lo = [100 * (pts[b]["accuracy"] - pts[b]["ci95"][0]) if b in pts else 0 for b in budgets]
            hi = [100 * (pts[b]["ci95"][1] - pts[b]["accuracy"]) if b in pts else 0 for b in budgets]
            off = (k - (len(variants) - 1) / 2) * 0.04
            style = dict(lw=2.5, marker="o") if v.startswith("infokv") else dict(lw=1, marker=".", ls="--")
            # tab20: a grid with its ablations has more variants than the default cycle's 10 colours.
            ax.errorbar([x + off for x in xs], ys, yerr=[lo, hi], capsize=2, label=v, color=plt.cm.tab20.colors[k % 20],
                        **style)
        ax.set_xticks(xs)
        ax.set_xticklabels([b if b.endswith("%") else f"{b} tokens" for b in budgets])
        ax.set_xlabel("KV budget (a share of the tokens seen, or a fixed number of tokens)")
        ax.set_ylabel("problems right (%), 95% Wilson interval")
        attn = ", flash attention" if flash else ""
        ax.set_title(f"{model}, {pset}: every {interval} steps, at most {n_predict} tokens{attn}", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"accuracy-{model}-{pset}" + ("-flash" if flash else "")).replace(".gguf", "").replace(".jsonl", "")
        fig.savefig(os.path.join(a.out, stem + ".png"), dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
