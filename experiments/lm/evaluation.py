"""Evaluate exported language models with lm-evaluation-harness (KITINet Tables 1-2, KO Table 6).

A checkpoint is a directory written by transformers' ``save_pretrained`` (model and tokenizer in
the same directory; KITINet adds nothing to it, being parameter-free and the identity in eval).
:func:`evaluate_checkpoint` loads it with lm-eval's ``HFLM`` and runs ``lm_eval.simple_evaluate``
(lm_eval pinned to 0.4.13 in requirements.lock) on task names or the suites below.

Benchmarks (the papers say neither the number of shots nor acc vs acc_norm): every task runs
zero-shot, and both ``acc`` and ``acc_norm`` are reported with lm-eval's standard errors wherever
the task defines them (MMLU defines ``acc`` only; its score is lm-eval's ``mmlu`` group score,
the mean over the 57 subjects weighted by their sizes).

KITINet Table 2 (perplexity of the correct answers of math benchmarks given their questions):
our loglikelihood tasks in ``lm_eval_tasks/`` (lm-eval has no OCW task and no answer-perplexity
task), each scoring ``" " + answer`` after ``"Question: <question>\\nAnswer:"``:

- ``kinetics_gsm8k_answer_ppl``: ``openai/gsm8k`` (main), the 1,319 test problems, answer = the
  reference solution as stored;
- ``kinetics_math_answer_ppl``: ``EleutherAI/hendrycks_math`` (the copy lm-eval itself uses),
  the 5,000 test problems of the seven subjects, answer = ``solution``;
- ``kinetics_mathqa_answer_ppl``: ``regisss/math_qa`` (lm-eval's Parquet copy of
  ``allenai/math_qa``), 2,985 test problems, question = ``Problem``, answer = ``Rationale``;
- ``kinetics_ocw_answer_ppl``: Minerva's 272 OCW Courses problems, from the JSONL file of the
  Qwen2.5-Math evaluation suite pinned to a commit (the hub copy ``zhangirazerbayev/ocwcourses``
  is a loading script, which datasets >= 4 refuses), answer = ``solution``;
- ``kinetics_faq_answer_ppl`` (CPU stand-in): the Python FAQ question/answer pairs of a local
  JSONL file (fields ``question``, ``answer``; path: metadata ``faq_qa``, else
  ``$KINETICS_FAQ_QA``, else ``${KINETICS_DATA_DIR:-data}/lm_raw/pydocs/faq_qa.jsonl``).

The tables use ``answer_ppl_token`` = ``exp(-sum log p(answer tokens) / number of answer
tokens)``, pooled over the task's answers. lm-eval's ``perplexity`` for loglikelihood tasks is
``exp(-mean over documents of log p(answer))``, a per-answer number, reported here for reference
as ``answer_ppl_doc``. lm-eval gives a task no token counts, so the model wrapper
(``TokenCountingHFLM``) attaches to each loglikelihood result the number of continuation tokens it
scored (the tokens of ``context + continuation`` after those of ``context``, as HFLM splits them);
the task's ``process_results`` reads it (``lm_eval_tasks/utils.py``). An answer longer than the
model's context is scored in pieces of half the context, each conditioned on the tokens before it
(lm-eval itself would stop on an assertion).

Offline: every task's data is loaded before the model, so a hub task whose data is not in the
datasets cache fails at once with a :class:`~experiments.core.errors.MissingDataError` naming the
task and what to change (HF_DATASETS_OFFLINE=0 / HF_HUB_OFFLINE=0 and network access).
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from experiments.core.errors import ConfigError, MissingDataError

__all__ = [
    "KO_TABLE6_TASKS",
    "MINI_TASKS",
    "PAPER_COLUMNS",
    "SUITES",
    "TABLE1_TASKS",
    "TABLE2_METRIC",
    "TABLE2_TASKS",
    "TASKS_DIR",
    "ScoredContinuation",
    "evaluate_checkpoint",
    "resolve_tasks",
    "token_counting_hflm",
]

TASKS_DIR = Path(__file__).resolve().parent / "lm_eval_tasks"
"""Our lm-eval YAML tasks (always on the TaskManager's include path)."""

TABLE1_TASKS = (
    "mmlu",
    "arc_challenge",
    "arc_easy",
    "hellaswag",
    "winogrande",
    "piqa",
    "openbookqa",
)
"""lm-eval 0.4.13 names of the accuracy benchmarks of KITINet Table 1 (MMLU, ARC-C/E, HellaSwag,
WinoGrande) plus PIQA and OpenBookQA, so that one run also covers KO Table 6."""

KO_TABLE6_TASKS = ("piqa", "arc_challenge", "arc_easy", "hellaswag", "winogrande", "openbookqa")
"""KO Table 6: PIQA, ARC-C, ARC-E, HellaSwag, WinoGrande, OBQA (SPEC §3)."""

TABLE2_TASKS = (
    "kinetics_gsm8k_answer_ppl",
    "kinetics_math_answer_ppl",
    "kinetics_mathqa_answer_ppl",
    "kinetics_ocw_answer_ppl",
)
"""KITINet Table 2: answer perplexity on GSM8K, MATH, MathQA and OCW (our YAML tasks)."""

MINI_TASKS = ("kinetics_faq_answer_ppl",)
"""The CPU stand-in for Table 2: answer perplexity of the Python FAQ pairs (local file)."""

SUITES: dict[str, tuple[str, ...]] = {
    "table1": TABLE1_TASKS,
    "table2": TABLE2_TASKS,
    "ko_table6": KO_TABLE6_TASKS,
    "mini": MINI_TASKS,
}
"""Suite names accepted wherever task names are (``--tasks table1``)."""

PAPER_COLUMNS: dict[str, dict[str, str]] = {
    "kitinet_table1": {
        "MMLU": "mmlu",
        "ARC_C": "arc_challenge",
        "ARC_E": "arc_easy",
        "HellaSwag": "hellaswag",
        "WinoGrande": "winogrande",
    },
    "kitinet_table2": dict(zip(("GSM8K", "MATH", "MATHQA", "OCW"), TABLE2_TASKS, strict=True)),
    "ko_table6": {
        "PIQA": "piqa",
        "ARC_C": "arc_challenge",
        "ARC_E": "arc_easy",
        "HellaSwag": "hellaswag",
        "WinoGrande": "winogrande",
        "OBQA": "openbookqa",
    },
}
"""Column of ``paper_tables.yaml`` -> task name in the results, per table."""

TABLE2_METRIC = "answer_ppl_token"
"""The metric of the Table 2 tasks that the table reports (per-token answer perplexity)."""

SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234}
"""Seeds passed to ``simple_evaluate`` (its defaults, written out; the few-shot seed is below)."""

