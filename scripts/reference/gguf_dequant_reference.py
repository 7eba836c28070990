#!/usr/bin/env python3
"""Dequantises every tensor of a GGUF file with the `gguf` package (gguf-py, by the GGUF
authors) and writes, per tensor, a checksum of the float32 bit patterns and the float64 sum:
the reference tests/engine compares the engine's dequantisation with.

usage: gguf_dequant_reference.py MODEL.gguf OUT.json

Checksum: sum over i of bits(x[i]) * (2 i + 1) mod 2^64, where bits() is the float32 bit pattern
(any single differing value changes it).
"""
import json
import sys

import numpy as np
from importlib.metadata import version

from gguf import GGUFReader
from gguf.quants import dequantize


def checksum(x: np.ndarray) -> int:
    bits = x.astype(np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    weights = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * weights, dtype=np.uint64))


reader = GGUFReader(sys.argv[1])
out = {}
for t in reader.tensors:
    x = dequantize(t.data, t.tensor_type).astype(np.float32)
    out[t.name] = {
        "type": t.tensor_type.name,
        "elements": int(x.size),
        "checksum": str(checksum(x)),
        "sum": float(x.astype(np.float64).sum()),
    }
with open(sys.argv[2], "w") as f:
    json.dump({"generator": "gguf " + version("gguf"), "tensors": out}, f, indent=0)
print(f"{len(out)} tensors written to {sys.argv[2]}")
