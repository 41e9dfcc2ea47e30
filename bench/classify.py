"""Benchmark: 200 real photos classified the original app's way, through imgclf's handler, and the floor.

Run from the repository root: ``.venv/bin/python bench/classify.py``. One model is trained once with
training_job/train.py on ants-bees/train; then the same 200 photos (the 153 of ants-bees/valid and 47 flowers)
are classified by

  (a) the original app's way: ``load_learner`` then ``learn.predict`` on each photo;
  (b) imgclf's classifier handler with the onnx backend, fed SQS batches of 10 through a local S3 and
      DynamoDB (moto's ThreadedMotoServer on 127.0.0.1 in a child process, AWS_ENDPOINT_URL set);
  (c) ONNX Runtime's forward pass alone on already preprocessed tensors, in batches of 10: the floor.
      (b) and (c) are timed batch by batch in turn, so that both see the same background load; so is (b)
      with S3 and DynamoDB in memory, which shows how much of (b)'s extra time is imgclf's own work.

It also measures the cold start of (a) and (b) in fresh processes (process start to first prediction), and
how closely the optional reduced JPEG decode (imgclf.inference.decode_reduced) agrees with the exact path.
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = (REPO_ROOT / ".." / "shared" / "datasets").resolve()
TRAIN_SCRIPT = REPO_ROOT / "training_job" / "train.py"
BATCH = 10
N_FLOWERS = 47
MAX_PIXELS = 40_000_000

BASELINE_COLD = """
import sys, time
from fastai.vision.all import load_learner, PILImage
learn = load_learner(sys.argv[1])
learn.predict(PILImage.create(sys.argv[2]))
print(time.time())
"""

# moto's server in its own process: the emulated S3 and DynamoDB then do not share the bench's GIL, as the
# real services do not share a Lambda environment's.
MOTO_SERVER = """
import time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
time.sleep(24 * 3600)
"""

IMGCLF_COLD = """
import json, sys, time
from imgclf_classifier.handler import lambda_handler

class Context:  # what Lambda passes; a stand-in, so no local-stack module is imported
    function_name, memory_limit_in_mb, aws_request_id = "bench", 2048, "cold-start"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

lambda_handler(json.loads(sys.argv[1]), Context())
print(time.time())
"""


def photos() -> list[Path]:
    """The 153 ants-bees validation photos and 47 flowers spread over the five kinds."""
    valid = sorted((DATASETS / "ants-bees" / "valid").glob("*/*.jpg"))
    flowers = sorted((DATASETS / "flowers").glob("*/*.jpg"))
    if not valid or not flowers:
        sys.exit(f"the shared data sets are missing under {DATASETS}")
    step = len(flowers) // N_FLOWERS
    return valid + flowers[::step][:N_FLOWERS]


def train(workdir: Path) -> tuple[Path, str]:
    """Train the bench's model once with train.py; return its model dir and the arch used."""
    model_dir = workdir / "model"
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(DATASETS / "ants-bees" / "train"),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(workdir / "output"),
    }
    attempts = [
        (
            "tf_efficientnet_lite0",
            ["--arch", "tf_efficientnet_lite0", "--weights", "efficientnet-lite0-package"],
        ),
        ("resnet18 (no pretrained weights)", ["--arch", "resnet18", "--pretrained", "false"]),
    ]
    for arch, args in attempts:
        print(f"training {arch} on ants-bees/train (1 epoch, 224 px)...", flush=True)
        done = subprocess.run(
            [
                sys.executable,
                str(TRAIN_SCRIPT),
                *args,
                "--epochs",
                "1",
                "--img_size",
                "224",
                "--num-workers",
                "0",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return model_dir, arch
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
    sys.exit("train.py failed")


def baseline_per_s(model_dir: Path, paths: list[Path]) -> float:
    """(a) load_learner, then learn.predict on each photo."""
    from fastai.vision.all import PILImage, load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = load_learner(model_dir / "export.pkl")
        learn.predict(PILImage.create(paths[0]))  # warm-up, as for (b) and (c)
        started = time.perf_counter()
        for path in paths:
            learn.predict(PILImage.create(path))
    return len(paths) / (time.perf_counter() - started)


class LocalAws:
    """The template's bucket and tables in a moto server on 127.0.0.1, and the functions' environment."""

    def __init__(self, workdir: Path):
        from imgclf_local.template import StackTemplate

        self.template = StackTemplate(parameters={"Stage": "local"})
        self.workdir = workdir
        self.server: subprocess.Popen | None = None
        self.environment: dict[str, str] = {}

    def __enter__(self) -> LocalAws:
        import boto3

        self.server = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        port = int(self.server.stdout.readline())
        self.environment = {
            **self.template.function_environment(),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "classifier",
            # 200 per-image log lines would only bury the results.
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "MODEL_CACHE_DIR": str(self.workdir / "model-cache"),
        }
        os.environ.update(self.environment)
        dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        for table in self.template.tables.values():
            indexes = (
                {"GlobalSecondaryIndexes": table.global_secondary_indexes}
                if table.global_secondary_indexes
                else {}
            )
            dynamodb.create_table(
                TableName=table.name,
                KeySchema=table.key_schema,
                BillingMode=table.billing_mode,
                AttributeDefinitions=table.attribute_definitions,
                **indexes,
            )
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        return self

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.terminate()
            self.server.wait(timeout=30)

    @property
    def bucket(self) -> str:
        return self.template.buckets["DataBucket"].name

    def table(self, logical_id: str) -> str:
        return self.template.tables[logical_id].name

    def client(self, service: str):
        import boto3

        return boto3.client(service)


def publish(stack: LocalAws, model_dir: Path, version: str) -> None:
    """Upload the model's artifacts to the bucket and promote it."""
    import hashlib

    from imgclf.registry import ModelRegistry

    s3 = stack.client("s3")
    artifacts = {}
    for name in ("model.json", "model.onnx", "export.pkl"):
        body = (model_dir / name).read_bytes()
        s3.put_object(Bucket=stack.bucket, Key=f"models/{version}/{name}", Body=body)
        artifacts[name] = hashlib.sha256(body).hexdigest()
    classes = json.loads((model_dir / "model.json").read_text())["classes"]
    registry = ModelRegistry(stack.table("ModelsTable"))
    registry.register(version, artifacts=artifacts, metrics={}, classes=classes)
    registry.promote(version)


def upload(stack: LocalAws, paths: list[Path], prefix: str) -> list[dict]:
    """Put the photos under uploads/ and return S3 notification records for them."""
    s3 = stack.client("s3")
    records = []
    for i, path in enumerate(paths):
        key = f"{prefix}{i:03d}-{path.name}"
        body = path.read_bytes()
        response = s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
        records.append(
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-01-01T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": stack.bucket},
                    "object": {
                        "key": key,
                        "size": len(body),
                        "eTag": response["ETag"].strip('"'),
                        "versionId": response.get("VersionId"),
                        "sequencer": f"{0x1000 + i:016X}",
                    },
                },
            }
        )
    return records


