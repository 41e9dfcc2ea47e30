"""Latency of POST /classify on the embedded stack against the inference backend called directly.

Run from the repository root: .venv/bin/python bench/api.py [--requests 200] [--img-size 224]

A resnet18 trained by training_job/train.py (one epoch from scratch: the weights do not matter for timing, the
input size does) is promoted on a fresh local stack. The API side posts real photos from the shared ants-bees
set, raw, one request at a time over a kept-alive HTTP connection: HTTP, the API Gateway event, base64,
routing, validation, decoding and inference. The direct side decodes the same bytes and runs the same loaded
model in-process; the two alternate image by image. The last line printed is one JSON object with the API's
p50 and p95, the direct p50 and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from imgclf import images
from imgclf.inference import Classifier
from imgclf.settings import get_settings
from tests.support import models
from tests.support.images import ANTS_BEES, real_photos

WARMUP = 5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests on each side")
    parser.add_argument("--img-size", type=int, default=224, help="the model's input size")
    parser.add_argument("--workdir", type=Path, help="keep the trained model here and reuse it next time")
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(url: str, bodies: list[bytes], n: int) -> tuple[list[float], list[float]]:
    """Milliseconds per POST /classify and per direct decode and inference of the same bytes, interleaved.

    Alternating the two sides, image by image, gives both the same machine load: on a shared machine
    a phase-by-phase comparison measures the neighbours as much as the API.
    """
    settings = get_settings()
    model = Classifier.from_settings(settings).model()

    def direct(body: bytes) -> None:
        image = images.decode(body, max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
        model.classify([image])

    api_ms, direct_ms = [], []
    with requests.Session() as session:

        def post(body: bytes) -> None:
            response = session.post(url, data=body, headers={"Content-Type": "image/jpeg"}, timeout=120)
            response.raise_for_status()

        for body in bodies[:WARMUP]:  # the first request loads the model in the function
            post(body)
            direct(body)
        for i in range(n):
            body = bodies[i % len(bodies)]
            for side, timings in ((post, api_ms), (direct, direct_ms)):
                started = time.perf_counter()
                side(body)
                timings.append((time.perf_counter() - started) * 1000)
    return api_ms, direct_ms


def main(argv=None) -> int:
    args = parse_args(argv)
    photos = real_photos("valid")
    if not photos:
        print(f"no photos in {ANTS_BEES / 'valid'}", file=sys.stderr)
        return 1
    bodies = [path.read_bytes() for path in photos]
    with tempfile.TemporaryDirectory(prefix="imgclf-bench-api-") as scratch:
        workdir = args.workdir or Path(scratch) / "model"
        print(f"training a resnet18 at {args.img_size} px for the benchmark (one epoch)...", flush=True)
        model_dir = models.train_tiny_model(workdir, img_size=args.img_size)
        with models.stack_with_model(model_dir, Path(scratch) / "cache") as stack:
            api, direct = measure(f"{stack.api.url}/classify", bodies, args.requests)
    result = {
        "p50_ms": round(statistics.median(api), 2),
        "p95_ms": round(percentile(api, 95), 2),
        "direct_p50_ms": round(statistics.median(direct), 2),
    }
    result["overhead_ratio"] = round(result["p50_ms"] / result["direct_p50_ms"], 3)
    print(f"{len(photos)} photos, {args.requests} requests each side, {args.img_size} px resnet18")
    print(f"API    p50 {result['p50_ms']:8.2f} ms   p95 {result['p95_ms']:8.2f} ms")
    print(f"direct p50 {result['direct_p50_ms']:8.2f} ms   p95 {percentile(direct, 95):8.2f} ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
