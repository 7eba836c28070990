#!/usr/bin/env python3
"""Writes the seed corpus of the GGUF fuzz target (tests/fuzz/corpus/gguf/): tiny Llama-family
GGUF files made with the gguf package's writer, one per tensor type the engine reads, with a
byte-level BPE vocabulary, merges, control tokens and a ChatML template.

usage: make_fuzz_seeds.py OUT_DIR   (needs the gguf package: scripts/reference/setup_venv.sh)"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.quants import quantize

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
d, ff, vocab = 32, 64, 32
tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(97, 97 + 26)] + ["Ġ", "he", "Ġt"]
types = [3, 3, 3] + [1] * (len(tokens) - 3)
for name, qtype in [("f32", Q.F32), ("f16", Q.F16), ("q8_0", Q.Q8_0), ("q4_1", Q.Q4_1), ("q4_0", Q.Q4_0)]:
    w = GGUFWriter(os.path.join(out, f"tiny_llama_{name}.gguf"), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["h e", "Ġ t"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")

    def tensor(tname, shape):
        x = rng.standard_normal(shape).astype(np.float32)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(tname, x.astype(np.float16) if qtype == Q.F16 else x)
        else:
            w.add_tensor(tname, quantize(x, qtype), raw_dtype=qtype)

    tensor("token_embd.weight", (len(tokens), d))
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    for t, shape in [("attn_q", (d, d)), ("attn_k", (d // 2, d)), ("attn_v", (d // 2, d)), ("attn_output", (d, d)),
                     ("ffn_gate", (ff, d)), ("ffn_up", (ff, d)), ("ffn_down", (d, ff))]:
        tensor(f"blk.0.{t}.weight", shape)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(d, dtype=np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(d, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
print("seeds written to", out)
