"""Text fixtures in the real on-disk layouts: a WordPiece tokenizer directory (what
``AutoTokenizer.from_pretrained`` reads) and small csv / parquet tables with named columns, plus
the overrides of a tiny BERT / DistilBERT built from a config (no download)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "good great fine nice fun best love bad awful dull worst boring hate movie film plot actor "
    "play music song weather rain sun book read time alarm set a the is was it this that very not"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = {"good", "great", "fine", "nice", "fun", "best", "love"}


def write_tokenizer(directory: Path) -> Path:
    """A BERT WordPiece tokenizer over :data:`WORDS`, saved as transformers saves one."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL, *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(directory)
    return directory


def vocab_size() -> int:
    return len(SPECIAL) + len(WORDS)


def sentiment_rows(n: int, seed: int) -> list[dict[str, object]]:
    """Sentences whose label (1 positive, 0 negative) follows from their words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        pool = sorted(POSITIVE) if label else ["bad", "awful", "dull", "worst", "boring", "hate"]
        words = [rng.choice(["the", "movie", "film", "plot", "was", "very"]) for _ in range(4)]
        words.insert(rng.randint(0, 4), rng.choice(pool))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def pair_rows(n: int, seed: int) -> list[dict[str, object]]:
    """Premise / hypothesis pairs with 3 labels and a few -1 rows (SNLI's layout)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(WORDS) for _ in range(5))
        b = " ".join(rng.choice(WORDS) for _ in range(3))
        rows.append({"premise": a, "hypothesis": b, "label": -1 if i % 7 == 3 else i % 3})
    return rows


def write_table(path: Path, rows: list[dict[str, object]]) -> Path:
    """``rows`` as csv or parquet by the suffix of ``path``."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def tiny_model_overrides(tokenizer: Path, model: str = "bert_base_uncased") -> list[str]:
    """Hydra overrides of a 2-layer, 16-wide BERT (or DistilBERT) built from a config."""
    if model.startswith("distilbert"):
        config = (
            f"{{model_type:distilbert,vocab_size:{vocab_size()},dim:16,n_layers:2,n_heads:2,"
            "hidden_dim:32,max_position_embeddings:64}"
        )
    else:
        config = (
            f"{{model_type:bert,vocab_size:{vocab_size()},hidden_size:16,num_hidden_layers:2,"
            "num_attention_heads:2,intermediate_size:32,max_position_embeddings:64}"
        )
    return [
        f"model={model}",
        "model.pretrained=null",
        f"+model.config={config}",
        f"model.tokenizer={tokenizer}",
    ]
