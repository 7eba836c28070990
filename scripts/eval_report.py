#!/usr/bin/env python3
# Tables (results.md) and plots (PNG, matplotlib) from the CSV files infokv_eval writes. Which
# policies are attention-only comes from the run's policies.csv (the policy registry of the
# infokv_eval that wrote the results; `infokv_eval --list-policies` prints it).
# usage: scripts/eval_report.py OUT_DIR [--beside OTHER_OUT_DIR]
import csv
import os
import re
import sys
from collections import defaultdict


def rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def base_policy(label):
    """The policy a label runs: 'snapkv:kernel=5,sinks=0@per_layer_head' -> 'snapkv'."""
    return re.split(r"[:@]", label, maxsplit=1)[0]


def policy_registry(out):
    """(name, family) of every policy, in registry order, from OUT/policies.csv."""
    path = os.path.join(out, "policies.csv")
    reg = [(r["name"], r["family"]) for r in rows(path)]
    if not reg:
        sys.exit(f"no policies.csv in {out}: infokv_eval writes it with every run; for results made before it "
                 f"did, write it with `infokv_eval --list-policies > {path}`")
    return reg


def attention_only(registry, quality):
    """Policies that rank tokens by (expected) attention weight alone: the paper's "attention-based
    compression" that InfoKV is meant to improve on. The registry's attention-only policies, then
    every other label of the run that runs one of them (another granularity or other settings),
    in the order the run wrote them."""
    names = [n for n, family in registry if family == "attention-only"]
    labels = []
    for r in quality:
        pol = r["policy"]
        if pol not in names and pol not in labels and base_policy(pol) in names:
            labels.append(pol)
    return names + labels


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def pct(b):
    return f"{100 * float(b):g}%"


def aggregate(quality):
    """(scenario, context, period, budget, policy) -> mean metrics over windows, weighted by predictions."""
    acc = defaultdict(lambda: defaultdict(float))
    for r in quality:
        k = (r["scenario"], int(r["context"]), int(r["period"]), float(r["budget"]), r["policy"])
        n = int(r["predictions"])
        a = acc[k]
        a["n"] += n
        a["windows"] += 1
        for m in ("nll_full", "nll", "delta_nll", "kl", "top1", "kept"):
            a[m] += float(r[m]) * n
    out = {}
    for k, a in acc.items():
        out[k] = {m: a[m] / a["n"] for m in ("nll_full", "nll", "delta_nll", "kl", "top1", "kept")}
        out[k]["n"] = int(a["n"])
        out[k]["windows"] = int(a["windows"])
    return out


def settings(agg, scenario):
    return sorted({(c, p, b) for (s, c, p, b, _) in agg if s == scenario and _ != "full"},
                  key=lambda x: (x[0], x[1], -x[2]))


def policies_of(agg, scenario):
    seen = []
    for (s, _, _, _, pol) in agg:
        if s == scenario and pol != "full" and pol not in seen:
            seen.append(pol)
    return seen


def infokv_settings(agg):
    """(scenario, context, period, budget, lookup, compressed policies) for every setting InfoKV ran in."""
    for sc in ("prefill", "decode", "repeat"):
        pols = policies_of(agg, sc)
        for (c, p, b) in settings(agg, sc):
            get = (lambda sc, c, p, b: lambda pol: agg.get((sc, c, p, b, pol)))(sc, c, p, b)
            if get("infokv") is not None:
                yield sc, c, p, b, get, pols


