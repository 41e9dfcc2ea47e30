"""Collector throughput: imgclf's collector against fastai's download_images + verify_images, same URLs.

A server on 127.0.0.1 serves 300 real photos (the first 60 of each flowers class, sorted by name), adding
50 ms to every response, as a distant image host would. imgclf downloads, validates, de-duplicates,
normalises and uploads them to S3 (moto's ThreadedMotoServer on a free port, through AWS_ENDPOINT_URL);
fastai downloads them to a folder and then verifies them. Both servers run in their own processes, so
neither side's client competes with them for the interpreter lock, as with a real remote host and S3.

Run from the repository root: .venv/bin/python bench/collect.py
The last line printed is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FLOWERS = REPO_ROOT.parent / "shared" / "datasets" / "flowers"
PER_CLASS = 60
LATENCY_S = 0.05
BUCKET = "imgclf-bench"


def pick_photos(root: Path, per_class: int) -> list[tuple[str, str]]:
    """(label, path relative to root) for the first `per_class` files of every class folder, sorted."""
    photos = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p.name for p in folder.iterdir() if p.is_file())[:per_class]
        photos += [(folder.name, f"{folder.name}/{name}") for name in files]
    return photos


def serve_photos(root: str, paths: list[str], latency: float, ports) -> None:
    """Child process: serve the photos from memory over keep-alive HTTP/1.1, each response delayed."""
    files = {f"/{path}": (Path(root) / path).read_bytes() for path in paths}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            time.sleep(latency)
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # clients opening many connections at once must not be refused

    httpd = Server(("127.0.0.1", 0), Handler)
    ports.put(httpd.server_port)
    httpd.serve_forever()


def serve_s3(ports) -> None:
    """Child process: moto's S3 on a free port of 127.0.0.1."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request would swamp the output

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    ports.put(server.get_host_and_port()[1])
    threading.Event().wait()


def start(target, *args) -> tuple[multiprocessing.Process, int]:
    """Start a server process and wait for the port it listens on."""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    process = context.Process(target=target, args=(*args, ports), daemon=True)
    process.start()
    return process, ports.get(timeout=60)


def max_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class WithoutImageUploads:
    """An S3 client that drops the image PUTs and passes everything else on: a diagnostic only."""

    def __init__(self, s3):
        self._s3 = s3

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def put_object(self, **kwargs):
        if kwargs["Key"].endswith(".jpg"):
            return {}
        return self._s3.put_object(**kwargs)


def run_imgclf(
    rows: list[tuple[str, str]], dataset: str, *, trace: bool = False, upload: bool = True
) -> dict:
    """Collect every URL with imgclf's collector into the moto bucket; returns timing and memory."""
    from imgclf import aws
    from imgclf.settings import Settings
    from imgclf_collector.pipeline import collect
    from imgclf_collector.sources import UrlListSource

    s3 = aws.client("s3") if upload else WithoutImageUploads(aws.client("s3"))
    labels = list(dict.fromkeys(label for label, _ in rows))
    settings = Settings(data_bucket=BUCKET, allow_private_addresses=True)
    rss_before = max_rss_mb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    summary = collect(
        dataset, labels, per_label=PER_CLASS, source=UrlListSource(rows), settings=settings, s3=s3
    )
    elapsed = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    return {
        "elapsed": elapsed,
        "accepted": summary["accepted"],
        "rejected": summary["rejected"],
        "rss_delta_mb": max_rss_mb() - rss_before,
        "traced_peak_mb": traced_peak,
    }


def run_fastai(urls: list[str]) -> dict:
    """fastai's download_images (its defaults: 8 threads, 4 s timeout) then verify_images, timed together."""
    from fastai.vision.utils import download_images, get_image_files, verify_images

    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()  # fastai's progress bars go to the discarded stdout
        download_images(Path(folder), urls=urls, max_pics=len(urls))
        files = get_image_files(folder)
        failed = verify_images(files)
        elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "downloaded": len(files), "failed": len(failed)}


