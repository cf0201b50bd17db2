"""Helpers of the answer-perplexity tasks (``kinetics_*_answer_ppl``): data, prompt and metrics.

lm-eval loads this file by its path (``!function utils.<name>`` in the YAML files beside it), so it
imports nothing from this repository: the tasks also run from the plain ``lm_eval`` command line
(``--include_path experiments/lm/lm_eval_tasks``).

Each document is a ``question`` / ``answer`` pair. The request is the loglikelihood of
``" " + answer`` given ``"Question: <question>\\nAnswer:"`` (zero-shot). lm-eval 0.4.13 does not put
``target_delimiter`` between context and target for ``output_type: loglikelihood`` (only for
multiple choice), so the space is part of the target here, and the YAML files set
``target_delimiter: ""`` so that few-shot examples, if someone asks for them, read the same way.

Metrics (per document, then aggregated over the task):

- ``answer_ppl_token``: ``exp(-sum_docs loglik / sum_docs n_answer_tokens)``, the perplexity per
  answer token. This is the number for KITINet Table 2. It needs the number of answer tokens the
  model scored, which lm-eval does not pass to a task: the model wrapper of
  :mod:`experiments.lm.evaluation` (``TokenCountingHFLM``) attaches it to each loglikelihood result
  as ``n_tokens``. Without it (plain ``lm_eval``), the metric is NaN and a warning says why.
- ``answer_ppl_doc``: ``exp(-mean_docs loglik)``, lm-eval's own ``perplexity`` for loglikelihood
  tasks (the perplexity of a whole answer, not per token), for reference. It is computed by our
  own aggregation so that lm-eval does not bootstrap 100,000 resamples for its stderr.
- ``answer_tokens``: the number of answer tokens scored (sum over documents).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets

ANSWER_DELIMITER = " "
"""Between ``"...\\nAnswer:"`` and the answer: part of the scored continuation (see the module doc)."""

FAQ_ENV = "KINETICS_FAQ_QA"
"""Environment variable with the path of the FAQ JSONL file (overrides the default path)."""

FAQ_RELATIVE_PATH = Path("lm_raw", "pydocs", "faq_qa.jsonl")
"""Where the FAQ pairs live under the data directory (``$KINETICS_DATA_DIR``, else ``data``)."""

MATH_DATASET = "EleutherAI/hendrycks_math"
"""Hendrycks et al.'s MATH on the hub (Parquet, one config per subject; lm-eval's own copy)."""

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
"""The seven configs of :data:`MATH_DATASET`; their test splits together are the 5,000 problems."""


# ----------------------------------------------------------------------------- prompt


def doc_to_text(doc: dict[str, Any]) -> str:
    """The context: ``"Question: <question>\\nAnswer:"``."""
    return f"Question: {doc['question'].strip()}\nAnswer:"


def doc_to_target(doc: dict[str, Any]) -> str:
    """The scored continuation: the answer after :data:`ANSWER_DELIMITER`."""
    return ANSWER_DELIMITER + doc["answer"].strip()


# ----------------------------------------------------------------------------- metrics


def process_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    """Per-document values of the three metrics from the one loglikelihood result of ``doc``."""
    (scored,) = results
    loglikelihood = float(scored[0])
    n_tokens = getattr(scored, "n_tokens", None)
    return {
        "answer_ppl_token": (loglikelihood, n_tokens),
        "answer_ppl_doc": loglikelihood,
        "answer_tokens": n_tokens,
    }


def token_perplexity(items: Iterable[tuple[float, int | None]]) -> float:
    """``exp(-sum loglik / sum n_tokens)``; NaN (with a warning) when the counts are missing."""
    pairs = list(items)
    if any(n is None for _, n in pairs):
        warnings.warn(
            "answer_ppl_token needs the answer token counts that experiments.lm.evaluation's "
            "TokenCountingHFLM attaches to each result; this model wrapper gives none, so the "
            "metric is NaN (answer_ppl_doc is still valid)",
            stacklevel=2,
        )
        return math.nan
    total_tokens = sum(n for _, n in pairs)
    return _exp(-sum(ll for ll, _ in pairs) / total_tokens)


def doc_perplexity(items: Iterable[float]) -> float:
    """``exp(-mean loglik)`` over documents (lm-eval's ``perplexity`` aggregation); infinite when
    that overflows a float (answers of hundreds of tokens at a few nats each)."""
    values = list(items)
    return _exp(-sum(values) / len(values))


def _exp(x: float) -> float:
    """``math.exp`` that gives inf instead of raising OverflowError."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def total(items: Iterable[int | None]) -> float | int:
    """The sum of the counts (NaN when any is missing)."""
    values = list(items)
    return math.nan if any(v is None for v in values) else sum(values)


# ----------------------------------------------------------------------------- data


def _question_answer(question_key: str, answer_key: str) -> Any:
    """A ``Dataset.map`` function that writes ``question`` / ``answer`` from two other columns."""

    def rename(doc: dict[str, Any]) -> dict[str, str]:
        return {"question": doc[question_key], "answer": doc[answer_key]}

    return rename


def mathqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """MathQA: ``Problem`` -> question, ``Rationale`` (without the quotes around it) -> answer."""

    def rename(doc: dict[str, Any]) -> dict[str, str]:
        rationale = doc["Rationale"].strip()
        # MathQA's source files store each rationale inside double quotes; the quotes are not
        # part of the worked solution (stripped only when both ends carry one).
        if len(rationale) >= 2 and rationale[0] == rationale[-1] == '"':
            rationale = rationale[1:-1]
        return {"question": doc["Problem"], "answer": rationale}

    return dataset.map(rename)


def ocw_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """OCW Courses: ``problem`` -> question, ``solution`` -> answer."""
    return dataset.map(_question_answer("problem", "solution"))


def load_hendrycks_math(**_: Any) -> datasets.DatasetDict:
    """MATH test (5,000 problems): the test splits of the seven subjects, solution as answer.

    A ``custom_dataset`` of lm-eval (called with the task metadata as keyword arguments, ignored).
    """
    parts = [datasets.load_dataset(MATH_DATASET, name, split="test") for name in MATH_SUBJECTS]
    test = datasets.concatenate_datasets(parts)
    return datasets.DatasetDict({"test": test.map(_question_answer("problem", "solution"))})


def faq_path(faq_qa: str | os.PathLike[str] | None = None) -> Path:
    """The FAQ JSONL file: ``faq_qa`` if given, else ``$KINETICS_FAQ_QA``, else
    ``${KINETICS_DATA_DIR:-data}/lm_raw/pydocs/faq_qa.jsonl`` (relative paths from the cwd)."""
    if faq_qa:
        return Path(faq_qa)
    if os.environ.get(FAQ_ENV):
        return Path(os.environ[FAQ_ENV])
    return Path(os.environ.get("KINETICS_DATA_DIR") or "data") / FAQ_RELATIVE_PATH


def read_faq(path: Path) -> list[dict[str, str]]:
    """The ``question`` / ``answer`` pairs of a JSONL file (one object per line, blank lines
    skipped); other fields are dropped."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the Python-FAQ question/answer file {path} does not exist: write it with the LM "
            f"data setup, or point ${FAQ_ENV} (or the task metadata key faq_qa) at a JSONL file "
            "with fields question and answer"
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        pair = {key: record.get(key) for key in ("question", "answer")}
        if not all(isinstance(v, str) and v.strip() for v in pair.values()):
            raise ValueError(f"{path}:{number}: needs non-empty string fields question and answer")
        rows.append(pair)
    if not rows:
        raise ValueError(f"{path} holds no question/answer pairs")
    return rows


def load_faq(faq_qa: str | None = None, **_: Any) -> datasets.DatasetDict:
    """The FAQ pairs as a one-split (``test``) in-memory data set: no hub, no datasets cache.

    A ``custom_dataset`` of lm-eval: it is called with the task metadata as keyword arguments, so
    ``TaskManager(metadata={"faq_qa": path})`` (``--metadata '{"faq_qa": ...}'`` on the lm_eval
    command line) chooses the file; see :func:`faq_path` for the defaults.
    """
    rows = read_faq(faq_path(faq_qa))
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
