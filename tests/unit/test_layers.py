"""What ships to AWS stays apart from what runs on a laptop: no Lambda or training code reaches the emulator or CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("functions", "training_job")  # Lambda packages, the layer, and the SageMaker training image
LOCAL_ONLY = {"imgclf_local", "imgclf_cli"}


def shipped_modules() -> list[Path]:
    return sorted(p for folder in SHIPPED for p in (REPO_ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported_names(tree: ast.AST) -> list[str]:
    """Every module a file names in an import statement or passes to importlib.import_module or __import__."""
    # A relative import cannot leave its top-level package, so only these can reach imgclf_local or imgclf_cli.
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"}))):
            names.append(node.args[0].value)
    return names


@pytest.mark.parametrize("path", shipped_modules(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_code_imports_neither_the_emulator_nor_the_command_line(path):
    # GIVEN a module that is deployed to Lambda or SageMaker
    tree = ast.parse(path.read_text(), filename=str(path))

    # WHEN its imports are read
    local = [name for name in imported_names(tree) if name.split(".")[0] in LOCAL_ONLY]

    # THEN none of them reaches code that exists only on a developer's machine
    assert not local, f"{path.relative_to(REPO_ROOT)} imports {local}"


def test_no_lambda_package_carries_command_line_code():
    # GIVEN every module of the Lambda packages and the layer
    modules = [p for p in shipped_modules() if p.relative_to(REPO_ROOT).parts[0] == "functions"]

    # WHEN they are searched for the makings of a command line
    cli_files = [p for p in modules if p.name == "cli.py"]
    argparse_users = [p for p in modules if "argparse" in imported_names(ast.parse(p.read_text()))]

    # THEN there are none: commands live in cli/imgclf_cli
    assert not cli_files, cli_files
    assert not argparse_users, argparse_users
