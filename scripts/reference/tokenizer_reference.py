#!/usr/bin/env python3
"""Tokenises text files with an independent tokenizer built from the same GGUF: Hugging Face
transformers' GGUF loader (tokenizers' byte-level BPE with the file's vocabulary, merges and
pre-tokenizer), and compares with infokv_engine's tokenizer.

usage: tokenizer_reference.py MODEL.gguf ENGINE_BINARY TEXT... [--write-ids OUT.json]

Needs `transformers==4.57.6 tokenizers gguf sentencepiece` (scripts/reference/setup_venv.sh).
transformers 4.57 refuses GGUF files without torch installed, although the tokenizer path
never touches torch; the guard is bypassed below (torch is only needed for model weights).
"""
import json
import os
import subprocess
import sys

import transformers.modeling_gguf_pytorch_utils as gguf_utils
from transformers import AutoTokenizer

gguf_utils.is_torch_available = lambda: True

args = sys.argv[1:]
write_ids = None
if "--write-ids" in args:
    i = args.index("--write-ids")
    write_ids = args[i + 1]
    del args[i : i + 2]
model, engine, texts = args[0], args[1], args[2:]
tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(model)), gguf_file=os.path.basename(model))
total = agree = 0
for path in texts:
    text = open(path, encoding="utf-8").read()
    ref = tok.encode(text, add_special_tokens=False)
    out = subprocess.run([engine, "tokenize", "--model", model, "--text", path], capture_output=True, text=True, check=True)
    ours = json.loads(out.stdout)
    same = ref == ours
    first = next((k for k in range(min(len(ref), len(ours))) if ref[k] != ours[k]), None)
    print(f"{os.path.basename(path)}: {len(text)} bytes, reference {len(ref)} tokens, engine {len(ours)} tokens, "
          f"{'identical' if same else f'first difference at token {first}'}")
    total += 1
    agree += same
    if write_ids:
        with open(write_ids, "w") as f:
            json.dump(ref, f)
print(f"{agree} of {total} texts tokenised identically (transformers {__import__('transformers').__version__}, "
      f"tokenizers {__import__('tokenizers').__version__})")
sys.exit(0 if agree == total else 1)
