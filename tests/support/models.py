"""Trained models put where the classifier finds them: uploaded under models/{version}/ and registered."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from imgclf.registry import ModelRegistry


def publish_model(stack, model_dir: Path, version: str, *, force: bool = True) -> str:
    """Upload model.json and model.onnx to a local stack's bucket, register them with their sha256, promote."""
    s3 = stack.client("s3")
    artifacts = {}
    for name in ("model.json", "model.onnx"):
        body = (model_dir / name).read_bytes()
        s3.put_object(Bucket=stack.bucket(), Key=f"models/{version}/{name}", Body=body)
        artifacts[name] = hashlib.sha256(body).hexdigest()
    registry = ModelRegistry(stack.table("ModelsTable"))
    classes = json.loads((model_dir / "model.json").read_text())["classes"]
    registry.register(version, artifacts=artifacts, metrics={"error_rate": 0.1}, classes=classes)
    registry.promote(version, force=force)
    return version
