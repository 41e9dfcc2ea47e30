"""Benchmark: 200 real photos classified the original app's way, through imgclf's handler, and the floor.

Run from the repository root: ``.venv/bin/python bench/classify.py``. One model is trained once with
training_job/train.py on ants-bees/train (which also quantizes it to int8); then the same 200 photos (the 153
of ants-bees/valid and 47 flowers) are classified by

  (a) the original app's way: ``load_learner`` then ``learn.predict`` on each photo;
  (b) imgclf's classifier handler with the onnx backend at fp32, fed SQS batches of 10 through a local S3 and
      DynamoDB (moto's ThreadedMotoServer on 127.0.0.1 in a child process, AWS_ENDPOINT_URL set);
  (c) ONNX Runtime's forward pass alone on already preprocessed tensors, in batches of 10: the floor, for
      model.onnx (fp32) and model.int8.onnx (int8).
      (b), (c) and the handler with S3 and DynamoDB in memory (imgclf's own work, "own") at fp32 and int8 are
      timed batch by batch in turn, so that all see the same background load.

It also prints where a batch's time goes (fetch, decode, preprocess, infer, write), how often int8 and fp32
agree, the cold start of (a) and (b) in fresh processes (process start to first prediction) with the
classifier's init split into its stages, the installed size of the classifier image's dependencies, a
memory/cost table for Lambda's 1024, 2048 and 3008 MB (CPU share simulated by pinning the process to 1 or 2
CPUs), and how closely the optional reduced JPEG decode (imgclf.inference.decode_reduced) agrees with the
exact path. The last line printed is one JSON object with the headline numbers.
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
ROUNDS = 2  # passes over the photos in the throughput runs
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
started = time.time()
from imgclf.settings import get_settings
from imgclf_classifier.handler import classifier, lambda_handler
imported = time.time()
model = classifier(get_settings()).model()  # what the handler's _warm() does in Lambda's init phase
loaded = time.time()

class Context:  # what Lambda passes; a stand-in, so no local-stack module is imported
    function_name, memory_limit_in_mb, aws_request_id = "bench", 2048, "cold-start"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

lambda_handler(json.loads(sys.argv[1]), Context())
print(json.dumps({"started": started, "imported": imported, "loaded": loaded, "done": time.time(),
                  "precision": model.precision, "load": model.load_timings}))
"""
# Lambda's x86 price (us-east-1): per GB-second of duration and per request.
GB_SECOND_USD, REQUEST_USD = 0.0000166667, 0.0000002
LAMBDA_MEMORY_MB = (1024, 2048, 3008)


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
            # (b) and its JSON keys stay fp32, comparable with earlier runs; int8 is measured beside it.
            "MODEL_PRECISION": "fp32",
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
    for name in ("model.json", "model.onnx", "model.int8.onnx", "export.pkl"):
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
    """Images per second of (b), of imgclf's own work and of (c), at fp32 and int8, batch by batch in turn.

    Alternating gives every run the same background load, which on a shared machine moves more than any of
    them; (c) uses the handler's own onnxruntime sessions, so one thread pool serves the floor and the handler.
    Runs of one session follow each other: a session's threads spin for a moment after each run, and would
    slow the other session's next run. The batches go round ROUNDS times.
    """
    from imgclf_classifier import handler
    from imgclf_classifier.service import process_event
    from imgclf_local.lambda_runtime import LambdaContext

    fp32, int8 = models_at_both_precisions()
    batches = tensor_batches(fp32, paths)
    own = in_memory_collaborators(events, paths, fp32, int8)
    floor, int8_floor = fp32.model().backend, int8.model().backend
    runs = {
        "imgclf": lambda event, batch: handler.lambda_handler(event, LambdaContext(function_name="bench")),
        "own": lambda event, batch: process_event(event, own["fp32"]),
        "floor": lambda event, batch: floor.forward(batch),
        "int8_own": lambda event, batch: process_event(event, own["int8"]),
        "int8_floor": lambda event, batch: int8_floor.forward(batch),
    }
    seconds, images = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0)
    for n, (event, batch) in enumerate(zip(events * ROUNDS, batches * ROUNDS, strict=True)):
        for name, run in runs.items():
            if name == "imgclf" and n >= len(events):
                continue  # (b) stored its records in the first round: again, it would skip them as duplicates
            started = time.perf_counter()
            answer = run(event, batch)
            if n:  # the first batch warms everything up
                seconds[name] += time.perf_counter() - started
                images[name] += len(batch)
            # lambda_handler answers batchItemFailures; process_event a BatchResult; the floor an array.
            failed = (answer["batchItemFailures"] if isinstance(answer, dict)
                      else getattr(answer, "failed_message_ids", None))
            if failed:
                sys.exit(f"{name} failed messages: {failed}")
    return {name: images[name] / s for name, s in seconds.items()}