FEWSHOT_SEED = 1234

_OFFLINE_HINT = (
    "it needs the Hugging Face hub (or a URL) and is not in the local datasets cache; "
    "run with HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0 on a machine with network access "
    "(once is enough: later runs read the cache)"
)


class ScoredContinuation(tuple):
    """``(loglikelihood, is_greedy)`` as lm-eval expects, plus ``n_tokens``: the number of
    continuation tokens scored. A tuple, so every lm-eval task unpacks it as before."""

    n_tokens: int

    def __new__(cls, loglikelihood: float, is_greedy: bool, n_tokens: int) -> ScoredContinuation:
        scored = super().__new__(cls, (loglikelihood, is_greedy))
        scored.n_tokens = n_tokens
        return scored

    def __getnewargs__(self) -> tuple[float, bool, int]:  # type: ignore[override]
        # pickle (lm-eval's request cache, gathering across ranks) rebuilds through __new__
        return (self[0], self[1], self.n_tokens)


# ----------------------------------------------------------------------------- tasks


def resolve_tasks(names: Sequence[str]) -> list[str]:
    """Task names with suite names (:data:`SUITES`) expanded, first occurrence kept."""
    if isinstance(names, str):
        names = [names]
    resolved: list[str] = []
    for name in names:
        for task in SUITES.get(name, (name,)):
            if task not in resolved:
                resolved.append(task)
    if not resolved:
        raise ConfigError("no tasks given: name lm-eval tasks or one of " + ", ".join(SUITES))
    return resolved