def summary(agg, lines, attention):
    """One row per setting: InfoKV against the best attention-only baseline by each metric."""
    lines.append("## Summary: InfoKV against the best attention-only baseline\n")
    lines.append("Delta NLL (nats per token) and mean KL(p_full || p) against the full cache, lower is better; "
                 "attention-only: " + ", ".join(attention) + "; best of all over every compressed policy; "
                 "InfoKV's rank among them by delta NLL and by KL.\n")
    lines.append("| setting | budget | InfoKV dNLL / KL | best attention-only dNLL | best attention-only KL | "
                 "best of all (dNLL) | InfoKV rank (dNLL, KL) |")
    lines.append("|---|---|---|---|---|---|---|")
    for sc, c, p, b, g, pols in infokv_settings(agg):
        inf = g("infokv")
        ba = min(((g(x)["delta_nll"], x) for x in attention if g(x)), default=(float("nan"), "-"))
        bk = min(((g(x)["kl"], x) for x in attention if g(x)), default=(float("nan"), "-"))
        al = min((g(x)["delta_nll"], x) for x in pols if g(x))
        rd = 1 + sum(1 for x in pols if g(x) and g(x)["delta_nll"] < inf["delta_nll"])
        rk = 1 + sum(1 for x in pols if g(x) and g(x)["kl"] < inf["kl"])
        name = {"prefill": f"prefill C={c}", "decode": f"decode T={c}, every {p}",
                "repeat": f"repeat, context {c}"}[sc]
        lines.append(f"| {name} | {pct(b)} | {inf['delta_nll']:+.3f} / {inf['kl']:.3f} | {ba[0]:+.3f} {ba[1]} | "
                     f"{bk[0]:.3f} {bk[1]} | {al[0]:+.3f} {al[1]} | {rd}, {rk} of {len(pols)} |")
    lines.append("")


