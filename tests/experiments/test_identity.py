"""A run's identity beyond code and config: the data digests and environment it records, and how
report headers show them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.core.io import file_digests, git_commit
from experiments.engine.runtime import environment
from experiments.reports.common import data_summary, environment_summary


def test_file_digests_name_files_by_their_place_under_the_listed_entry(tmp_path: Path) -> None:
    data = tmp_path / "set"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_bytes(b"abc")
    (data / "sub" / "b.bin").write_bytes(b"xyz")
    (data / ".lock").write_bytes(b"transient")  # hidden files are not data
    single = tmp_path / "elsewhere" / "c.pt"
    single.parent.mkdir()
    single.write_bytes(b"")
    digests = file_digests([data, single])
    assert digests == {
        "set/a.bin": hashlib.sha256(b"abc").hexdigest(),
        "set/sub/b.bin": hashlib.sha256(b"xyz").hexdigest(),
        "c.pt": hashlib.sha256(b"").hexdigest(),
    }
    # the same bytes under another root give the same record
    moved = tmp_path / "other" / "set"
    moved.parent.mkdir()
    data.rename(moved)
    assert file_digests([moved, single]) == digests
    (moved / "a.bin").write_bytes(b"abd")
    assert file_digests([moved])["set/a.bin"] != digests["set/a.bin"]
    with pytest.raises(FileNotFoundError, match="gone"):
        file_digests([tmp_path / "missing.pt"])


def test_environment_names_what_the_bits_depend_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    env = environment(torch.device("cpu"))
    assert env["packages"]["torch"] == torch.__version__.split("+")[0]
    assert env["num_threads"] == torch.get_num_threads()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["device"] == "cpu" and env["cpu"]
    assert env["variables"]["MKL_CBWR"] == "COMPATIBLE"
    assert "ATEN_CPU_CAPABILITY" not in env["variables"]


def test_headers_list_environments_and_flag_data_that_differ() -> None:
    runs = pd.DataFrame(
        {
            "environment.packages.torch": ["2.14.1", "2.14.1", None],
            "environment.device": ["cpu", "cpu", None],
            "environment.cpu": ["AMD EPYC", "AMD EPYC", None],
            "environment.cpu_capability": ["AVX512", "DEFAULT", None],
            "environment.num_threads": [1.0, 1.0, None],
            "data_sha256.set/a.bin": ["a" * 64, "a" * 64, None],
            "data_sha256.set/b.bin": ["b" * 64, "c" * 64, None],
        }
    )
    envs = environment_summary(runs)
    assert "kernels AVX512, threads 1 (1 runs)" in envs
    assert "kernels DEFAULT, threads 1 (1 runs)" in envs
    assert "not recorded (1 runs)" in envs
    data = data_summary(runs)
    assert f"`set/a.bin` `{'a' * 16}`," in data and "a.bin` `aaaaaaaaaaaaaaaa` **" not in data
    assert f"`set/b.bin` `{'b' * 16}` / `{'c' * 16}` **differs between runs**" in data
    assert data_summary(runs[["environment.device"]]) == "none (data made in memory)"
    assert environment_summary(pd.DataFrame({"seed": [0]})) == "missing"


def test_rendered_results_do_not_mark_a_commit_dirty(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_commit(tmp_path)
    assert len(clean) == 40
    (tmp_path / "results" / "table.md").write_text("new\n")  # a renderer wrote a result
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{clean} (with uncommitted changes)"


def test_each_experiments_own_file_of_one_name_is_not_a_difference() -> None:
    runs = pd.DataFrame(
        {
            "experiment_name": ["sentiment", "sentiment", "topics"],
            "environment.device": ["cpu"] * 3,
            "data_sha256.train.csv": ["a" * 64, "a" * 64, "b" * 64],
        }
    )
    assert data_summary(runs) == f"`train.csv` `{'a' * 16}` (sentiment) / `{'b' * 16}` (topics)"
    runs.loc[1, "data_sha256.train.csv"] = "c" * 64
    assert data_summary(runs).endswith("**differs between runs**")