def _include_paths(include_path: str | os.PathLike[str] | Sequence[Any] | None) -> list[str]:
    """Our task directory first, then the caller's (lm-eval lets later paths override)."""
    if include_path is None:
        extra: list[Any] = []
    elif isinstance(include_path, str | os.PathLike):
        extra = [include_path]
    else:
        extra = list(include_path)
    return [str(TASKS_DIR), *(str(Path(p)) for p in extra)]


def _task_manager(
    names: Sequence[str], include_path: Any, metadata: Mapping[str, Any] | None
) -> Any:
    """A TaskManager that knows every name. Indexing lm-eval's ~15,000 built-in tasks takes
    ~9 s, so the built-ins are indexed only when a name is not among the included tasks."""
    from lm_eval.tasks import TaskManager

    paths = _include_paths(include_path)
    meta = dict(metadata or {})
    manager = TaskManager(include_path=paths, include_defaults=False, metadata=meta)
    if not set(names) <= set(manager.all_tasks):
        manager = TaskManager(include_path=paths, include_defaults=True, metadata=meta)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        raise ConfigError(
            "unknown lm-eval task: "
            + "; ".join(_suggest(name, manager.all_tasks) for name in unknown)
            + f" (suites: {', '.join(SUITES)})"
        )
    return manager


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")


def _load_task(manager: Any, name: str) -> tuple[list[Any], Any]:
    """(the Task objects, the Group object or None) of one name, its data loaded now.

    Loading a task downloads its data set; a failure is re-raised as one clear error that names
    the task, before any model is loaded."""
    try:
        loaded = manager.load([name])
    except Exception as error:
        raise MissingDataError(_load_failure(name, error)) from error
    return list(loaded["tasks"].values()), loaded.get("groups", {}).get(name)


def _load_failure(name: str, error: Exception) -> str:
    """One line on why the data of task ``name`` could not be loaded."""
    detail = " ".join(f"{type(error).__name__}: {error}".split())
    # datasets raises ConnectionError for the hub offline or unreachable, and FileNotFoundError
    # naming the URL for a remote data file; a missing local file gets no network hint.
    if isinstance(error, ConnectionError) or "OfflineMode" in detail or "://" in detail:
        return f"cannot load the data of lm-eval task {name!r}: {_OFFLINE_HINT} ({detail})"
    return f"cannot load the data of lm-eval task {name!r}: {detail}"


# ----------------------------------------------------------------------------- model