def models_at_both_precisions(threads: int | None = None):
    """The handler's classifier (fp32, as the bench's environment says) and one at int8, both loaded."""
    import functools

    from imgclf.inference import Classifier, load_backend
    from imgclf.settings import get_settings
    from imgclf_classifier import handler

    settings = get_settings()
    if threads is None:
        fp32 = handler.classifier(settings)
        int8 = Classifier.from_settings(dataclasses.replace(settings, model_precision="int8"))
    else:
        loader = functools.partial(load_backend, threads=threads)
        fp32, int8 = (Classifier.from_settings(dataclasses.replace(settings, model_precision=precision), loader=loader)
                      for precision in ("fp32", "int8"))
    for classifier in (fp32, int8):
        classifier.model()
    return fp32, int8


def tensor_batches(classifier, paths: list[Path]) -> list[np.ndarray]:
    """The photos decoded and preprocessed, in batches of BATCH."""
    from imgclf import images

    tensors = classifier.model().metadata.recipe.to_batch(
        [images.decode(p.read_bytes(), max_pixels=MAX_PIXELS) for p in paths])
    return [tensors[i : i + BATCH] for i in range(0, len(tensors), BATCH)]


def in_memory_collaborators(events: list[dict], paths: list[Path], fp32, int8, pool=None) -> dict:
    """The handler's collaborators with S3 and DynamoDB in memory, with the fp32 and with the int8 classifier."""
    from imgclf_classifier import handler

    keys = [json.loads(m["body"])["Records"][0]["s3"]["object"]["key"] for e in events for m in e["Records"]]
    base = dataclasses.replace(
        handler.collaborators(),
        s3=MemoryS3({key: path.read_bytes() for key, path in zip(keys, paths, strict=True)}),
        table=MemoryTable(),
        **({"pool": pool} if pool else {}),
    )
    return {"fp32": dataclasses.replace(base, classifier=fp32), "int8": dataclasses.replace(base, classifier=int8)}


class FreshTable:
    """The predictions table as the handler writes it, except that no stored record ever settles an image."""

    def __init__(self, table):
        self.table = table

    def get_many(self, images: list[str]) -> dict:
        return {}

    def put_if_newer(self, record: dict) -> bool:
        return self.table.put_if_newer(record)


STAGES = ("fetch", "decode", "preprocess", "infer", "write")