def sqs_batches(records: list[dict]) -> list[dict]:
    """SQS events of BATCH messages, one S3 notification per message, as the trigger delivers them."""
    messages = [
        {"messageId": f"m{i}", "eventSource": "aws:sqs", "body": json.dumps({"Records": [r]})}
        for i, r in enumerate(records)
    ]
    return [{"Records": messages[i : i + BATCH]} for i in range(0, len(messages), BATCH)]


class MemoryS3:
    """GetObject served from memory: what the handler's own work costs when S3 costs nothing."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects

    def get_object(self, Bucket: str, Key: str, **kwargs) -> dict:
        data = self.objects[Key]
        return {"ContentLength": len(data), "Body": io.BytesIO(data)}


class MemoryTable:
    """A predictions table that holds nothing and accepts every write."""

    def get_many(self, images: list[str]) -> dict:
        return {}

    def put_if_newer(self, record: dict) -> bool:
        return True


def throughputs(events: list[dict], paths: list[Path]) -> dict[str, float]:
    """Images per second of (b), of (b) with S3 and DynamoDB in memory, and of (c), batch by batch in turn.

    Alternating gives all three the same background load, which on a shared machine moves more than any of
    them; (c) uses the handler's own onnxruntime session, so one thread pool serves all three.
    """
    from imgclf import images
    from imgclf.settings import get_settings
    from imgclf_classifier import handler
    from imgclf_classifier.service import process_event
    from imgclf_local.lambda_runtime import LambdaContext

    model = handler.classifier(get_settings()).model()  # the warm environment the throughput is about
    tensors = model.metadata.recipe.to_batch(
        [images.decode(p.read_bytes(), max_pixels=MAX_PIXELS) for p in paths]
    )
    batches = [tensors[i : i + BATCH] for i in range(0, len(tensors), BATCH)]
    keys = [json.loads(m["body"])["Records"][0]["s3"]["object"]["key"] for e in events for m in e["Records"]]
    in_memory = dataclasses.replace(
        handler.collaborators(),
        s3=MemoryS3({key: path.read_bytes() for key, path in zip(keys, paths, strict=True)}),
        table=MemoryTable(),
    )
    seconds = {"imgclf": 0.0, "imgclf_in_memory": 0.0, "floor": 0.0}
    runs = {
        "imgclf": lambda event, batch: handler.lambda_handler(event, LambdaContext(function_name="bench")),
        "imgclf_in_memory": lambda event, batch: process_event(event, in_memory),
        "floor": lambda event, batch: model.backend.forward(batch),
    }
    for n, (event, batch) in enumerate(zip(events, batches, strict=True)):
        for name, run in runs.items():
            started = time.perf_counter()
            answer = run(event, batch)
            if n:  # the first batch warms everything up
                seconds[name] += time.perf_counter() - started
            if name == "imgclf" and answer["batchItemFailures"]:
                sys.exit(f"the handler failed messages: {answer}")
    timed = len(tensors) - len(batches[0])
    return {name: timed / s for name, s in seconds.items()}


def cold_start(script: str, args: list[str], env: dict[str, str]) -> float:
    """Seconds from starting a fresh Python process to its first prediction."""
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    if done.returncode != 0:
        sys.exit(f"cold start run failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1]) - started


def reduced_decode_agreement(model_dir: Path, paths: list[Path]) -> dict:
    """Top-1 agreement and largest probability gap of decode_reduced against the exact decode."""
    from PIL import Image

    from imgclf import images
    from imgclf.inference import ModelMetadata, decode_reduced
    from imgclf.inference.backends import OnnxBackend

    metadata = ModelMetadata.load(model_dir / "model.json")
    backend = OnnxBackend(model_dir / "model.onnx", metadata)
    side = metadata.recipe.resize_to[0]

    def compare(blobs: list[bytes]) -> dict:
        exact = [images.decode(b, max_pixels=MAX_PIXELS) for b in blobs]
        started = time.perf_counter()
        fast = [decode_reduced(b, side=side, max_pixels=MAX_PIXELS) for b in blobs]
        fast_s = time.perf_counter() - started
        started = time.perf_counter()
        for b in blobs:
            images.decode(b, max_pixels=MAX_PIXELS)
        exact_s = time.perf_counter() - started
        p_exact = backend.predict([backend.prepare(i) for i in exact])
        p_fast = backend.predict([backend.prepare(i) for i in fast])
        return {
            "images": len(blobs),
            "top1_agreement": float(np.mean(p_exact.argmax(1) == p_fast.argmax(1))),
            "max_prob_diff": float(np.abs(p_exact - p_fast).max()),
            "decode_speedup": round(exact_s / fast_s, 2),
        }

    originals = [p.read_bytes() for p in paths]
    # The shared photos are about 500 px, too small to shrink at 256; phone-sized copies show the effect.
    large = []
    for blob in originals[:50]:
        img = images.decode(blob, max_pixels=MAX_PIXELS)
        buffer = io.BytesIO()
        img.resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        large.append(buffer.getvalue())
    return {"as_shipped": compare(originals), "upscaled_4x": compare(large)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the trained model and caches here")
    parser.add_argument("--model-dir", type=Path, help="reuse a model that train.py wrote, skip training")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="imgclf-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_TRACE_DISABLED="true",
        MODEL_CACHE_DIR=str(workdir / "model-cache"),
    )
    paths = photos()
    if args.model_dir:
        model_dir, arch = args.model_dir, json.loads((args.model_dir / "model.json").read_text())["arch"]
    else:
        model_dir, arch = train(workdir)
    print(f"model: {arch}, {len(paths)} photos, batches of {BATCH}, {os.cpu_count()} CPUs", flush=True)

    with LocalAws(workdir) as stack:
        publish(stack, model_dir, "bench-1")
        events = sqs_batches(upload(stack, paths, "uploads/bench/"))
        per_s = throughputs(events, paths)
        imgclf, floor = per_s["imgclf"], per_s["floor"]
        cold_event = sqs_batches(upload(stack, paths[:1], "uploads/cold/"))[0]
        cold_env = {**os.environ, **stack.environment, "MODEL_CACHE_DIR": str(workdir / "cold-cache")}
        imgclf_cold = cold_start(IMGCLF_COLD, [json.dumps(cold_event)], cold_env)
    print(f"(b) imgclf handler, onnx backend: {imgclf:.1f} images/s", flush=True)
    print(
        f"    the same batches with S3 and DynamoDB in memory (imgclf's own work): "
        f"{per_s['imgclf_in_memory']:.1f} images/s, {floor / per_s['imgclf_in_memory'] - 1:.0%} over (c)",
        flush=True,
    )
    print(f"(c) onnxruntime forward pass alone: {floor:.1f} images/s", flush=True)
    baseline = baseline_per_s(model_dir, paths)
    print(f"(a) load_learner + learn.predict: {baseline:.1f} images/s", flush=True)
    baseline_args = [str(model_dir / "export.pkl"), str(paths[0])]
    baseline_cold = cold_start(BASELINE_COLD, baseline_args, dict(os.environ))
    print(f"cold start to first prediction: (a) {baseline_cold:.2f} s, (b) {imgclf_cold:.2f} s", flush=True)
    agreement = reduced_decode_agreement(model_dir, paths)
    print(f"reduced JPEG decode vs exact: {json.dumps(agreement)}", flush=True)

    ratio, overhead = imgclf / baseline, floor / imgclf - 1
    print(
        f"(b)/(a) = {ratio:.2f} (target >= 3); (b) overhead over (c) = {overhead:.0%} (target <= 30%); "
        f"cold (b)/(a) = {imgclf_cold / baseline_cold:.2f} (target <= 0.2)"
    )
    print(
        json.dumps(
            {
                "baseline_per_s": round(baseline, 2),
                "imgclf_per_s": round(imgclf, 2),
                "floor_per_s": round(floor, 2),
                "ratio": round(ratio, 2),
                "overhead": round(overhead, 3),
                "baseline_cold_s": round(baseline_cold, 2),
                "imgclf_cold_s": round(imgclf_cold, 2),
                "cold_ratio": round(imgclf_cold / baseline_cold, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
