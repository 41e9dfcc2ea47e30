"""The classifier image's dependency set: what functions/classifier/requirements.txt pins, and its installed size.

Measured offline from this environment's installed distributions (their RECORD files list every file they
installed), with the same files left out that the Dockerfile's deps-onnx stage deletes, so tests and the
benchmark need neither a network nor a Docker engine.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from . import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "functions" / "classifier" / "requirements.txt"
DOCKERFILE = REPO_ROOT / "functions" / "classifier" / "Dockerfile"
# What the deps-onnx stage deletes after pip install: onnxruntime's offline tools, and every tests folder.
PRUNED = ("onnxruntime/transformers", "onnxruntime/tools", "onnxruntime/quantization", "onnxruntime/datasets",
          "onnxruntime/backend")
# Declared dependencies the image leaves out (pip install --no-deps), because nothing imports them at run time.
UNNEEDED = {"onnxruntime": {"protobuf", "packaging", "flatbuffers"}}


def canonical(name: str) -> str:
    """A distribution name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path = REQUIREMENTS) -> dict[str, str]:
    """The packages a requirements file pins, canonical name -> version."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            if spec.operator != "==":
                raise ValueError(f"{path.name}: {line!r} is not an exact pin")
            pins[canonical(requirement.name)] = spec.version
    return pins


def declared_dependencies(name: str) -> set[str]:
    """The distributions an installed package requires on this platform (extras left out)."""
    needed = set()
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            needed.add(canonical(requirement.name))
    return needed


def shipped(relative: str) -> bool:
    """Whether a file a package installed stays in the image after the Dockerfile's pruning."""
    return not relative.startswith(PRUNED) and "tests" not in Path(relative).parts[:-1]


def installed_bytes(pins: dict[str, str]) -> dict[str, int]:
    """Bytes each pinned package occupies once installed and pruned; the installed version must be the pin."""
    sizes = {}
    for name, version in pins.items():
        distribution = metadata.distribution(name)
        if distribution.version != version:
            raise ValueError(f"{name} {distribution.version} is installed, the image pins {version}")
        total = 0
        for file in distribution.files or []:
            path = Path(distribution.locate_file(file))
            if shipped(str(file)) and path.is_file():
                total += path.stat().st_size
        sizes[name] = total
    return sizes


def deps_mb(path: Path = REQUIREMENTS) -> float:
    """The installed size of the image's dependency set in MiB."""
    return sum(installed_bytes(pinned(path)).values()) / 2**20