def _windows(
    context_enc: list[int], continuation_enc: list[int], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(context, piece) token pairs that score ``continuation_enc`` after ``context_enc``.

    One pair when it fits the model (HFLM left-truncates the context itself). A longer
    continuation is cut into pieces of ``max_length // 2`` tokens, each after the tokens just
    before it, as many as fit (``max_length + 1 - len(piece)``: HFLM feeds ``max_length`` tokens
    and drops the last), so every token is predicted from at least half a context of real
    tokens."""
    if len(continuation_enc) <= max_length:
        return [(context_enc, continuation_enc)]
    step = max(1, max_length // 2)
    tokens = context_enc + continuation_enc
    pairs = []
    for begin in range(len(context_enc), len(tokens), step):
        piece = tokens[begin : begin + step]
        # cut here what HFLM would cut (and warn about) anyway
        first = max(0, begin + len(piece) - (max_length + 1))
        pairs.append((tokens[first:begin], piece))
    return pairs


@cache
def token_counting_hflm() -> type:
    """The class ``TokenCountingHFLM`` (an lm-eval ``HFLM``), defined on first use: importing
    lm-eval's HF backend takes seconds and this module is also imported for its constants.

    Use it as ``HFLM``: ``token_counting_hflm()(pretrained=dir_or_model, ...)``."""
    from lm_eval.models.huggingface import HFLM

    class TokenCountingHFLM(HFLM):
        """HFLM whose loglikelihood results are :class:`ScoredContinuation` (with ``n_tokens``)
        and which scores continuations longer than the model's context in pieces."""

        def _loglikelihood_tokens(
            self,
            requests: list[tuple[tuple[str, str], list[int], list[int]]],
            disable_tqdm: bool = False,
            override_bs: int | None = None,
        ) -> list[ScoredContinuation]:
            pieces: list[tuple[Any, list[int], list[int]]] = []
            owners: list[int] = []
            for index, (key, context_enc, continuation_enc) in enumerate(requests):
                windows = (
                    _windows(context_enc, continuation_enc, self.max_length)
                    if self.backend == "causal"
                    else [(context_enc, continuation_enc)]
                )
                # a split request has no single cache key (HFLM skips caching for key None)
                piece_key = key if len(windows) == 1 else None
                pieces += [(piece_key, ctx, piece) for ctx, piece in windows]
                owners += [index] * len(windows)
            scored = super()._loglikelihood_tokens(
                pieces, disable_tqdm=disable_tqdm, override_bs=override_bs
            )
            totals: list[list[Any]] = [[0.0, True, 0] for _ in requests]
            for owner, (_, _, piece), (loglikelihood, greedy) in zip(
                owners, pieces, scored, strict=True
            ):
                total = totals[owner]
                total[0] += loglikelihood
                total[1] = total[1] and greedy
                total[2] += len(piece)
            return [ScoredContinuation(ll, bool(greedy), n) for ll, greedy, n in totals]

    return TokenCountingHFLM


def _check_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory; it must hold a transformers ``config.json``."""
    directory = Path(path)
    if not directory.is_dir():
        raise MissingDataError(f"checkpoint directory {directory} does not exist")
    if not (directory / "config.json").is_file():
        raise MissingDataError(
            f"{directory} is not a transformers checkpoint (no config.json): export the model "
            "and its tokenizer with save_pretrained into one directory"
        )
    return directory


def _load_model(
    directory: Path, *, batch_size: int, device: str, dtype: str, max_length: int | None
) -> Any:
    """``TokenCountingHFLM`` on the checkpoint (one line of error if transformers cannot)."""
    try:
        return token_counting_hflm()(
            pretrained=str(directory),  # HFLM asserts a str
            device=device,
            batch_size=batch_size,
            dtype=dtype,
            max_length=max_length,
        )
    except (OSError, ValueError, KeyError) as error:
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        raise MissingDataError(
            f"cannot load the checkpoint {directory} with transformers: {detail}"
        ) from error


# ----------------------------------------------------------------------------- results


def _metrics(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``{"acc": ..., "acc_stderr": ...}`` from lm-eval's ``{"acc,none": ...}`` (other filters
    keep their name as ``metric/filter``; stderrs lm-eval marks "N/A" are left out)."""
    metrics: dict[str, Any] = {}
    for key, value in entry.items():
        if "," not in key or value == "N/A":
            continue
        metric, filter_name = key.split(",", 1)
        name = metric if filter_name == "none" else f"{metric}/{filter_name}"
        metrics[name] = _plain(value)
    return metrics


def _plain(value: Any) -> Any:
    """Python int/float for numpy scalars too (json cannot write numpy integers)."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _summary(name: str, tasks: list[Any], group: Any, results: Mapping[str, Any]) -> dict:
    """The compact result of one requested name (a task, a group, or a tag's tasks)."""
    leaves = [task.task_name for task in tasks]
    shots = sorted({results["n-shot"].get(leaf) for leaf in leaves}, key=str)
    summary: dict[str, Any] = {
        "kind": "group" if group is not None else "task",
        **_metrics(results["results"].get(name, {})),
        "n": sum(results["n-samples"][leaf]["effective"] for leaf in leaves),
        "num_fewshot": shots[0] if len(shots) == 1 else shots,
    }
    if group is not None:
        summary["subtasks"] = len(leaves)
    else:
        summary["version"] = results["versions"].get(name)
    return summary


def _summaries(
    requested: list[tuple[str, list[Any], Any]], results: Mapping[str, Any]
) -> dict[str, dict]:
    """Per requested name; a tag (several tasks, no group score) gives one entry per task."""
    out: dict[str, dict] = {}
    for name, tasks, group in requested:
        if group is None and name not in results["results"]:
            for task in tasks:
                out[task.task_name] = _summary(task.task_name, [task], None, results)
        else:
            out[name] = _summary(name, tasks, group, results)
    return out


def _task_objects(requested: list[tuple[str, list[Any], Any]]) -> list[Any]:
    """What ``simple_evaluate`` gets: a Group object for a group (so lm-eval aggregates it),
    else the Task objects (already loaded, so their data is not loaded twice)."""
    objects: list[Any] = []
    for _, tasks, group in requested:
        objects += [group] if group is not None else tasks
    return objects


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("lm_eval", "transformers", "torch", "datasets"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover (all are pinned)
            versions[package] = "not installed"
    return versions


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    tasks: Sequence[str],
    *,
    batch_size: int,
    device: str,
    num_fewshot: int = 0,
    limit: int | float | None = None,
    include_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    dtype: str = "auto",
    metadata: Mapping[str, Any] | None = None,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Run lm-eval on a ``save_pretrained`` directory; a compact, JSON-safe summary.

    Args:
        path: directory with the model and its tokenizer (``config.json``, weights, tokenizer).
        tasks: lm-eval task, group or tag names, or suite names of :data:`SUITES`.
        batch_size: requests per forward pass.
        device: torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
        num_fewshot: shots (0 as in our tables; our answer-perplexity tasks are always 0-shot).
        limit: documents per task (per subtask for groups), for smoke runs; None: all.
        include_path: further directories of lm-eval YAML tasks (ours are always included).
        dtype: model dtype for ``from_pretrained`` (``"auto"``: the checkpoint's).
        metadata: lm-eval task metadata, passed to every task (``{"faq_qa": path}`` chooses the
            FAQ file of ``kinetics_faq_answer_ppl``).
        max_length: context length; None: the model config's.

    Returns:
        ``{"checkpoint", "tasks", "num_fewshot", "limit", "batch_size", "device", "dtype",
        "max_length", "seeds", "versions"}``; ``versions["lm_eval"]`` is lm-eval's version and
        ``tasks[name]`` holds ``kind`` ("task"/"group"), the metrics (``acc``, ``acc_stderr``,
        ``acc_norm``, ``acc_norm_stderr`` where the task has them; ``answer_ppl_token``,
        ``answer_ppl_doc``, ``answer_tokens`` for the answer-perplexity tasks), ``n`` (documents
        evaluated) and ``num_fewshot``. A group (``mmlu``) gives lm-eval's aggregate score.

    Raises:
        ConfigError: no tasks, or an unknown task name (with close matches).
        MissingDataError: no checkpoint at ``path``, or a task whose data cannot be loaded (e.g.
            a hub data set offline); raised before the model is loaded.
    """
    directory = _check_checkpoint(path)
    names = resolve_tasks(tasks)
    manager = _task_manager(names, include_path, metadata)
    requested = [(name, *_load_task(manager, name)) for name in names]

    import lm_eval

    lm = _load_model(
        directory, batch_size=batch_size, device=device, dtype=dtype, max_length=max_length
    )
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=_task_objects(requested),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=False,
        fewshot_random_seed=FEWSHOT_SEED,
        **SEEDS,
    )
    return {
        "checkpoint": str(directory),
        "tasks": _summaries(requested, results),
        "num_fewshot": num_fewshot,
        "limit": limit,
        "batch_size": batch_size,
        "device": device,
        "dtype": dtype,
        "max_length": lm.max_length,
        "seeds": {**SEEDS, "fewshot_random_seed": FEWSHOT_SEED},
        "versions": _versions(),
    }
