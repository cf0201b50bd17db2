"""The layering of the code base (README, "Architecture"): imports point one way.

    kinetics  <-  experiments.core  <-  experiments.engine  <-  domains  <-  runner / reports  <-  CLIs

Every import statement counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

DOMAINS = ("synthetic", "vision", "pde")


def _modules(package: str) -> dict[str, Path]:
    root = REPO / package.replace(".", "/")
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> int:
    """0 kinetics, 1 core, 2 engine, 3 a domain, 4 what builds on the domains; -1 other."""
    parts = module.split(".")
    if parts[0] == "kinetics":
        return 0
    if parts[0] != "experiments" or len(parts) == 1:
        return -1
    return {"core": 1, "engine": 2, **dict.fromkeys(DOMAINS, 3)}.get(parts[1], 4)


EXPERIMENTS = _modules("experiments")
KINETICS = _modules("kinetics")


@pytest.mark.parametrize("module", sorted(EXPERIMENTS))
def test_imports_point_down(module: str) -> None:
    layer = _layer(module)
    upward = sorted(
        name
        for name in _imports(EXPERIMENTS[module])
        if name in EXPERIMENTS and _layer(name) > layer
    )
    assert not upward, f"{module} (layer {layer}) imports from above it: {upward}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_no_domain_imports_another(domain: str) -> None:
    for module, path in EXPERIMENTS.items():
        if module.startswith(f"experiments.{domain}"):
            others = {
                name
                for name in _imports(path)
                if _layer(name) == 3 and not name.startswith(f"experiments.{domain}")
            }
            assert not others, f"{module} imports another domain: {sorted(others)}"


def test_reports_import_no_domain() -> None:
    for module, path in EXPERIMENTS.items():
        if module.startswith("experiments.reports"):
            bad = {n for n in _imports(path) if _layer(n) == 3 or n == "experiments.domains"}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_kinetics_needs_torch_only() -> None:
    allowed_roots = {"torch", "kinetics", "__future__", "matplotlib", *sys.stdlib_module_names}
    for module, path in KINETICS.items():
        roots = {name.split(".")[0] for name in _imports(path)}
        assert roots <= allowed_roots, f"{module} imports {sorted(roots - allowed_roots)}"


def test_no_import_cycles() -> None:
    graph = {
        module: {name for name in _imports(path) if name in EXPERIMENTS and name != module}
        for module, path in EXPERIMENTS.items()
    }
    # a package's __init__ importing nothing keeps "experiments.x" out of the edges
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join([*visiting, node])
        visiting.append(node)
        for child in sorted(graph[node]):
            visit(child)
        visiting.pop()
        done.add(node)

    for module in sorted(graph):
        visit(module)


def test_registry_alone_registers_nothing() -> None:
    """Importing the registries loads no domain: the domains register themselves, and
    experiments.domains is the one module that imports them all."""
    code = (
        "import sys\n"
        "import experiments.core.registry as r\n"
        "loaded = [m for m in sys.modules if m.split('.')[:2] in "
        f"[['experiments', d] for d in {list(DOMAINS)!r}]]\n"
        "assert not loaded and not r.MODELS.names() and not r.DATASETS.names(), loaded\n"
        "import experiments.domains\n"
        "assert {'mlp', 'cifar_resnet18', 'fno1d'} <= set(r.MODELS.names())\n"
        "assert {'sin5d', 'cifar10', 'burgers'} <= set(r.DATASETS.names())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_kinetics_imports_with_torch_alone() -> None:
    code = (
        "import sys\n"
        "import kinetics\n"
        "heavy = {'experiments', 'hydra', 'omegaconf', 'transformers', 'timm', 'datasets'}\n"
        "assert not heavy & {m.split('.')[0] for m in sys.modules}, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_the_license_is_an_spdx_string() -> None:
    """setuptools deprecates the TOML table form ``license = {text = ...}`` and warned about it
    three times per install; the SPDX expression is the current form."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
