"""Language-model fixtures in the real on-disk layouts: a byte-level BPE tokenizer directory (what
``AutoTokenizer.from_pretrained`` reads, with ``<|endoftext|>`` as EOS) and a packed token data set
(``index.json`` + little-endian ``.bin`` shards, :mod:`experiments.lm.shards`' format), plus the
overrides of a tiny GPT-2 / Qwen2 built from a config (no download)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np

WORDS = (
    "the a of to and in is was it that for on with as by at from this be are were an or not "
    "river mountain city king music science water light stone history language number garden"
).split()
EOS = "<|endoftext|>"


def documents(n: int, seed: int) -> list[str]:
    """``n`` short documents of common words with a little structure to learn."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        subject = rng.choice(WORDS[20:])
        words = [w for _ in range(rng.randint(8, 30)) for w in ("the", subject, rng.choice(WORDS))]
        docs.append(" ".join(words) + ".")
    return docs


def write_tokenizer(directory: Path, vocab_size: int = 300) -> Path:
    """A byte-level BPE trained on :func:`documents`, saved as a GPT-2 fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents(200, 99), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS
    )
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)
    return directory


def write_token_data(
    directory: Path, tokenizer: Path, *, train_docs: int = 120, val_docs: int = 30
) -> Path:
    """Documents tokenised with ``tokenizer``, each followed by EOS, in uint16 shards of at most
    2,000 tokens (so windows cross shard boundaries), with the index the loader reads."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, (n, seed) in {"train": (train_docs, 0), "val": (val_docs, 1)}.items():
        ids = [t for doc in documents(n, seed) for t in [*tok(doc)["input_ids"], tok.eos_token_id]]
        shards = []
        for k, start in enumerate(range(0, len(ids), 2000)):
            name = f"{split}_{k:05d}.bin"
            chunk = np.asarray(ids[start : start + 2000], dtype="<u2")
            chunk.tofile(directory / name)
            digest = hashlib.sha256(chunk.tobytes()).hexdigest()
            shards.append({"file": name, "tokens": len(chunk), "sha256": digest})
        splits[split] = {"tokens": len(ids), "documents": n, "shards": shards}
    index = {
        "format": "kinetics-lm-shards/1",
        "dtype": "uint16",
        "vocab_size": len(tok),
        "eos_id": tok.eos_token_id,
        "tokenizer": {"name_or_path": str(tokenizer), "sha256": ""},
        "splits": splits,
        "sources": [],
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def tiny_gpt2_overrides(data: Path, model: str = "gpt2") -> list[str]:
    """Overrides of a 2-layer, 32-wide GPT-2 (or Qwen2) on ``data`` with 16-token windows."""
    if model.startswith("qwen2"):
        config = (
            "{num_hidden_layers:2,hidden_size:32,num_attention_heads:4,num_key_value_heads:2,"
            "intermediate_size:64,max_position_embeddings:64}"
        )
    else:
        config = "{n_layer:2,n_embd:32,n_head:4,n_positions:64}"
    return [
        f"model={model}",
        f"model.config={config}",
        "dataset=lm_tokens",
        f"dataset.dir={data}",
        "dataset.seq_len=16",
    ]
