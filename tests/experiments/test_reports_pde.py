"""The KITINet PDE renderers (experiments.reports.pde: Tables 4, 6, 7, Fig. 2, mini-pde) on run
directories written here in the runner's layout, with cells left missing on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import render, render_cli, table_rows, write_run

SITES = [f"collision_rate.layers.{i}.residual" for i in range(4)]


def pde_run(
    root: Path,
    experiment: str,
    *,
    seed: int,
    data: str,
    mse: float,
    kiti: bool = False,
    position_update: bool = True,
    rates: list[float] | None = None,
    collision: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A PDE run: config sections as the runner resolves them, summary and a 2-epoch history."""
    name = f"{experiment}/{seed}{'_kiti' if kiti else ''}"
    name += "".join(f"_{k}{v}" for k, v in (collision or {}).items())
    coll = {
        "name": "kitinet" if kiti else "none",
        "coll_coef": 0.2,
        "collision_heads": 64,
        "position_update": position_update,
        **(collision or {}),
    }
    summary: dict[str, Any] = {
        "experiment_name": experiment,
        "test_mse": mse,
        "test_rel_l2": 10 * mse,
        "test_loss": 10 * mse,
        "train_loss": 20 * mse,
        "wall_time": 60.0,
        **(extra or {}),
    }
    if kiti:
        summary.update(dict(zip(SITES, rates or [0.0, 0.01, 0.02, 0.03], strict=True)))
    config = {
        "experiment_name": experiment,
        "model": {"name": "fno1d" if data == "burgers" else "fno2d"},
        "dataset": {"name": data},
        "collision": coll,
    }
    run = write_run(root, name, seed=seed, summary=summary, extra_config=config)
    records = [{"epoch": 0, **dict.fromkeys(SITES)}]
    if kiti:  # epoch 1: twice the final rates, epoch 2: the final rates
        records.append({"epoch": 1, **{s: 2 * summary[s] for s in SITES}})
        records.append({"epoch": 2, **{s: summary[s] for s in SITES}})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def _all_rows(text: str, heading: str) -> list[list[str]]:
    """Every row (all cells) of the markdown table under the heading line ``heading``."""
    block = text.split(f"{heading}\n")[1].split("\n#")[0]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in block.splitlines()
        if line.startswith("|")
    ]
    return rows[2:]


def _fixture(root: Path) -> None:
    for seed, (fno, kiti) in enumerate([(0.002, 0.0014), (0.004, 0.0032)]):
        pde_run(root, "kitinet_table4_burgers_fno", seed=seed, data="burgers", mse=fno)
        pde_run(root, "kitinet_table4_burgers_kiti", seed=seed, data="burgers", mse=kiti, kiti=True)
        nopos = {"mse": 2 * kiti, "kiti": True, "position_update": False}
        pde_run(root, "kitinet_table6_burgers_nopos", seed=seed, data="burgers", **nopos)
    pde_run(root, "kitinet_table4_heat_fno", seed=0, data="heat", mse=0.07)  # no KITI heat run


def test_table4_paper_beside_ours_with_missing_cells(tmp_path: Path) -> None:
    _fixture(tmp_path / "runs")
    out = tmp_path / "out"
    render("kitinet-table4", tmp_path / "runs", out)
    text = (out / "README.md").read_text()
    assert text.startswith("> **Provenance**") and "seeds found: 0, 1" in text
    errors = _all_rows(text, "## Test error")
    burgers = ["Burgers' Equ.", "FNO [23]", "MSE", "0.0030 ± 0.0014 (n=2)", "0.00217"]
    assert [*burgers, "0.030 ± 0.014 (n=2)"] in errors
    # The non-update runs (Table 6) are not averaged into the KITI-FNO row.
    kiti = ["Burgers' Equ.", "KITI-FNO", "MSE", "0.0023 ± 0.0013 (n=2)", "0.00166"]
    assert [*kiti, "0.023 ± 0.013 (n=2)"] in errors
    assert ["Heat Equation", "KITI-FNO", "MSE", "missing", "0.05113", "missing"] in errors
    assert ["Airfoil*", "OFormer [22]", "RMSE", "missing", "16.39461", "missing"] in errors
    assert len(errors) == 8
    reductions = table_rows(text, "Error reduction by KITINet")
    assert reductions["Burgers' Equ."] == ["MSE", "25.0 ± 7.1 (n=2)", "23.3", "23.50"]
    assert reductions["NS Equation"][1:] == ["missing", "missing", "5.63"]
    rates = text.split("## Collision rate per layer")[1]
    # layer 1: final rates 0.01 in both seeds; mean over epochs (0.02 + 0.01) / 2
    assert "| Burgers' Equ. / KITI-FNO | `layers.1.residual` | 0.01 ± 0 (n=2)" in rates
    assert "0.015 ± 0 (n=2)" in rates and "| 0.02 " in rates
    assert "Warning" not in text


