"""Reading JSON Lines result files (one object a line, blank lines skipped), shared by the report
and comparison scripts. Every error names the file and line, then exits: these scripts run at the
end of long evaluations, where a traceback would hide which file was cut short."""
import json
import sys


def read_jsonl(path, what="records", allow_empty=False):
    """The objects of `path` in file order; exits with an error when a line is not JSON or (unless
    allow_empty) the file holds none."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"error: {path}:{n}: not JSON ({e}); a file cut short?")
    if not rows and not allow_empty:
        sys.exit(f"error: {path} holds no {what}")
    return rows