def stage_breakdown(events: list[dict], precision: str) -> dict[str, float]:
    """Milliseconds per image in each stage of process_event, one image at a time, S3 and DynamoDB emulated.

    The real code path with a one-thread pool, so that the stages add up to the batch's time; "other" is the
    rest (parsing, triage, bookkeeping). Fetch and write go to the local moto server, so they measure it too.
    """
    from concurrent.futures import ThreadPoolExecutor

    from imgclf import images
    from imgclf.inference import Classifier
    from imgclf.inference.model import LoadedModel
    from imgclf.settings import get_settings
    from imgclf_classifier import handler, service

    spent = dict.fromkeys(STAGES, 0.0)

    def timed(stage, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - started

        return wrapper

    patches = [(service, "read_object", "fetch"), (images, "decode", "decode"), (LoadedModel, "prepare", "preprocess"),
               (LoadedModel, "predict", "infer"), (FreshTable, "put_if_newer", "write")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    classifier = Classifier.from_settings(dataclasses.replace(get_settings(), model_precision=precision))
    classifier.model()
    with ThreadPoolExecutor(max_workers=1) as pool:
        base = handler.collaborators()
        deps = dataclasses.replace(base, classifier=classifier, table=FreshTable(base.table), pool=pool)
        process_event = service.process_event
        process_event(events[0], deps)  # warm-up
        for owner, name, stage in patches:
            setattr(owner, name, timed(stage, getattr(owner, name)))
        try:
            started, images_done = time.perf_counter(), 0
            for event in events[1:]:
                images_done += len(process_event(event, deps).outcomes)
            total = time.perf_counter() - started
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)
    per_image = {stage: 1000 * s / images_done for stage, s in spent.items()}
    per_image["other"] = 1000 * total / images_done - sum(per_image.values())
    return {stage: round(ms, 2) for stage, ms in per_image.items()}


def int8_agreement(paths: list[Path]) -> dict:
    """Top-1 agreement of int8 with fp32 on all the photos, and both accuracies on the labelled ants-bees ones."""
    fp32, int8 = models_at_both_precisions()
    batches = tensor_batches(fp32, paths)
    p32 = np.concatenate([fp32.model().backend.forward(b) for b in batches])
    p8 = np.concatenate([int8.model().backend.forward(b) for b in batches])
    classes = fp32.model().classes
    labelled = [i for i, p in enumerate(paths) if p.parent.name in classes]
    truth = np.array([classes.index(paths[i].parent.name) for i in labelled])
    acc32 = float(np.mean(p32[labelled].argmax(1) == truth))
    acc8 = float(np.mean(p8[labelled].argmax(1) == truth))
    return {"agreement": float(np.mean(p32.argmax(1) == p8.argmax(1))), "fp32_accuracy": acc32,
            "int8_accuracy": acc8, "accuracy_drop": acc32 - acc8, "labelled": len(labelled),
            "max_prob_diff": float(np.abs(p32 - p8).max())}


def pinned_to(cpus: set[int]) -> None:
    """Pin every thread of this process to the given CPUs (threads started later inherit it)."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def memory_table(events: list[dict], paths: list[Path]) -> list[dict]:
    """Per-image time and cost at Lambda's 1024, 2048 and 3008 MB, from runs pinned to 1 and 2 CPUs.

    Lambda gives a function memory / 1769 MB of CPU time, throttled every 100 ms, whatever CPUs it shows. The
    handler's own work (S3 and DynamoDB in memory) is timed with n CPUs and n onnxruntime threads; at a CPU
    share s, n busy threads run min(1, s / n) of the time, and each size takes the faster n.
    """
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.inference.backends import LAMBDA_MB_PER_VCPU
    from imgclf_classifier.service import process_event

    everything = os.sched_getaffinity(0)
    measured: dict[tuple[str, int], float] = {}
    try:
        for n in (1, 2):
            pinned_to(set(sorted(everything)[:n]))
            with ThreadPoolExecutor(max_workers=BATCH) as pool:
                own = in_memory_collaborators(events, paths, *models_at_both_precisions(threads=n), pool=pool)
                seconds = dict.fromkeys(own, 0.0)
                for i, event in enumerate(events):
                    for precision, deps in own.items():
                        started = time.perf_counter()
                        process_event(event, deps)
                        if i:
                            seconds[precision] += time.perf_counter() - started
            timed = sum(len(e["Records"]) for e in events[1:])
            for precision, s in seconds.items():
                measured[(precision, n)] = timed / s
    finally:
        pinned_to(everything)
    rows = []
    for memory in LAMBDA_MEMORY_MB:
        share = memory / LAMBDA_MB_PER_VCPU
        row = {"memory_mb": memory, "vcpu_share": round(share, 2)}
        for precision in ("fp32", "int8"):
            rate, threads = max((measured[(precision, n)] * min(1.0, share / n), n) for n in (1, 2))
            batch_s = BATCH / rate
            usd = 1000 / BATCH * (batch_s * memory / 1024 * GB_SECOND_USD + REQUEST_USD)
            row[precision] = {"threads": threads, "ms_per_image": round(1000 / rate, 1),
                              "usd_per_1000": round(usd, 5)}
        rows.append(row)
    print("measured images/s, own work: " + ", ".join(
        f"{precision} {n} CPU {rate:.1f}" for (precision, n), rate in sorted(measured.items())), flush=True)
    return rows


def int8_model(model_dir: Path) -> str:
    """Make sure model.int8.onnx is beside model.onnx; say where it came from."""
    check = (json.loads((model_dir / "model.json").read_text()).get("int8") or {}).get("reason", "no int8 check")
    if (model_dir / "model.int8.onnx").is_file():
        return f"the training job's ({check})"
    # The job kept it back (or predates int8): quantize it the job's way, to measure it all the same.
    script = ("import sys; from pathlib import Path; from imgclf_trainjob import quantize, preprocess; "
              "m = Path(sys.argv[1]); paths = sorted(Path(sys.argv[2]).glob('*/*.jpg')); "
              "x = preprocess.preprocess_files(paths[:: max(1, len(paths) // 100)][:100], int(sys.argv[3])); "
              "quantize.quantize(m / 'model.onnx', m / 'model.int8.onnx', x)")
    img_size = json.loads((model_dir / "model.json").read_text())["img_size"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "training_job")}
    subprocess.run([sys.executable, "-c", script, str(model_dir), str(DATASETS / "ants-bees" / "train"),
                    str(img_size)], env=env, check=True)
    return f"quantized by the bench; the training job's check: {check}"


def cold_start(script: str, args: list[str], env: dict[str, str]) -> float:
    """Seconds from starting a fresh Python process to its first prediction."""
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, cwd=REPO_ROOT
    )
    if done.returncode != 0:
        sys.exit(f"cold start run failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1]) - started


def imgclf_cold_start(event: dict, env: dict[str, str]) -> dict[str, float]:
    """(b)'s cold start in a fresh process, split into the stages of the classifier's init and its first batch."""
    started = time.time()
    done = subprocess.run([sys.executable, "-c", IMGCLF_COLD, json.dumps(event)], env=env, capture_output=True,
                          text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        sys.exit(f"cold start run failed:\n{done.stderr[-3000:]}")
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    load = marks["load"]
    stages = {
        "interpreter": marks["started"] - started,
        "imports": marks["imported"] - marks["started"],
        **{stage: load[stage] for stage in ("registry", "download", "checksum", "session")},
    }
    stages["other_init"] = marks["loaded"] - marks["imported"] - sum(load.values())
    stages["first_batch"] = marks["done"] - marks["loaded"]
    return {"precision": marks["precision"], "init_s": marks["loaded"] - started, "total_s": marks["done"] - started,
            "stages": {stage: round(s, 3) for stage, s in stages.items()}}


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
    parser.add_argument("--no-memory-table", action="store_true", help="skip the 1 and 2 CPU runs of the cost table")
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
    print(f"int8 model: {int8_model(model_dir)}", flush=True)

    with LocalAws(workdir) as stack:
        publish(stack, model_dir, "bench-1")
        events = sqs_batches(upload(stack, paths, "uploads/bench/"))
        per_s = throughputs(events, paths)
        stages = {precision: stage_breakdown(events, precision) for precision in ("fp32", "int8")}
        int8 = int8_agreement(paths)
        table = [] if args.no_memory_table else memory_table(events, paths)
        cold_event = sqs_batches(upload(stack, paths[:1], "uploads/cold/"))[0]
        # The cold start as deployed: MODEL_PRECISION=auto, which takes the int8 model.
        cold_env = {**os.environ, **stack.environment, "MODEL_CACHE_DIR": str(workdir / "cold-cache"),
                    "MODEL_PRECISION": "auto"}
        cold = imgclf_cold_start(cold_event, cold_env)
    imgclf, floor, own = per_s["imgclf"], per_s["floor"], per_s["own"]
    print(f"(b) imgclf handler, onnx backend, fp32: {imgclf:.1f} images/s", flush=True)
    print(f"    imgclf's own work (S3 and DynamoDB in memory): fp32 {own:.1f} images/s, {floor / own - 1:.0%} over "
          f"(c); int8 {per_s['int8_own']:.1f} images/s, {per_s['int8_floor'] / per_s['int8_own'] - 1:.0%} over "
          f"int8 (c)", flush=True)
    print(f"(c) onnxruntime forward pass alone: fp32 {floor:.1f} images/s, int8 {per_s['int8_floor']:.1f} images/s",
          flush=True)
    print("ms per image, one image at a time (fetch and write through the local moto server):", flush=True)
    for precision, split in stages.items():
        print(f"    {precision}: " + ", ".join(f"{stage} {ms:.2f}" for stage, ms in split.items()), flush=True)
    print(f"int8 vs fp32: top-1 agreement {int8['agreement']:.3f} on {len(paths)} photos; accuracy on the "
          f"{int8['labelled']} labelled ones fp32 {int8['fp32_accuracy']:.3f}, int8 {int8['int8_accuracy']:.3f}; "
          f"largest probability difference {int8['max_prob_diff']:.3f}", flush=True)
    for row in table:
        print(f"Lambda {row['memory_mb']} MB ({row['vcpu_share']} vCPU): " + "; ".join(
            f"{precision} {row[precision]['ms_per_image']} ms/image with {row[precision]['threads']} thread(s), "
            f"${row[precision]['usd_per_1000']:.5f} per 1000 images" for precision in ("fp32", "int8")), flush=True)
    baseline = baseline_per_s(model_dir, paths)
    print(f"(a) load_learner + learn.predict: {baseline:.1f} images/s", flush=True)
    baseline_args = [str(model_dir / "export.pkl"), str(paths[0])]
    baseline_cold = cold_start(BASELINE_COLD, baseline_args, dict(os.environ))
    imgclf_cold = cold["total_s"]
    print(f"cold start to first prediction: (a) {baseline_cold:.2f} s, (b) {imgclf_cold:.2f} s at {cold['precision']};"
          f" (b)'s init {cold['init_s']:.2f} s: " + ", ".join(f"{k} {v:.3f}" for k, v in cold["stages"].items()),
          flush=True)
    from tests.support.deps import deps_mb  # the repository root is on the venv's path (make venv)

    deps = deps_mb()
    print(f"classifier image dependencies, installed and pruned: {deps:.1f} MiB", flush=True)
    agreement = reduced_decode_agreement(model_dir, paths)
    print(f"reduced JPEG decode vs exact: {json.dumps(agreement)}", flush=True)

    ratio, overhead, own_overhead = imgclf / baseline, floor / imgclf - 1, floor / own - 1
    speedup = per_s["int8_own"] / own
    print(
        f"(b)/(a) = {ratio:.2f} (target >= 3); (b) overhead over (c) = {overhead:.0%}; own work over (c) = "
        f"{own_overhead:.0%} (target <= 30%); cold (b)/(a) = {imgclf_cold / baseline_cold:.2f} (target <= 0.2); "
        f"int8 speedup {speedup:.2f} (target >= 1.7), agreement {int8['agreement']:.3f} (target >= 0.99), "
        f"accuracy drop {int8['accuracy_drop']:.3f} (target <= 0.005)"
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
                "own_per_s": round(own, 2),
                "own_overhead": round(own_overhead, 3),
                "int8_floor_per_s": round(per_s["int8_floor"], 2),
                "int8_own_per_s": round(per_s["int8_own"], 2),
                "int8_speedup": round(speedup, 2),
                "int8_top1_agreement": round(int8["agreement"], 4),
                "int8_accuracy_drop": round(int8["accuracy_drop"], 4),
                "cold_init_s": round(cold["init_s"], 2),
                "deps_mb": round(deps, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