def test_table6_uses_table4_kiti_rows_as_update(tmp_path: Path) -> None:
    _fixture(tmp_path / "runs")
    out = tmp_path / "out"
    render("kitinet-table6", tmp_path / "runs", out)
    text = (out / "README.md").read_text()
    rows = {tuple(row[:2]): row[2:] for row in _all_rows(text, "## Test MSE")}
    assert rows[("Burgers'", "non-update")][:2] == ["0.0046 ± 0.0025 (n=2)", "0.00173"]
    assert rows[("Burgers'", "update")][:2] == ["0.0023 ± 0.0013 (n=2)", "0.00166"]
    assert rows[("NS", "update")] == ["missing", "0.11346", "missing"]
    # mean over layers of the final-epoch rates (0, 0.01, 0.02, 0.03)
    assert rows[("Burgers'", "update")][2] == "0.015 ± 0 (n=2)"
    assert table_rows(text, "Direction of the effect")["Burgers'"] == ["yes", "yes"]
    assert table_rows(text, "Direction of the effect")["Heat"] == ["missing", "yes"]


def test_table7_rho_per_layer_and_direction(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for kiti, base in ((False, 0.1), (True, 0.2)):
        for seed in (0, 1):
            rho = {
                f"rho.layers.{i}.{p}": base + 0.01 * seed
                for i in range(4)
                for p in ("spectral", "skip")
            }
            rho["rho.layers.0.spectral"] = 0.5 - base  # KITINet lowers conv0
            pde_run(runs, "kitinet_table7_ns", seed=seed, data="navier_stokes", mse=0.1,
                    kiti=kiti, extra=rho)  # fmt: skip
    out = tmp_path / "out"
    render("kitinet-table7", runs, out)
    text = (out / "README.md").read_text()
    rows = table_rows(text, "ρ per layer")
    assert rows["FNO (ours)"][0] == "0.4 ± 0 (n=2)"
    assert rows["FNO (ours)"][1] == "0.1050 ± 0.0071 (n=2)"
    assert rows["FNO (paper)"][:4] == ["0.113", "0.089", "0.092", "—"]
    assert rows["KITI-FNO (paper)"][4:] == ["0.206", "0.192", "0.191", "—"]
    direction = table_rows(text, "Direction: does KITINet increase ρ?")
    assert direction["KITI-FNO > FNO (ours)"][0] == "no"
    assert direction["KITI-FNO > FNO (ours)"][-1] == "7 of 8"
    assert direction["KITI-FNO > FNO (paper)"][-1] == "5 of 6"


def _rows_by_first(text: str, heading: str) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in _all_rows(text, heading)}


