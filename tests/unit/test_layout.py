"""The package layout: every subpackage and config group ships in the wheel, agents import no
training, Hydra, gymnasium or W&B code, and no module grows past the design's size."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "sac_cli"


def test_every_subpackage_is_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {
        ".".join(("sac_cli", *init.parent.relative_to(PACKAGE).parts))
        for init in PACKAGE.rglob("__init__.py")
    }
    conf = ROOT / "conf"
    found |= {  # the config groups, shipped as sac_cli.conf.<group>
        ".".join(("sac_cli", "conf", *yaml.parent.relative_to(conf).parts))
        for yaml in conf.rglob("*.yaml")
    }
    assert found <= listed, f"not in pyproject's packages: {sorted(found - listed)}"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_agents_know_no_trainer_hydra_gymnasium_or_wandb():
    forbidden = ("sac_cli.training", "sac_cli.cli", "sac_cli.envs", "hydra", "gymnasium",
                 "wandb", "threading", "concurrent")
    for path in (PACKAGE / "agents").glob("*.py"):
        bad = [m for m in imported_modules(path) if m.startswith(forbidden)]
        assert not bad, f"{path.name} imports {bad}"


def test_no_module_is_over_300_lines():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 300
    }
    assert not long, long
