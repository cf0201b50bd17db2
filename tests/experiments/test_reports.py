"""Tests for experiments.reports (the table helpers and every renderer) and the scripts/render.py
CLI, on run directories written here."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from helpers import render, render_cli, table_rows, write_run

from experiments.core.errors import ConfigError
from experiments.reports import common as tables
from experiments.reports.runs import collect, is_kitinet_run

REPO = Path(__file__).resolve().parents[2]
SHARED_PAPER_TABLES = Path("/work/shared/paper_tables.yaml")


# --------------------------------------------------------------------------- collector


def test_flatten_nested_config() -> None:
    flat = tables.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None})
    assert flat == {"a.b": 1, "a.c.d": (1, 2), "e": None}


def test_collect_runs_one_row_per_run(tmp_path: Path) -> None:
    write_run(tmp_path, "sweep/0", seed=0, summary={"test_loss": 1.0, "rho.hidden": 0.2})
    write_run(tmp_path, "sweep/1", seed=1, summary={"test_loss": 3.0}, activation="relu")
    (tmp_path / "sweep" / "2").mkdir()
    (tmp_path / "sweep" / "2" / "config.yaml").write_text("seed: 2\n")  # crashed: no summary
    df = tables.collect_runs(tmp_path)
    assert len(df) == 2
    assert df["seed"].tolist() == [0, 1]
    assert df["model.activation"].tolist() == ["tanh", "relu"]
    assert df["trainer.watch"].tolist() == [("hidden",), ("hidden",)]
    assert df["test_loss"].tolist() == [1.0, 3.0]
    assert df.loc[0, "rho.hidden"] == 0.2 and math.isnan(df.loc[1, "rho.hidden"])
    assert df["git_commit"].tolist() == ["abc1234", "abc1234"]
    assert "collision.coll_coef" in df.attrs["config_columns"]
    assert "test_loss" not in df.attrs["config_columns"]
    assert df["run_dir"].tolist() == [str(tmp_path / "sweep/0"), str(tmp_path / "sweep/1")]


def test_collect_runs_rejects_inconsistent_seed(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", seed=0, summary={"test_loss": 1.0})
    (run / "summary.json").write_text(json.dumps({"seed": 5, "test_loss": 1.0}))
    with pytest.raises(ValueError, match="seed"):
        tables.collect_runs(tmp_path)


def test_collect_runs_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tables.collect_runs(tmp_path / "nope")
    assert len(tables.collect_runs(tmp_path)) == 0


# --------------------------------------------------------------------------- aggregate


def _runs_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "act": ["tanh", "tanh", "tanh", "relu", "relu"],
            "coll": ["none", "none", "none", "none", "soft"],
            "loss": [1.0, 2.0, 4.0, 5.0, math.nan],
            "rho": [0.1, 0.3, None, 0.7, 0.2],
        }
    )


def test_aggregate_against_hand_computation() -> None:
    agg = tables.aggregate(_runs_frame(), ["act", "coll"], ["loss", "rho", "absent"])
    tanh = agg.loc[("tanh", "none")]
    assert tanh[("loss", "mean")] == pytest.approx(7 / 3)
    assert tanh[("loss", "std")] == pytest.approx(math.sqrt(7 / 3))  # ddof=1
    assert tanh[("loss", "n")] == 3
    assert tanh[("rho", "mean")] == pytest.approx(0.2)  # the None run does not count
    assert tanh[("rho", "std")] == pytest.approx(math.sqrt(0.02))
    assert tanh[("rho", "n")] == 2
    relu = agg.loc[("relu", "none")]
    assert relu[("loss", "mean")] == 5.0 and math.isnan(relu[("loss", "std")])
    assert relu[("loss", "n")] == 1
    soft = agg.loc[("relu", "soft")]
    assert soft[("loss", "n")] == 0 and math.isnan(soft[("loss", "mean")])
    assert (agg[("absent", "n")] == 0).all()
    assert list(agg.index.names) == ["act", "coll"]


def test_aggregate_single_key_and_errors() -> None:
    agg = tables.aggregate(_runs_frame(), ["act"], ["loss"])
    assert agg.loc[("relu",), ("loss", "n")] == 1
    assert tables.ours_cell(agg, "tanh", "loss") == "2.3 ± 1.5 (n=3)"
    with pytest.raises(KeyError, match="nope"):
        tables.aggregate(_runs_frame(), ["nope"], ["loss"])
    assert len(tables.aggregate(_runs_frame().iloc[:0], ["act"], ["loss"])) == 0


def test_cells_render_missing_never_zero() -> None:
    agg = tables.aggregate(_runs_frame(), ["act", "coll"], ["loss", "absent"])
    assert tables.ours_cell(agg, ("relu", "soft"), "loss") == "missing"  # NaN only
    assert tables.ours_cell(agg, ("sigmoid", "none"), "loss") == "missing"  # no such runs
    assert tables.ours_cell(agg, ("tanh", "none"), "absent") == "missing"  # never logged
    assert tables.ours_cell(agg, ("relu", "none"), "loss") == "5 ± — (n=1)"
    assert tables.format_ours(0.0, 0.0, 2) == "0 ± 0 (n=2)"  # a real zero stays zero
    # The mean is rounded to the std's second significant digit; rounding noise loses its sign.
    assert tables.format_ours(0.123456, 0.0123, 3) == "0.123 ± 0.012 (n=3)"
    assert tables.format_ours(1234.5, 56.0, 3) == "1234 ± 56 (n=3)"
    assert tables.format_ours(-1e-15, 14.1, 2) == "0 ± 14 (n=2)"
    assert tables.format_ours(0.5, 1e-12, 2) == "0.5 ± 1e-12 (n=2)"
    assert tables.format_ours(math.nan, math.nan, 0) == "missing"


def test_mixed_config_keys(tmp_path: Path) -> None:
    write_run(tmp_path, "a", seed=0, summary={"test_loss": 1.0})
    extra = {"lr": 0.1, "dataset": {"seed": 1}}
    write_run(tmp_path, "b", seed=1, summary={"test_loss": 1.0}, extra_config=extra)
    write_run(tmp_path, "c", seed=0, summary={"test_loss": 1.0}, activation="relu")
    df = tables.collect_runs(tmp_path)
    # seed, dataset.seed and paths.output_dir differ by design; lr does not.
    assert tables.mixed_config_keys(df, ["model.activation"]) == {("tanh",): ["lr"]}


# --------------------------------------------------------------------------- paper numbers


def test_repo_copy_of_paper_tables_is_byte_identical() -> None:
    if not SHARED_PAPER_TABLES.exists():
        pytest.skip("the shared paper_tables.yaml is not on this machine")
    assert tables.PAPER_TABLES_PATH.read_bytes() == SHARED_PAPER_TABLES.read_bytes()


def test_paper_lookup_returns_yaml_values() -> None:
    paper = tables.load_paper_tables()
    plain = yaml.safe_load(tables.PAPER_TABLES_PATH.read_text())
    cell = tables.paper_value("ko", "table1", "ResNet18+SGD", "CIFAR10", tables=paper)
    assert cell == {"mean": 95.07, "std": 0.18}
    assert cell == plain["ko"]["table1"]["rows"]["ResNet18+SGD"]["CIFAR10"]
    assert tables.format_paper(cell) == "95.07 ± 0.18"
    # Printed text is kept: 79.70 stays "79.70" although it is the float 79.7.
    top1 = tables.paper_value("ko", "table2", "ResNet50+Lamb", "T-1 ACC.(%)", tables=paper)
    assert top1 == 79.7 and tables.format_paper(top1) == "79.70" and f"{top1:.1f}" == "79.7"
    se = tables.paper_value("kitinet", "table1", "GPT2 [37]", "MMLU", tables=paper)
    assert tables.format_paper(se) == "24.9 (SE 0.35)"
    claim = "synthetic_test_loss_reductions"
    values = {"relu": 6.8, "leakyrelu": 7.5, "tanh": 4.5}
    for name, expected in values.items():
        key = f"{name}_test_loss_reduction_pct"
        assert tables.paper_value("kitinet", claim, None, key, tables=paper) == expected


def test_paper_lookup_missing_and_unknown() -> None:
    paper = tables.load_paper_tables()
    assert tables.paper_value("ko", "table1", "ResNet18+Adam", "CIFAR10", tables=paper) is None
    assert tables.paper_value("ko", "table1", "ResNet18+SGD", "SVHN", tables=paper) is None
    missing = tables.paper_value(
        "kitinet", "synthetic_test_loss_reductions", None, "sigmoid", tables=paper
    )
    assert tables.format_paper(missing) == "missing"
    with pytest.raises(KeyError):
        tables.paper_value("ko", "table9", "x", "y", tables=paper)
    with pytest.raises(KeyError):
        tables.paper_value("nope", "table1", "x", "y", tables=paper)


def test_provenance_header(tmp_path: Path) -> None:
    write_run(tmp_path, "a", seed=2, summary={"test_loss": 1.0})
    write_run(tmp_path, "b", seed=0, summary={"test_loss": 1.0})
    header = tables.provenance_header("python scripts/render.py x", tables.collect_runs(tmp_path))
    lines = header.splitlines()
    assert lines[0].startswith("> **Provenance**")
    assert lines[1].startswith("> - runs made by: ")
    assert lines[2] == "> - rendered by: `python scripts/render.py x`"
    assert lines[3].startswith("> - git commit: `")
    assert "2 run directories" in lines[4] and "seeds found: 0, 2" in lines[4]
    assert "`abc1234`" in lines[5]
    # runs made before runs recorded their environment and data digests
    assert lines[6] == "> - environments recorded by the runs: missing"
    assert lines[7] == "> - data read by the runs (sha256): missing"
    assert lines[8].startswith("> - date: 20") and lines[8].endswith("UTC")


# --------------------------------------------------------------------------- render: KO Fig. 2


def _ko_fixture(root: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    for activation in ("tanh", "relu"):
        for collision in ("none", "soft", "hard"):
            if (activation, collision) == ("relu", "hard"):
                continue  # a missing cell
            for seed in (0, 1):
                summary: dict[str, Any] = {"test_loss": 0.5, "max_cos.hidden": 0.9 - 0.1 * seed}
                if seed == 0:  # seed 1 lacks rho: the renderer computes it from the weights
                    summary["rho.hidden"] = 0.5
                if collision == "hard":
                    summary["collision_rate.hidden"] = 0.25 * (seed + 1)
                write_run(
                    root,
                    f"{activation}_{collision}_{seed}",
                    seed=seed,
                    activation=activation,
                    collision=collision,
                    summary=summary,
                    weights={"hidden": torch.randn(8, 5, generator=gen), "out": torch.randn(1, 8)},
                )


def test_render_ko_fig2_end_to_end(tmp_path: Path) -> None:
    from kinetics.metrics import rho

    _ko_fixture(tmp_path / "runs")
    out = tmp_path / "out"
    assert render("ko-fig2", tmp_path / "runs", out) == [
        out / "ko_fig2_grid.png",
        out / "README.md",
    ]
    png = (out / "ko_fig2_grid.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**")
    assert "python scripts/render.py ko-fig2 --runs" in text.splitlines()[2]
    assert "seeds found: 0, 1" in text
    assert "no numbers for this figure" in text
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    lines = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in table_lines}
    assert "0.850 ± 0.071 (n=2)" in lines[("tanh", "Adam")]  # max|cos| 0.9 and 0.8
    # rho: 0.5 from seed 0's summary, seed 1's from its weights.
    weight = torch.load(tmp_path / "runs/tanh_none_1/weights_final.pt")["hidden"]
    expected = tables.format_ours(*_mean_std([0.5, rho(weight)]), 2)
    assert expected in lines[("tanh", "Adam")]
    assert "0.38 ± 0.18 (n=2)" in lines[("tanh", "+H.C.")]  # collision rates 0.25, 0.5
    assert "n/a (no collision)" in lines[("tanh", "Adam")]
    assert lines[("relu", "+H.C.")].count("missing") == 3
    for activation in ("xtanh", "sigmoid", "softplus"):
        assert lines[(activation, "+S.C.")].count("missing") >= 2


def test_render_ko_fig4_uses_the_fig4_rows_and_claim(tmp_path: Path) -> None:
    _ko_fixture(tmp_path / "runs")
    out = tmp_path / "out"
    assert render("ko-fig4", tmp_path / "runs", out) == [
        out / "ko_fig4_grid.png",
        out / "README.md",
    ]
    assert (out / "ko_fig4_grid.png").read_bytes().startswith(b"\x89PNG")
    text = (out / "README.md").read_text()
    assert "# KO Fig. 4" in text and "slow down the original condensation" in text
    assert "![KO Fig. 4 grid](ko_fig4_grid.png)" in text
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    # Fig. 4's two activations first; activations found in the runs beyond them follow
    assert rows[1:7:3] == ["tanh", "xtanh"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    series = pd.Series(values)
    return float(series.mean()), float(series.std(ddof=1))


# --------------------------------------------------------------------------- render: KITINet FC


def _kitinet_fixture(root: Path) -> None:
    losses = {  # (activation, variant): test loss per seed
        ("relu", "none"): [1.0, 2.0],
        ("relu", "kitinet"): [0.9, 1.9],  # -10 % and -5 %
        ("LeakyReLU", "none"): [1.0],
        ("sigmoid", "none"): [2.0, 2.0],
        ("sigmoid", "kitinet"): [2.2, 1.8],
        ("tanh", "none"): [4.0],
        ("tanh", "kitinet"): [3.0, 3.0],  # only seed 0 is paired
    }
    for (activation, collision), values in losses.items():
        for seed, loss in enumerate(values):
            summary = {"test_loss": loss, "train_loss": loss / 10}
            if collision == "kitinet":  # as the runner does: collision=kitinet builds KITINet
                summary["collision_rate.kitinet"] = 0.1
            write_run(
                root,
                f"{activation}_{collision}_{seed}",
                seed=seed,
                activation=activation,
                collision=collision,
                model="fc",
                summary=summary,
            )


def test_render_kitinet_fc_end_to_end(tmp_path: Path) -> None:
    _kitinet_fixture(tmp_path / "runs")
    out = tmp_path / "out"
    render("kitinet-fc", tmp_path / "runs", out)
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**")
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.split("## Final test loss")[1].split("##")[0].splitlines()
        if line.startswith("|")
    ]
    by_activation = {row[0]: row for row in rows[2:]}
    assert list(by_activation) == ["relu", "leaky_relu", "sigmoid", "tanh"]
    assert by_activation["relu"][1:] == [
        "1.50 ± 0.71 (n=2)",
        "1.40 ± 0.71 (n=2)",
        "-7.5 ± 3.5 (n=2)",
        "-6.8",
    ]
    assert by_activation["leaky_relu"][2:] == ["missing", "missing", "-7.5"]
    assert by_activation["sigmoid"][3:] == ["0 ± 14 (n=2)", "— (no number in the paper)"]
    assert by_activation["tanh"][3:] == ["-25 ± — (n=1)", "-4.5"]
    assert "| relu         | 0.150 ± 0.071 (n=2)" in text  # train loss
    assert "0.1 ± 0 (n=2)" in text  # collision rate of the KITINet runs
    assert "0 ±" not in text.split("## Final test loss")[0]


def test_is_kitinet_run_rules() -> None:
    run = pd.Series
    assert is_kitinet_run(run({"collision.name": "kitinet", "model.name": "fc"}))
    # The vanilla network of the experiment shares the model name: only the collision group counts.
    assert not is_kitinet_run(run({"collision.name": "none", "model.name": "kitinet_fc"}))
    assert not is_kitinet_run(run({"collision.name": "soft", "model.name": "kitinet_fc"}))
    assert not is_kitinet_run(run({"model.name": "kitinet_fc"}))


def test_cli_subprocess(tmp_path: Path) -> None:
    _kitinet_fixture(tmp_path / "runs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    script = str(REPO / "scripts" / "render.py")
    args = ["kitinet-fc", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "README.md")
    assert (tmp_path / "out" / "README.md").read_text().startswith("> **Provenance**")


def test_renderer_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="registered reports: kitinet-fc"):
        render("table9", tmp_path, tmp_path / "o3")
    (tmp_path / "file").write_text("")
    code, _, err = render_cli("ko-fig2", "--runs", str(tmp_path / "file"), "--out", "o4")
    assert code == 2 and "is not a directory" in err and not (tmp_path / "o4").exists()


# --------------------------------------------------------------------------- render: no runs


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_collect_without_runs_is_an_empty_frame_not_an_exit(tmp_path: Path) -> None:
    """Library code never ends the process: no runs is an empty frame (cells "missing")."""
    (tmp_path / "empty").mkdir()
    for runs in (tmp_path / "empty", tmp_path / "absent"):
        df = collect(runs)
        assert len(df) == 0 and {"seed", "run_dir"} <= set(df.columns)
        assert df.attrs["root"] == str(runs)


def test_every_report_without_runs_keeps_a_committed_result(tmp_path: Path) -> None:
    """For every registered report, with no runs: into an empty out dir an all-"missing" result
    (no traceback, one stderr line); into an out dir already holding a result, nothing changes."""
    import experiments.reports.all  # noqa: F401  (registers every renderer, whatever ran before)
    from experiments.core.registry import REPORTS

    absent = tmp_path / "multirun" / "absent"
    for name in REPORTS.names():
        fresh = tmp_path / "fresh" / name
        code, out, err = render_cli(name, "--runs", str(absent), "--out", str(fresh))
        assert code == 0, (name, err)
        written = [Path(line) for line in out.splitlines()]
        assert written and all(path.parent == fresh and path.is_file() for path in written), name
        for path in written:
            if path.suffix == ".md":
                assert "**none**: no run directories under" in path.read_text(), name
        [line] = err.strip().splitlines()  # one line, no traceback or warnings
        assert f"no run directories under {absent}" in line and 'all-"missing"' in line, line

        committed = tmp_path / "committed" / name
        committed.mkdir(parents=True)
        for path in written:  # a committed-looking result: the same files, other bytes
            (committed / path.name).write_bytes(b"committed numbers of " + path.name.encode())
        (committed / "NOTES.md").write_text("hand-written notes\n")
        before = _tree(committed)
        code, out, err = render_cli(name, "--runs", str(absent), "--out", str(committed))
        assert code == 0 and out == "", (name, out, err)
        assert _tree(committed) == before, name
        assert f"kept the result already in {committed}/ unchanged" in err, err
        assert sorted(p.name for p in committed.parent.iterdir()) == sorted(
            p.name for p in (tmp_path / "committed").iterdir()
        )  # no staging directory left behind
    assert sorted(p.name for p in (tmp_path / "committed").iterdir()) == REPORTS.names()


def test_render_only_on_a_fresh_clone_keeps_results_mini_pde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make RENDER_ONLY=1 mini-pde` without multirun/: the committed results/mini_pde/ stays."""
    shutil.copytree(REPO / "results" / "mini_pde", tmp_path / "results" / "mini_pde")
    before = _tree(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    args = ["mini-pde", "--runs", "multirun/mini_pde", "--out", "results/mini_pde"]
    code, out, err = render_cli(*args)
    assert code == 0 and out == ""
    assert _tree(tmp_path / "results") == before
    assert not (tmp_path / "multirun").exists()
    [line] = err.strip().splitlines()
    assert "no run directories under multirun/mini_pde" in line
    assert "kept the result already in results/mini_pde/" in line
    assert "`make mini-pde` (without RENDER_ONLY=1)" in line


def test_some_runs_replace_a_committed_result(tmp_path: Path) -> None:
    """With runs, re-rendering overwrites (that is its point), and says nothing on stderr."""
    _kitinet_fixture(tmp_path / "runs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("old numbers\n")
    code, stdout, err = render_cli(
        "kitinet-fc", "--runs", str(tmp_path / "runs"), "--out", str(out)
    )
    assert code == 0 and stdout.strip() == str(out / "README.md") and err == ""
    assert "relu" in (out / "README.md").read_text()


def _makefile_renders() -> dict[str, list[list[str]]]:
    """``{target: [render.py arguments, ...]}`` of every Makefile recipe line running render.py."""
    renders: dict[str, list[list[str]]] = {}
    target = None
    for line in (REPO / "Makefile").read_text().splitlines():
        if rule := re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line):
            target = rule.group(1)
        elif line.startswith("\t") and "scripts/render.py " in line:
            assert target is not None, line
            renders.setdefault(target, []).append(line.split("scripts/render.py ")[1].split())
    return renders


def test_makefile_render_lines_render_missing_without_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Make target's render lines, as `make RENDER_ONLY=1 <target>` runs them on a fresh
    clone (no multirun/, no results): registered names, exit 0, all-"missing" files, and the
    stderr line names the target that makes the runs."""
    from experiments.core.registry import REPORTS

    renders = _makefile_renders()
    assert {"mini-pde", "table-ko-1", "table-ko-2", "figure-ko-fig4", "table-ko-45"} <= set(renders)
    for target, lines in renders.items():
        clone = tmp_path / target
        clone.mkdir()
        monkeypatch.chdir(clone)
        for args in lines:
            assert args[0] in REPORTS, (target, args)
            code, out, err = render_cli(*args)
            assert code == 0, (target, args, err)
            assert out.split() and all((clone / p).is_file() for p in out.split()), (target, out)
            [line] = err.strip().splitlines()
            assert f"`make {target}` (without RENDER_ONLY=1)" in line, line
        for path in (clone / "results").rglob("*.md"):
            assert "**none**: no run directories under" in path.read_text(), path


def test_reports_register_every_cli_name_and_import_no_domain() -> None:
    """REPORTS holds the Makefile's renderer names; experiments/reports imports no domain module
    (it reads run directories only: no model is rebuilt)."""
    import ast

    import experiments.reports.all  # noqa: F401
    from experiments.core.registry import REPORTS

    makefile = (REPO / "Makefile").read_text()
    used = {
        line.split("render.py ")[1].split()[0]
        for line in makefile.splitlines()
        if "render.py " in line
    }
    assert used <= set(REPORTS.names())
    assert "sweep" in REPORTS
    domains = (
        "experiments.vision",
        "experiments.pde",
        "experiments.synthetic",
        "experiments.domains",
    )
    for path in sorted((REPO / "experiments" / "reports").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.startswith(domains)], (path.name, names)


def test_render_sweep_groups_by_the_swept_keys(tmp_path: Path) -> None:
    _kitinet_fixture(tmp_path / "runs")
    out = tmp_path / "out"
    render("sweep", tmp_path / "runs", out)
    text = (out / "README.md").read_text()
    assert "# Sweep over `collision.name`, `model.activation`" in text
    # relu + kitinet: test losses 0.9 and 1.9 -> mean 1.4, std 0.71 over 2 seeds
    row = next(
        line for line in text.splitlines() if line.startswith("| kitinet") and "relu" in line
    )
    assert "1.40 ± 0.71 (n=2)" in row
    # a rate only KITINet runs logged: "missing" for vanilla rows, never 0
    vanilla = next(
        line for line in text.splitlines() if line.startswith("| none") and "relu" in line
    )
    assert vanilla.rstrip(" |").endswith("missing")


def test_render_sweep_gives_keys_a_group_switch_brings_no_column(tmp_path: Path) -> None:
    # collision=kitinet brings dt and another coll_coef with it: they follow from collision.name
    for seed in (0, 1):
        for name, extra in (("none", {}), ("kitinet", {"dt": 1.0, "coll_coef": 0.5})):
            run = write_run(
                tmp_path / "runs",
                f"{name}_{seed}",
                seed=seed,
                collision=name,
                summary={
                    "test_loss": 1.0 + seed,
                    "overrides": [f"collision={name}", f"seed={seed}"],
                },
                extra_config={"collision": {"name": name, "coll_coef": 0.1, **extra}},
            )
            assert run.is_dir()
    render("sweep", tmp_path / "runs", tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()
    assert "# Sweep over `collision.name`\n" in text
    header = next(line for line in text.splitlines() if line.startswith("| collision.name"))
    assert "dt" not in header and "coll_coef" not in header


# --------------------------------------------------------------------------- render: CIFAR tables


def _cifar_run(
    root: Path,
    name: str,
    *,
    seed: int,
    model: dict[str, Any],
    collision: dict[str, Any],
    dataset: str,
    summary: dict[str, Any],
) -> Path:
    """A vision run directory: the model/collision/dataset sections as the runner writes them."""
    config = {"model": model, "collision": collision, "dataset": {"name": dataset}}
    return write_run(root, name, seed=seed, summary=summary, extra_config=config)


def test_render_ko_table1_end_to_end(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    resnet18 = {"name": "cifar_resnet18", "base_width": 64}
    cells = [  # (collision, dataset, seed, test_top1 as the runner logs it: a fraction, rate)
        ("none", "cifar10", 0, 0.95, None),
        ("none", "cifar10", 1, 0.96, None),
        ("soft", "cifar10", 0, 0.9612, None),
        ("hard", "cifar100", 0, 0.70, 0.2),
        ("hard", "cifar100", 1, 0.72, 0.4),
    ]
    for collision, dataset, seed, top1, rate in cells:
        summary: dict[str, Any] = {"test_top1": top1, "collision_rate.fc": rate}
        coll = {"name": collision, "coll_coef": 0.5}
        name = f"{collision}_{dataset}_{seed}"
        _cifar_run(
            runs, name, seed=seed, model=resnet18, collision=coll, dataset=dataset, summary=summary
        )
    out = tmp_path / "out"
    render("ko-table1", runs, out)
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**")
    acc = table_rows(text, "Test accuracy (%)")
    # Every row of the paper's table, ours "missing" where no run exists (never 0).
    assert list(acc) == [f"ResNet{d}+{v}" for d in (18, 34, 50) for v in ("SGD", "S.C.", "H.C.")]
    assert acc["ResNet18+SGD"] == ["95.50 ± 0.71 (n=2)", "95.07 ± 0.18", "missing", "78.69 ± 0.38"]
    assert acc["ResNet18+S.C."][:2] == ["96.12 ± — (n=1)", "95.74 ± 0.05"]
    assert acc["ResNet18+H.C."] == ["missing", "95.58 ± 0.07", "71.0 ± 1.4 (n=2)", "78.83 ± 0.09"]
    assert acc["ResNet50+H.C."] == ["missing", "95.57 ± 0.05", "missing", "78.98 ± 0.18"]
    rates = table_rows(text, "Collision rate")
    assert rates["ResNet18+H.C."] == ["missing", "0.30 ± 0.14 (n=2)"]
    assert rates["ResNet18+SGD"][0] == "n/a (no collision)"
    assert rates["ResNet18+S.C."][0] == "n/a (soft collision selects no pairs)"
    assert "Warning" not in text


def test_render_kitinet_table3_end_to_end(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    resnet34 = {"name": "cifar_resnet34", "base_width": 8, "kitinet_stages": [4]}
    resnet50 = {"name": "cifar_resnet50", "base_width": 8, "kitinet_stages": [4]}
    vanilla = {"name": "none", "coll_coef": 0.0}
    kitinet = {
        "name": "kitinet",
        "coll_coef": 0.9,
        "collision_heads": 8,
        "dt": 1.0,
        "position_update": True,
        "mean_free_path": 1.0,
    }
    # The cost keys the runner writes into summary.json (counted when the run starts; the
    # renderer builds no model). The cells come from the first run of a row: CIFAR10, seed 0.
    costs = {
        "cifar10": {"num_params": 1000, "mflops": 36.61952, "mmacs_imagenet_stem": 1.432192},
        "cifar100": {"num_params": 1090, "mflops": 36.63104, "mmacs_imagenet_stem": 1.437952},
    }
    for seed, top1 in enumerate([0.90, 0.92]):
        for dataset in ("cifar10", "cifar100"):
            summary = {"test_top1": top1 - (0.2 if dataset == "cifar100" else 0.0)}
            _cifar_run(
                runs, f"v_{dataset}_{seed}", seed=seed, model=resnet34, collision=vanilla,
                dataset=dataset, summary={**summary, **costs[dataset]},
            )  # fmt: skip
    kiti_rates = {
        "collision_rate.layer4.0.residual": 0.1,
        "collision_rate.layer4.1.residual": 0.3,
        "collision_rate.layer4.2.residual": None,  # a site that logged nothing does not count
    }
    _cifar_run(
        runs, "k_cifar10_0", seed=0, model=resnet34, collision=kitinet, dataset="cifar10",
        summary={"test_top1": 0.93, **kiti_rates, **costs["cifar10"], "mflops_train": 38.5856},
    )  # fmt: skip
    # ResNet-50: a vanilla run from before the runner wrote cost keys, a KITI run without the
    # train-mode count: their cells say "missing", never 0.
    _cifar_run(
        runs, "v50_cifar10_0", seed=0, model=resnet50, collision=vanilla, dataset="cifar10",
        summary={"test_top1": 0.91},
    )  # fmt: skip
    _cifar_run(
        runs, "k50_cifar10_0", seed=0, model=resnet50, collision=kitinet, dataset="cifar10",
        summary={"test_top1": 0.92, "mflops": 40.948736, "mmacs_imagenet_stem": 1.56928},
    )  # fmt: skip
    out = tmp_path / "out"
    render("kitinet-table3", runs, out)
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**")
    acc = table_rows(text, "Test accuracy (%) and cost")
    expected_rows = [
        f"{prefix}ResNet-{d}{suffix}"
        for d in (34, 50, 101, 152)
        for prefix, suffix in (("", " [15]"), ("Dit-", " [24]"), ("KITI-", ""))
    ]
    assert list(acc) == expected_rows
    assert acc["ResNet-34 [15]"] == [
        "91.0 ± 1.4 (n=2)",
        "94.48",
        "71.0 ± 1.4 (n=2)",
        "77.97 ± 0.12",
        "73.5",
        "1.432",  # ImageNet-stem MMACs to 4 digits, our FLOPs to 5
        "36.62",
    ]
    kiti = acc["KITI-ResNet-34"]
    assert kiti == ["93 ± — (n=1)", "95.04", "missing", "78.67 ± 0.10", "73.6", "1.432", "36.62 (train: 38.586)"]  # fmt: skip
    assert acc["ResNet-50 [15]"][5:] == ["missing", "missing"]
    assert acc["KITI-ResNet-50"][5:] == ["1.569", "40.949"]
    assert acc["Dit-ResNet-34 [24]"] == [
        "not built", "94.45", "not built", "78.14 ± 0.07", "73.5", "not built", "not built",
    ]  # fmt: skip
    assert (
        acc["KITI-ResNet-152"]
        == ["missing", "95.67", "missing", "79.48 ± 0.03", "236.8"] + ["missing"] * 2
    )
    rates = table_rows(text, "Collision rate")
    assert rates["KITI-ResNet-34"] == ["0.2 ± — (n=1)", "missing"]
    assert rates["ResNet-34 [15]"] == ["n/a (no collision)", "n/a (no collision)"]
    assert "ImageNet stem" in text and "Warning" not in text


def _write_history(run: Path, times: list[float], peaks: list[float], top1: list[float]) -> None:
    records = [{"epoch": 0, "epoch_time": None, "peak_memory_mb": None, "test_top1": 0.1}]
    for epoch, (t, p, a) in enumerate(zip(times, peaks, top1, strict=True), start=1):
        record = {"epoch": epoch, "epoch_time": t, "peak_memory_mb": p, "test_top1": a}
        record["max_cos.fc"] = 0.5 + 0.1 * epoch
        records.append(record)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_render_ko_table45_and_fig3_from_the_table1_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    resnet18 = {"name": "cifar_resnet18", "base_width": 64}
    cells = [  # (collision, dataset, seed, epoch times, peak MBs)
        ("none", "cifar10", 0, [10.0, 10.0], [900.0, 1000.0]),
        ("none", "cifar10", 1, [11.0, 9.0], [1000.0, 1000.0]),
        ("hard", "cifar10", 0, [12.0, 13.0], [1010.0, 1005.0]),
        ("soft", "cifar100", 0, [5.0, 5.0], [800.0, 800.0]),
    ]
    for collision, dataset, seed, times, peaks in cells:
        coll = {"name": collision, "coll_coef": 0.5}
        run = _cifar_run(
            runs,
            f"{collision}_{dataset}_{seed}",
            seed=seed,
            model=resnet18,
            collision=coll,
            dataset=dataset,
            summary={"test_top1": 0.9},
        )
        _write_history(run, times, peaks, [0.5, 0.9])
    out = tmp_path / "out"
    render("ko-table45", runs, out)
    text = (out / "README.md").read_text()
    t4 = table_rows(text, "KO Table 4: CIFAR10")
    assert list(t4)[:3] == ["Vanilla Resnet18", "Resnet18+S.C.", "Resnet18+H.C."]
    # time = sum of epoch times (20, 20 -> 20 ± 0); memory = max over epochs (1000, 1000)
    assert t4["Vanilla Resnet18"] == [
        "20 ± 0 (n=2)",
        "x1.000",
        "5523",
        "x1.000",
        "1000 ± 0 (n=2)",
        "2120",
    ]
    assert t4["Resnet18+H.C."][:2] == ["25 ± — (n=1)", "x1.250"]
    assert t4["Resnet18+H.C."][3] == f"x{8784 / 5523:.3f}"  # the paper's ratio
    assert t4["Resnet18+S.C."][:2] == ["missing", "missing"]
    t5 = table_rows(text, "KO Table 5: CIFAR100")
    assert t5["Resnet18+S.C"][0] == "10 ± — (n=1)"
    assert t5["Resnet18+S.C"][1] == "missing"  # no vanilla run to compare with
    assert t5["Resnet50+S.C"][5] == "5176"

    render("ko-fig3", runs, out)
    assert (out / "ko_fig3.png").stat().st_size > 10_000
    assert "max_cos.fc" in (out / "FIG3.md").read_text()


def test_render_kitinet_table7_resnet_conv_rho(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    model = {"name": "cifar_resnet18", "base_width": 64}
    for seed, (base, kiti) in enumerate([(0.20, 0.24), (0.22, 0.26)]):
        for collision, conv1 in (("none", base), ("kitinet", kiti)):
            summary = {"rho.conv1": conv1, "rho.layer1.0.conv1": 0.1}
            if collision == "kitinet":
                summary["rho.layer4.1.conv2"] = 0.3  # a layer only KITI runs logged
            _cifar_run(
                runs,
                f"{collision}_{seed}",
                seed=seed,
                model=model,
                collision={"name": collision},
                dataset="cifar100",
                summary=summary,
            )
    out = tmp_path / "out"
    render("kitinet-table7-resnet", runs, out)
    text = (out / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
        for line in text.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    assert list(rows)[1] == "conv1"  # conv1 first, then the others by name
    assert rows["conv1"] == [
        "0.210 ± 0.014 (n=2)",
        "0.250 ± 0.014 (n=2)",
        "+19.0 %",
        "0.235",
        "0.248",
    ]
    assert rows["layer1.0.conv1"][2:] == ["+0.0 %", "not reported", "not reported"]
    assert rows["layer4.1.conv2"][0] == "missing"