def test_fig2_figure_and_tables(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for heads, mse in ((32, 0.003), (64, 0.002)):
        pde_run(runs, "kitinet_fig2a_burgers", seed=0, data="burgers", mse=mse, kiti=True,
                collision={"collision_heads": heads})  # fmt: skip
    pde_run(runs, "kitinet_table4_burgers_fno", seed=0, data="burgers", mse=0.0025)
    pde_run(runs, "kitinet_fig2b_heat", seed=0, data="heat", mse=0.05, kiti=True,
            collision={"coll_coef": 0.3})  # fmt: skip
    out = tmp_path / "out"
    render("kitinet-fig2", runs, out)
    assert (out / "kitinet_fig2.png").stat().st_size > 10_000
    text = (out / "README.md").read_text()
    burgers = _rows_by_first(text, "### Fig. 2(a): collision_heads on Burgers")
    assert burgers["32"][0] == "0.003 ± — (n=1)" and burgers["64"][0] == "0.002 ± — (n=1)"
    assert burgers["1024"] == ["missing"] * 4
    assert "test MSE 0.0025 ± — (n=1)" in text
    heat = _rows_by_first(text, "### Fig. 2(b): coll_coef on Heat")
    assert heat["0.3"][0] == "0.05 ± — (n=1)" and heat["0.9"][0] == "missing"
    assert _rows_by_first(text, "### Fig. 6: coll_coef on Navier-Stokes")["0.5"][0] == "missing"


def test_mini_pde_readme(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        pde_run(runs, "mini_pde", seed=seed, data="burgers", mse=0.01 + 0.001 * seed)
        pde_run(runs, "mini_pde", seed=seed, data="burgers", mse=0.008 + 0.001 * seed, kiti=True,
                collision={"collision_heads": 32})  # fmt: skip
    pde_run(runs, "mini_pde_heads", seed=0, data="burgers", mse=0.02, kiti=True,
            collision={"collision_heads": 128})  # fmt: skip
    out = tmp_path / "out"
    render("mini-pde", runs, out)
    text = (out / "README.md").read_text()
    assert "Sum of the\nruns' wall times: 7 min" in text
    reductions = table_rows(text, "Error reduction by KITINet")
    assert reductions["Burgers' Equ."][1] == "18.3 ± 1.7 (n=3)"
    sweep = _rows_by_first(text, "### Fig. 2(a), CPU scale: collision_heads on Burgers")
    assert sweep["32"][0] == "0.0090 ± 0.0010 (n=3)" and sweep["128"][0] == "0.02 ± — (n=1)"
    assert sweep["64"][0] == "missing"
    # The sweep's heads-128 run does not enter the Table 4 rows.
    assert "(n=4)" not in text.split("## collision_heads sweep")[0]


def test_table4_airfoil_cell_is_the_logged_momentum_rmse(tmp_path: Path):
    """Airfoil's cell is the logged test_rmse (physical momentum RMSE), not sqrt(test_mse)."""
    runs = tmp_path / "runs"
    for seed, rmse in enumerate([16.0, 18.0]):
        extra = {"test_rmse": rmse}
        pde_run(
            runs, "kitinet_table4_airfoil_oformer", seed=seed, data="airfoil", mse=0.01, extra=extra
        )
    out = tmp_path / "out"
    render("kitinet-table4", runs, out)
    errors = _all_rows((out / "README.md").read_text(), "## Test error")
    row = next(r for r in errors if r[:2] == ["Airfoil*", "OFormer [22]"])
    assert row[2:5] == ["RMSE", "17.0 ± 1.4 (n=2)", "16.39461"]


def test_a_pde_report_without_its_rows_keeps_its_committed_result(tmp_path: Path) -> None:
    """The PDE renderers share one runs root: runs of Table 4 only are no runs for Table 7, whose
    committed result stays; Table 4's is re-rendered from its runs."""
    runs = tmp_path / "runs"
    pde_run(runs, "kitinet_table4_burgers_fno", seed=0, data="burgers", mse=0.01)
    committed = {}
    for name in ("kitinet_table4", "kitinet_table7"):
        (tmp_path / name).mkdir()
        committed[name] = tmp_path / name / "README.md"
        committed[name].write_text("committed numbers\n")
    code, _, err = render_cli(
        "kitinet-table7", "--runs", str(runs), "--out", str(tmp_path / "kitinet_table7")
    )
    assert code == 0 and committed["kitinet_table7"].read_text() == "committed numbers\n"
    assert f"none of the 1 run directories under {runs} is one of its runs: kept the" in err
    code, out, err = render_cli(
        "kitinet-table4", "--runs", str(runs), "--out", str(tmp_path / "kitinet_table4")
    )
    assert code == 0 and err == "" and out.strip() == str(committed["kitinet_table4"])
    assert "0.01 ± — (n=1)" in committed["kitinet_table4"].read_text()
