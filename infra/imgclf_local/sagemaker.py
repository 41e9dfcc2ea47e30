"""SageMaker's training contract on this machine: train.py as a process with the folders and variables it gets."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable

from imgclf import keys

from .template import REPO_ROOT

log = logging.getLogger("imgclf.local.sagemaker")

TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"


class LocalSageMaker:
    """Runs a CreateTrainingJob request locally and uploads its artifacts where the real job would."""

    def __init__(self, s3, *, workdir: Path | None = None, python: str = sys.executable,
                 on_finish: Callable[[dict], object] | None = None, extra_env: dict[str, str] | None = None,
                 stream_output: bool = False, timeout_s: float | None = None):
        self.s3 = s3
        self.workdir = workdir
        self.python = python
        self.on_finish = on_finish
        self.extra_env = extra_env or {}
        self.stream_output = stream_output
        self.timeout_s = timeout_s
        self.jobs: dict[str, dict] = {}

    def start(self, request: dict) -> None:
        """Run the job to the end (the local stack has no queue of GPU machines), then report it."""
        description = self.run(request)
        if self.on_finish:
            self.on_finish(description)

    def describe(self, name: str) -> dict:
        return self.jobs[name]

    def run(self, request: dict) -> dict:
        """Train, upload model.tar.gz and output.tar.gz, and return what DescribeTrainingJob would."""
        name = request["TrainingJobName"]
        started = datetime.now(UTC)
        root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        try:
            ml = self._lay_out(root, request)
            returncode, log_tail = self._train(ml, request)
            failure_file = ml / "output" / "failure"
            description = {
                "TrainingJobName": name,
                "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
                "TrainingStartTime": started.isoformat(),
                "TrainingEndTime": datetime.now(UTC).isoformat(),
                "HyperParameters": request.get("HyperParameters", {}),
                "BillableTimeInSeconds": int((datetime.now(UTC) - started).total_seconds()),
            }
            if returncode == 0:
                model_uri, _ = self._upload(ml, request)
                description.update(TrainingJobStatus="Completed", SecondaryStatus="Completed",
                                   ModelArtifacts={"S3ModelArtifacts": model_uri})
            else:
                reason = failure_file.read_text().strip() if failure_file.exists() else ""
                description.update(TrainingJobStatus="Failed", SecondaryStatus="Failed",
                                   FailureReason=reason or f"train.py exited with {returncode}: {log_tail}")
            self.jobs[name] = description
            return description
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _lay_out(self, root: Path, request: dict) -> Path:
        """/opt/ml as SageMaker lays it out: channels synced from S3, the config files, empty outputs."""
        ml = root / "opt" / "ml"
        config = ml / "input" / "config"
        config.mkdir(parents=True)
        for folder in ("model", "output/data", "checkpoints"):
            (ml / folder).mkdir(parents=True)
        for channel in request["InputDataConfig"]:
            source = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._sync(source, ml / "input" / "data" / channel["ChannelName"])
        (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
        (config / "inputdataconfig.json").write_text(json.dumps({
            c["ChannelName"]: {"TrainingInputMode": c.get("InputMode", "File")} for c in request["InputDataConfig"]
        }))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        return ml

    def _sync(self, s3_uri: str, dest: Path) -> None:
        """Copy every object under an S3 prefix, keeping the relative layout."""
        bucket, prefix = keys.parse_s3_uri(s3_uri)
        dest.mkdir(parents=True, exist_ok=True)
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix):]
                if not relative or relative.endswith("/"):
                    continue
                target = (dest / relative).resolve()
                if dest.resolve() not in target.parents:
                    raise ValueError(f"object key {obj['Key']!r} escapes the channel folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, obj["Key"], str(target))

    def _train(self, ml: Path, request: dict) -> tuple[int, str]:
        env = {
            **os.environ,
            "SM_MODEL_DIR": str(ml / "model"),
            "SM_OUTPUT_DATA_DIR": str(ml / "output" / "data"),
            "SM_OUTPUT_DIR": str(ml / "output"),
            "SM_INPUT_DIR": str(ml / "input"),
            "SM_INPUT_CONFIG_DIR": str(ml / "input" / "config"),
            "SM_HPS": json.dumps(request.get("HyperParameters", {})),
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "SM_NUM_GPUS": "0",
            "TRAINING_JOB_NAME": request["TrainingJobName"],
            **{f"SM_CHANNEL_{c['ChannelName'].upper()}": str(ml / "input" / "data" / c["ChannelName"])
               for c in request["InputDataConfig"]},
            **self.extra_env,
        }
        env.pop("AWS_ENDPOINT_URL", None)  # the job reads only its folders, as on SageMaker
        started = time.monotonic()
        process = subprocess.run(
            [self.python, str(TRAIN_SCRIPT)], env=env, cwd=str(ml),
            stdout=None if self.stream_output else subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=self.timeout_s, check=False,
        )
        log.info("train.py for %s exited %d after %.0f s", request["TrainingJobName"], process.returncode,
                 time.monotonic() - started)
        tail = (process.stdout or "")[-2000:]
        return process.returncode, tail

    def _upload(self, ml: Path, request: dict) -> tuple[str, str]:
        """model.tar.gz and output.tar.gz at {S3OutputPath}/{job}/output/, as SageMaker writes them."""
        bucket, prefix = keys.parse_s3_uri(request["OutputDataConfig"]["S3OutputPath"].rstrip("/") + "/")
        base = f"{prefix}{request['TrainingJobName']}/output/"
        uris = []
        for archive_name, folder in (("model.tar.gz", ml / "model"), ("output.tar.gz", ml / "output" / "data")):
            archive = ml / archive_name
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        tar.add(path, arcname=str(path.relative_to(folder)))
            self.s3.upload_file(str(archive), bucket, base + archive_name)
            uris.append(keys.s3_uri(bucket, base + archive_name))
        return uris[0], uris[1]
