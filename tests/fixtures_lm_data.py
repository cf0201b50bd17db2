"""LM data fixtures in the real on-disk layouts: tiny transformers tokenizer folders (a byte-level
BPE trained here, a word-level one large enough to need uint32 ids), jsonl text sources, and a
prepared token-shard folder written directly (for loader tests that need no tokenizer)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.lm import shards

EOS = "<|endoftext|>"
WORDS = "the cat sat on a mat dog ate bone red blue green quick brown fox jumps over lazy".split()
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a red cat sat on the blue mat",
    "the dog ate a green bone",
    "It's a test: 123 + 456 = 579, isn't it?",
]


def write_bpe_tokenizer(directory: Path, vocab_size: int = 300) -> Path:
    """A GPT-2-style byte-level BPE trained on :data:`SENTENCES`, eos ``<|endoftext|>`` = id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS)
    fast.save_pretrained(str(directory))
    return directory


def write_wide_tokenizer(directory: Path, n_words: int = 70_000) -> Path:
    """A word-level tokenizer of ``n_words`` words ``w0 .. w<n-1>`` plus eos (id ``n_words``):
    more ids than uint16 holds."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(n_words)}
    vocab["[UNK]"] = n_words
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, unk_token="[UNK]")
    fast.save_pretrained(str(directory))
    return directory


def random_texts(n: int, seed: int, prefix: str = "", max_words: int = 12) -> list[str]:
    """``n`` short texts of :data:`WORDS` (each starting with ``prefix`` when given)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(1, max_words))
        texts.append(" ".join([prefix, *words]) if prefix else " ".join(words))
    return texts


def write_jsonl(path: Path, texts: Sequence[str], column: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({column: t}) + "\n" for t in texts), encoding="utf-8")
    return path


def write_token_shards(
    directory: Path,
    train: Sequence[Sequence[int]],
    val: Sequence[Sequence[int]] = (),
    *,
    vocab_size: int = 100,
    eos_id: int = 0,
    shard_tokens: int = 64,
) -> Path:
    """A prepared data set (format ``kinetics-lm-shards/1``) holding these token documents, each
    followed by ``eos_id``: for loader tests that need no tokenizer or text."""
    dtype = shards.dtype_for(vocab_size)
    splits = {}
    for split, docs in (("train", train), ("val", val)):
        writer = shards.ShardWriter(directory, split, dtype, shard_tokens)
        for doc in docs:
            writer.add(np.asarray([*doc, eos_id]))
        writer.close()
        splits[split] = {"tokens": writer.tokens, "documents": len(docs), "shards": writer.shards}
    index = {
        "format": shards.FORMAT,
        "dtype": shards.dtype_name(dtype),
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "tokenizer": {"name_or_path": "fixture", "sha256": ""},
        "recipe": {},
        "recipe_sha256": "",
        "splits": splits,
        "sources": [],
        "created": "",
        "commit": "",
    }
    shards.write_index(directory, index)
    return directory