def s3_ceiling(size: int, workers: int, count: int = 300) -> float:
    """PUTs per second the local S3 accepts from one client, for context: every stored image costs one."""
    from concurrent.futures import ThreadPoolExecutor

    from imgclf import aws

    s3, body = aws.client("s3"), os.urandom(size)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: s3.put_object(Bucket=BUCKET, Key=f"ceiling/{n}", Body=body), range(count)))
    return count / (time.perf_counter() - started)


def median(values: list[float]) -> float:
    return statistics.median(values)


def rates(results: list[dict], n: int) -> str:
    """The images per second of each run, for the record."""
    return ", ".join(f"{n / result['elapsed']:.0f}" for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating (median kept)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the untimed tracemalloc pass")
    args = parser.parse_args()
    if not FLOWERS.is_dir():
        sys.exit(f"flowers data set not found at {FLOWERS}")
    photos = pick_photos(FLOWERS, PER_CLASS)
    servers = []
    try:
        image_server, image_port = start(serve_photos, str(FLOWERS), [p for _, p in photos], LATENCY_S)
        s3_server, s3_port = start(serve_s3)
        servers = [image_server, s3_server]
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
        )
        from imgclf import aws
        from imgclf.settings import Settings

        aws.reset()
        aws.client("s3").create_bucket(Bucket=BUCKET)
        rows = [(label, f"http://127.0.0.1:{image_port}/{path}") for label, path in photos]
        n = len(rows)
        workers = Settings().collector_workers
        print(
            f"{n} photos ({PER_CLASS} per class x {n // PER_CLASS} classes), {LATENCY_S * 1000:.0f} ms "
            f"added per response; S3 = moto at 127.0.0.1:{s3_port}; {args.repeat} runs each, alternating"
        )

        # imgclf runs first, so its ru_maxrss delta is not hidden by the peak of importing fastai (torch).
        mine, theirs = [], []
        for attempt in range(args.repeat):
            mine.append(run_imgclf(rows, f"flowers-bench-{attempt}"))
            theirs.append(run_fastai([url for _, url in rows]))
        imgclf_per_s = median([n / r["elapsed"] for r in mine])
        fastai_per_s = median([n / r["elapsed"] for r in theirs])
        ratio = imgclf_per_s / fastai_per_s
        peak_mb = mine[0]["rss_delta_mb"]

        print(
            f"imgclf collector : {imgclf_per_s:6.1f} images/s (runs: "
            f"{rates(mine, n)}); {mine[0]['accepted']} stored, "
            f"{mine[0]['rejected']} rejected; download, validate, de-duplicate, normalise, upload; "
            f"{workers} workers"
        )
        print(
            f"fastai           : {fastai_per_s:6.1f} images/s (runs: "
            f"{rates(theirs, n)}); {theirs[0]['downloaded']} "
            f"downloaded, {theirs[0]['failed']} failed verification; download_images + verify_images"
        )
        print(f"ratio            : {ratio:.2f}x fastai's throughput")
        print(f"imgclf memory    : +{peak_mb:.1f} MiB peak RSS (ru_maxrss delta over the first imgclf run)")
        if not args.no_tracemalloc:
            traced = run_imgclf(rows, "flowers-bench-traced", trace=True)
            print(
                f"                   {traced['traced_peak_mb']:.1f} MiB Python heap peak (tracemalloc, "
                f"separate untimed run; Pillow's pixel buffers are not traced)"
            )
        unsent = run_imgclf(rows, "flowers-bench-unsent", upload=False)
        print(
            f"diagnostic       : {n / unsent['elapsed']:.0f} images/s for imgclf with the image PUTs dropped "
            f"(everything else the same)"
        )
        ceiling = s3_ceiling(40_000, workers)
        print(
            f"context          : the local S3 took {ceiling:.0f} PUTs/s from one client with {workers} "
            f"threads on this machine; each stored image is one PUT"
        )
        print(
            json.dumps(
                {
                    "imgclf_per_s": round(imgclf_per_s, 1),
                    "fastai_per_s": round(fastai_per_s, 1),
                    "ratio": round(ratio, 2),
                    "imgclf_peak_mb": round(peak_mb, 1),
                }
            )
        )
    finally:
        for process in servers:
            process.terminate()


if __name__ == "__main__":
    main()
