"""The training image's code, staged as training_job/Dockerfile copies it: it imports without the rest of imgclf."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "training_job" / "Dockerfile"
IGNORE = REPO / "training_job" / "Dockerfile.dockerignore"
CODE = "opt/ml/code"


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context, destinations made absolute by WORKDIR."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    workdir, found = "/", []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["WORKDIR"]:
            workdir = str(Path(workdir, words[1]))
        elif words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            *sources, destination = [w for w in words[1:] if not w.startswith("--")]
            if not destination.startswith("/"):
                destination = f"{workdir.rstrip('/')}/{destination.removeprefix('./')}"
            found.append((sources, destination))
    return found


def stage(root: Path) -> Path:
    """Copy what the Dockerfile copies under root, as it lands in the image; returns the code folder."""
    for sources, destination in copies():
        for source in sources:
            src, target = REPO / source, root / destination.lstrip("/")
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target = target / src.name if destination.endswith("/") else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target)
    return root / CODE


def run_python(code_dir: Path, script: str, *flags: str) -> subprocess.CompletedProcess:
    """A fresh interpreter with the staged code first on its path, like `python` in /opt/ml/code."""
    prelude = f"import sys; sys.path.insert(0, {str(code_dir)!r})\n"
    return subprocess.run([sys.executable, "-I", *flags, "-c", prelude + script], cwd=code_dir,
                          capture_output=True, text=True, timeout=120)


def test_the_image_carries_the_manifest_schema_next_to_the_job(tmp_path):
    code = stage(tmp_path)
    assert (code / "imgclf" / "manifest.py").read_bytes() == (REPO / "functions/common/imgclf/manifest.py").read_bytes()
    assert sorted(p.name for p in (code / "imgclf").iterdir()) == ["__init__.py", "manifest.py"]
    assert (code / "train.py").is_file() and (code / "imgclf_trainjob" / "dataset.py").is_file()


def test_the_schema_imports_with_the_standard_library_alone(tmp_path):
    # GIVEN the staged code and an interpreter without site-packages (-S)
    code = stage(tmp_path)

    # WHEN imgclf.manifest is imported
    result = run_python(code, "import imgclf.manifest as m; print(m.__file__)", "-S")

    # THEN it comes from the staged folder and needs nothing installed
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(code / "imgclf" / "manifest.py")


def test_the_job_loads_only_the_schema_of_the_common_package(tmp_path):
    # GIVEN the staged code, with the job's own dependencies installed
    code = stage(tmp_path)

    # WHEN the job's dataset module is imported
    result = run_python(code, "import imgclf_trainjob.dataset, imgclf\n"
                              "print(imgclf.__file__)\n"
                              "print(sorted(m for m in sys.modules if m.startswith('imgclf.')))")

    # THEN imgclf is the staged one, and nothing of it but the schema was loaded
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(code / "imgclf" / "__init__.py"), "['imgclf.manifest']"]


def _ignored(path: str) -> bool:
    """Whether the Dockerfile's .dockerignore excludes a path: the last pattern matching it or a folder above it
    wins (Docker's rule, for the pattern forms that file uses)."""
    patterns = [line.strip() for line in IGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = re.escape(pattern.lstrip("!")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(body, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def test_the_build_context_sends_every_file_the_dockerfile_copies():
    sent = []
    for sources, _ in copies():
        for source in sources:
            src = REPO / source
            files = [p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts] or [src]
            sent += [p.relative_to(REPO).as_posix() for p in files]
    assert "functions/common/imgclf/manifest.py" in sent
    assert [path for path in sent if _ignored(path)] == []


@pytest.mark.parametrize("path", [".venv/bin/python", "functions/common/imgclf/aws.py", "tests/conftest.py",
                                  ".git/HEAD", "training_job/imgclf_trainjob/__pycache__/dataset.cpython-311.pyc"])
def test_the_build_context_leaves_the_rest_of_the_repository_out(path):
    assert _ignored(path)