def headline(agg, lines, metric, attention):
    what = {"delta_nll": "delta NLL", "kl": "mean KL(p_full || p)"}[metric]
    lines.append(f"## Headline ({what}): InfoKV against the best attention-only baseline\n")
    lines.append(("Delta NLL: nats per token against the full cache" if metric == "delta_nll" else
                  "KL: nats per prediction, the full cache's distribution against the compressed one") +
                 " (lower is better), mean over the scored predictions. The attention-only baselines are " +
                 ", ".join(attention) + "; the best of them in each setting is named. \"rank\" is InfoKV's "
                 "place among all compressed policies (1 = best).\n")
    lines.append("| scenario | setting | budget | InfoKV | InfoKV adaptive | best attention-only | "
                 "InfoKV - best attention-only | best of all | InfoKV rank |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for scenario, c, p, b, get, pols in infokv_settings(agg):
        att = [(get(x)[metric], x) for x in attention if get(x)]
        allp = sorted((get(x)[metric], x) for x in pols if get(x))
        best_att = min(att) if att else (float("nan"), "-")
        inf = get("infokv")[metric]
        ada = get("infokv-adaptive")[metric] if get("infokv-adaptive") else float("nan")
        rank = 1 + sum(1 for v, _ in allp if v < inf)
        setting = f"C={c}" if scenario == "prefill" else (f"T={c}, every {p}" if scenario == "decode"
                                                           else f"passage+gap {c}")
        lines.append(f"| {scenario} | {setting} | {pct(b)} | {inf:+.4f} | {ada:+.4f} | {best_att[1]} "
                     f"{best_att[0]:+.4f} | {inf - best_att[0]:+.4f} | {allp[0][1]} {allp[0][0]:+.4f} | "
                     f"{rank}/{len(allp)} |")
    lines.append("")


def full_tables(agg, lines, first_read):
    names = {"prefill": "Prefill compression (context C compressed once, next tokens scored)",
             "decode": "Decode compression (compress every P tokens to a share of the tokens seen)",
             "repeat": "Repeated passage (passage, gap, passage again; NLL on the repeat)"}
    for scenario in ("prefill", "decode", "repeat"):
        sets = settings(agg, scenario)
        if not sets:
            continue
        lines.append(f"## {names[scenario]}\n")
        groups = sorted({(c, p) for (c, p, _) in sets})
        for (c, p) in groups:
            budgets = sorted({b for (cc, pp, b) in sets if (cc, pp) == (c, p)}, reverse=True)
            full = agg.get((scenario, c, p if scenario != "decode" else 0, 1.0, "full"))
            title = {"prefill": f"C = {c}", "decode": f"T = {c}, P = {p}", "repeat": ""}[scenario]
            if scenario == "repeat":
                fr = first_read.get(c)
                title = f"passage + gap = {c} tokens" + (f"; first-read NLL {fr:.3f}" if fr is not None else "")
            extra = f"; full-cache NLL {full['nll_full']:.4f} over {full['n']} predictions" if full else ""
            if full and full["windows"] > 1:
                extra += f" ({full['windows']} text windows)"
            lines.append(f"**{title}**{extra}\n")
            lines.append("| policy | " + " | ".join(f"{pct(b)}: dNLL / KL / top-1" for b in budgets) + " |")
            lines.append("|---|" + "---|" * len(budgets))
            for pol in policies_of(agg, scenario):
                cells = []
                for b in budgets:
                    r = agg.get((scenario, c, p, b, pol))
                    cells.append("-" if r is None else f"{r['delta_nll']:+.4f} / {r['kl']:.4f} / {r['top1']:.3f}")
                lines.append(f"| {pol} | " + " | ".join(cells) + " |")
            lines.append("")


def influence_section(inf, lines):
    if not inf:
        return None
    lines.append("## Forward influence\n")
    prefix = inf[0]["prefix"]
    lines.append(f"The first {prefix} tokens are compressed once, then the rest is fed uncompressed; mean "
                 "KL(p_full || p) per band of distance after the prefix. Scores: attention alone "
                 "(infokv:alpha=1, SnapKV's scores), the entropy score alone (infokv:alpha=0), InfoKV, random. "
                 "Rows at a small keep share keep what the score ranks highest (evict what it would drop); rows "
                 "with invert=1 remove what the score ranks highest (the paper's influence: the shift caused by "
                 "removing a set), random:keep=0.9 removes a random 10%.\n")
    bands = [(0, 128), (128, 512), (512, 2048), (2048, 4096), (4096, 1 << 30)]
    data = defaultdict(list)
    for r in inf:
        data[(r["policy"], float(r["budget"]))].append((int(r["distance"]), float(r["kl"]), int(r["predictions"]),
                                                        float(r["delta_nll"])))
    head = " | ".join(f"{a}-{b if b < 1 << 30 else 'end'}" for a, b in bands)
    lines.append(f"| policy | keep | {head} |")
    lines.append("|---|---|" + "---|" * len(bands))
    summary = {}
    for (pol, b), pts in data.items():
        cells = []
        for a, z in bands:
            sel = [(kl, n) for d, kl, n, _ in pts if a <= d < z and n > 0]
            v = sum(kl * n for kl, n in sel) / sum(n for _, n in sel) if sel else float("nan")
            cells.append("-" if v != v else f"{v:.4f}")
            summary[(pol, b, a)] = v
        lines.append(f"| {pol} | {pct(b)} | " + " | ".join(cells) + " |")
    lines.append("")
    return data, summary, bands


def passkey_section(pk, lines):
    if not pk:
        return
    lines.append("## Passkey retrieval\n")
    ctx = pk[0]["context"]
    lines.append(f"A 5-digit key stated once in {ctx} tokens of the novel, asked for at the end; retrieved when "
                 "every answer token is the arg max (what greedy decoding would produce). Accuracy over all "
                 "depths and trials.\n")
    acc = defaultdict(lambda: [0, 0])
    depth_acc = defaultdict(lambda: [0, 0])
    for r in pk:
        k = (r["policy"], float(r["budget"]))
        acc[k][0] += int(r["correct"])
        acc[k][1] += int(r["trials"])
        depth_acc[(r["policy"], float(r["budget"]), float(r["depth"]))][0] += int(r["correct"])
        depth_acc[(r["policy"], float(r["budget"]), float(r["depth"]))][1] += int(r["trials"])
    budgets = sorted({b for (_, b) in acc if b < 1.0}, reverse=True)
    depths = sorted({d for (_, _, d) in depth_acc})
    full = acc.get(("full", 1.0), [0, 0])
    lines.append(f"Full cache: {full[0]}/{full[1]} retrieved; by depth: " +
                 ", ".join(f"{d:g}: {depth_acc[('full', 1.0, d)][0]}/{depth_acc[('full', 1.0, d)][1]}" for d in depths) + ".\n")
    lines.append("| policy | " + " | ".join(pct(b) for b in budgets) + " |")
    lines.append("|---|" + "---|" * len(budgets))
    pols = []
    for r in pk:
        if r["policy"] != "full" and r["policy"] not in pols:
            pols.append(r["policy"])
    for pol in pols:
        lines.append(f"| {pol} | " + " | ".join(f"{acc[(pol, b)][0]}/{acc[(pol, b)][1]}" for b in budgets) + " |")
    lines.append("")


def plots(out, agg, inf_data, pk):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (apt-get install python3-matplotlib): no plots", file=sys.stderr)
        return []
    made = []
    style = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        made.append(name)

    def st(pol):
        if pol not in style:
            i = len(style)
            style[pol] = dict(marker="osd^v<>xP*hX8"[i % 13], linestyle="-" if pol.startswith("infokv") else "--",
                              linewidth=2.2 if pol.startswith("infokv") else 1.0)
        return style[pol]

    for scenario, fname, label in (("prefill", "prefill.png", "C"), ("decode", "decode.png", "P"),
                                   ("repeat", "repeat.png", "context")):
        sets = settings(agg, scenario)
        if not sets:
            continue
        groups = sorted({(c, p) for (c, p, _) in sets})
        fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), squeeze=False)
        for ax, (c, p) in zip(axes[0], groups):
            for pol in policies_of(agg, scenario):
                pts = sorted((b, agg[(scenario, c, p, b, pol)]["delta_nll"]) for (cc, pp, b) in sets
                             if (cc, pp) == (c, p) and (scenario, c, p, b, pol) in agg)
                if pts:
                    ax.plot([100 * x for x, _ in pts], [y for _, y in pts], label=pol, **st(pol))
            ax.set_title({"prefill": f"prefill, C = {c}", "decode": f"decode, T = {c}, every {p}",
                          "repeat": f"repeat after {c} tokens"}[scenario])
            ax.set_xlabel("kept (% of tokens seen)")
            ax.set_ylabel("delta NLL vs full cache (nats/token)")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="upper right")
        save(fig, fname)
    if inf_data:
        data, _, _ = inf_data
        panels = [("keep what each score ranks highest", lambda b: b < 0.5),
                  ("remove what each score ranks highest", lambda b: b >= 0.5)]
        panels = [(t, f) for t, f in panels if any(f(b) for _, b in data)]
        fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
        for ax, (title, sel) in zip(axes[0], panels):
            for (pol, b), pts in sorted(data.items()):
                if not sel(b):
                    continue
                pts = sorted(pts)
                ax.plot([d for d, *_ in pts], [kl for _, kl, _, _ in pts], label=f"{pol}, keep {pct(b)}",
                        marker=st(pol)["marker"], linewidth=1.2, markersize=3)
            ax.set_xscale("symlog", linthresh=128)
            ax.set_yscale("log")
            ax.set_xlabel("distance after the compressed prefix (tokens, start of 128-token chunk)")
            ax.set_ylabel("mean KL(p_full || p) in the chunk")
            ax.set_title(f"forward influence: {title}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save(fig, "influence.png")
    if pk:
        acc = defaultdict(lambda: [0, 0])
        for r in pk:
            acc[(r["policy"], float(r["budget"]))][0] += int(r["correct"])
            acc[(r["policy"], float(r["budget"]))][1] += int(r["trials"])
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for pol in sorted({p for p, _ in acc if p != "full"}):
            pts = sorted((b, acc[(pol, b)][0] / acc[(pol, b)][1]) for (p, b) in acc if p == pol)
            ax.plot([100 * b for b, _ in pts], [a for _, a in pts], label=pol, **st(pol))
        if ("full", 1.0) in acc:
            f = acc[("full", 1.0)]
            ax.axhline(f[0] / f[1], color="k", linewidth=0.8, label="full cache")
        ax.set_xlabel("kept (% of the prompt)")
        ax.set_ylabel("passkey accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "passkey.png")
    return made


def beside_section(agg, other, lines):
    """Prefill delta NLL of this run's variants beside the other run's default-settings row of the
    same policy (e.g. kvpress's protocol beside this project's), per context and over all settings."""
    pols = policies_of(agg, "prefill")
    ctxs = sorted({c for (_, c, _, _) in [(s, c, p, b) for (s, c, p, b, _) in agg if s == "prefill"]})
    budgets = sorted({b for (s, c, p, b, pol) in agg if s == "prefill" and pol != "full"}, reverse=True)
    lines.append("## Beside the other run's settings\n")
    lines.append("Prefill delta NLL (nats per token, mean over the budgets " +
                 ", ".join(pct(b) for b in budgets) + " and the text windows) of each variant here, and "
                 "of the same policy in the other run (its row without settings).\n")
    lines.append("| variant | run | " + " | ".join(f"C={c}" for c in ctxs) + " | mean |")
    lines.append("|---|---|" + "---|" * (len(ctxs) + 1))
    for pol in pols:
        for name, a, label in (("this", agg, pol), ("other", other, base_policy(pol))):
            vals = [[a[k]["delta_nll"] for b in budgets for k in [("prefill", c, 0, b, label)] if k in a] for c in ctxs]
            if not all(vals):
                continue
            cells = " | ".join(f"{mean(v):+.4f}" for v in vals)
            lines.append(f"| {pol if name == 'this' else base_policy(pol)} | {name} | {cells} | "
                         f"{mean(x for v in vals for x in v):+.4f} |")
    lines.append("")


def main():
    args = sys.argv[1:]
    beside = None
    if len(args) == 3 and args[1] == "--beside":
        beside = args[2]
        args = args[:1]
    if len(args) != 1:
        sys.exit("usage: eval_report.py OUT_DIR [--beside OTHER_OUT_DIR]")
    out = args[0]
    quality = rows(os.path.join(out, "quality.csv"))
    if not quality:
        sys.exit(f"no quality.csv in {out}")
    agg = aggregate(quality)
    attention = attention_only(policy_registry(out), quality)
    first_read = {int(r["context"]): float(r["nll_first_read"]) for r in rows(os.path.join(out, "repeat_first_read.csv"))}
    inf = rows(os.path.join(out, "influence.csv"))
    pk = rows(os.path.join(out, "passkey.csv"))
    lines = ["# infokv quality evaluation\n"]
    log = os.path.join(out, "log.txt")
    if os.path.exists(log):
        text = open(log).read()
        head = text.splitlines()[0] if text else ""
        wall = re.findall(r"wall time of the evaluation: .*", text) or re.findall(r"evaluation wall time: .*", text)
        lines.append(f"{head}\n\n{wall[-1] if wall else ''}\n")
    if any(k[4] == "infokv" for k in agg):  # the InfoKV headlines need the default InfoKV row
        summary(agg, lines, attention)
        headline(agg, lines, "delta_nll", attention)
        headline(agg, lines, "kl", attention)
    if beside is not None:
        beside_section(agg, aggregate(rows(os.path.join(beside, "quality.csv"))), lines)
    inf_data = influence_section(inf, lines)
    passkey_section(pk, lines)
    full_tables(agg, lines, first_read)
    made = plots(out, agg, inf_data, pk)
    if made:
        lines.append("## Plots\n")
        lines += [f"![{m}]({m})" for m in made]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {os.path.join(out, 'results.md')} and {len(made)} plots")


if __name__ == "__main__":
    main()
