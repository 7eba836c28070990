#!/usr/bin/env python3
# How far two runs of infokv_eval moved: every quality row (delta NLL, KL), every forward-
# influence chunk and every passkey tally of OLD_DIR against NEW_DIR, matched by their settings.
# Prints a Markdown summary per scenario and policy and the rows that moved most; with --rows,
# every row that moved.
# usage: scripts/quality_diff.py OLD_DIR NEW_DIR [--threshold 1e-4] [--rows]
#   e.g. git show a71d5f1:bench/results/quality/quality.csv > old/quality.csv  (and the others)
import argparse
import csv
import os
from collections import defaultdict


def read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def keyed(rows, fields):
    return {tuple(r[k] for k in fields): r for r in rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--threshold", type=float, default=1e-4, help="a change above this (nats) counts as moved")
    ap.add_argument("--rows", action="store_true", help="list every row that moved")
    a = ap.parse_args()

    qf = ["scenario", "window", "context", "period", "budget", "policy"]
    old = keyed(read(os.path.join(a.old, "quality.csv")), qf)
    new = keyed(read(os.path.join(a.new, "quality.csv")), qf)
    only_old, only_new = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    moved = []
    by_group = defaultdict(lambda: [0, 0, 0.0])  # (scenario, policy) -> [rows, moved, max |change|]
    for k in sorted(set(old) & set(new)):
        if k[5] == "full":
            continue
        d = float(new[k]["delta_nll"]) - float(old[k]["delta_nll"])
        dkl = float(new[k]["kl"]) - float(old[k]["kl"])
        g = by_group[(k[0], k[5])]
        g[0] += 1
        if abs(d) > a.threshold or abs(dkl) > a.threshold:
            g[1] += 1
            moved.append((abs(d), k, float(old[k]["delta_nll"]), float(new[k]["delta_nll"]), dkl))
        g[2] = max(g[2], abs(d))
    full_moved = [k for k in set(old) & set(new) if k[5] == "full" and
                  abs(float(new[k]["nll_full"]) - float(old[k]["nll_full"])) > 1e-6]

    print(f"# {a.old} -> {a.new}\n")
    print(f"quality rows compared: {sum(g[0] for g in by_group.values())}; moved by more than {a.threshold:g} "
          f"(delta NLL or KL): {len(moved)}; full-cache rows whose NLL changed: {len(full_moved)}; "
          f"rows only in the old run: {len(only_old)}, only in the new: {len(only_new)}\n")
    print("| scenario | policy | rows | moved | max abs change of delta NLL |")
    print("|---|---|---|---|---|")
    for (sc, pol), (n, m, mx) in sorted(by_group.items()):
        print(f"| {sc} | {pol} | {n} | {m} | {mx:.4f} |")
    moved.sort(reverse=True)
    shown = moved if a.rows else moved[:15]
    if shown:
        print(f"\n{'Every row' if a.rows else 'The rows'} that moved most (delta NLL old -> new):\n")
        print("| scenario | window | context | period | budget | policy | old | new | change | KL change |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for _, k, o, n, dkl in shown:
            print(f"| {' | '.join(k)} | {o:+.4f} | {n:+.4f} | {n - o:+.4f} | {dkl:+.4f} |")

    inf_f = ["policy", "budget", "chunk"]
    io = keyed(read(os.path.join(a.old, "influence.csv")), inf_f)
    inn = keyed(read(os.path.join(a.new, "influence.csv")), inf_f)
    if io or inn:
        worst = defaultdict(float)
        for k in set(io) & set(inn):
            worst[k[0]] = max(worst[k[0]], abs(float(inn[k]["kl"]) - float(io[k]["kl"])))
        print("\nForward influence, largest change of a chunk's KL per run:\n")
        print("| run | max abs change of KL |")
        print("|---|---|")
        for p, w in sorted(worst.items()):
            print(f"| {p} | {w:.5f} |")

    pk_f = ["policy", "budget", "depth"]
    po = keyed(read(os.path.join(a.old, "passkey.csv")), pk_f)
    pn = keyed(read(os.path.join(a.new, "passkey.csv")), pk_f)
    if po or pn:
        tot_o, tot_n = defaultdict(int), defaultdict(int)
        for k in set(po) & set(pn):
            tot_o[k[0]] += int(po[k]["correct"])
            tot_n[k[0]] += int(pn[k]["correct"])
        print("\nPasskey, keys retrieved over every budget and depth (old -> new):\n")
        print("| policy | old | new |")
        print("|---|---|---|")
        for p in sorted(tot_o):
            print(f"| {p} | {tot_o[p]} | {tot_n[p]} |")


if __name__ == "__main__":
    main()
