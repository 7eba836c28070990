#!/usr/bin/env python3
"""Writes a problem set for llama-infokv-reason (JSON Lines: id, prompt, answer, checker) from a
reasoning-gym task: procedurally generated problems with known answers, the same for the same
task, seed and size. Run it with the venv of scripts/reasoning/setup_venv.sh.

  make_problem_set.py --task gsm_symbolic --seed 42 --size 200 --out gsm_symbolic-42-200.jsonl

The checker is "integer" when every reference answer is an integer, "number" when every one is a
decimal number, otherwise "exact" (the task's own answer text). Each line also carries the task, seed and index it came from.
"""
import argparse
import json
import re
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="gsm_symbolic", help="a reasoning-gym dataset name")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.size <= 0:
        sys.exit("error: --size must be positive")
    import reasoning_gym  # noqa: PLC0415 (only inside the venv)

    try:
        data = reasoning_gym.create_dataset(a.task, seed=a.seed, size=a.size)
    except Exception as e:  # reasoning-gym raises plain errors for unknown names
        sys.exit(f"error: reasoning-gym cannot make '{a.task}': {e}")
    rows = [dict(question=e["question"], answer=str(e["answer"]).strip()) for e in data]
    if all(re.fullmatch(r"-?\d+", r["answer"]) for r in rows):
        checker = "integer"
    elif all(re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", r["answer"]) for r in rows):
        checker = "number"
    else:
        checker = "exact"
    with open(a.out, "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"{a.task}-{a.seed}-{i}", "prompt": r["question"], "answer": r["answer"],
                                "checker": checker,
                                "source": {"task": a.task, "seed": a.seed, "index": i,
                                           "generator": "reasoning-gym 0.1.25"}}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} problems of {a.task} (seed {a.seed}, checker {checker}) -> {a.out}")


if __name__ == "__main__":
    main()
