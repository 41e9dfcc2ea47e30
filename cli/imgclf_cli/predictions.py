"""`imgclf predictions` and `imgclf classify`: what the classifier recorded, and what a model says of local files."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgclf import images
from imgclf.errors import ImageRejected
from imgclf.inference import LoadedModel, ModelStore
from imgclf.settings import get_settings
from imgclf_api import predictions as listing
from imgclf_api.errors import ApiError
from imgclf_cli.console import guarded, log

PAGE = 100  # the API's largest page


def _predictions(args: argparse.Namespace) -> int:
    """The newest predictions (or the newest unknown ones), through the listing GET /predictions serves."""
    settings = get_settings()
    settings.require("predictions_table", "data_bucket")
    verdict = "unknown" if args.unknown else None
    shown, token = 0, None
    while shown < args.limit:
        # A verdict filter may leave pages short or empty; the token still goes on, so read until enough or done.
        items, token = listing.list_predictions(settings.predictions_table, settings.data_bucket,
                                                limit=PAGE, token=token, verdict=verdict)
        for item in items[: args.limit - shown]:
            _say_prediction(item)
            shown += 1
        if not token:
            break
    if not shown:
        log.info("no %spredictions yet", "unknown " if verdict else "", extra={"count": 0})
    return 0


def verdict_text(prediction: dict) -> str:
    """One prediction's answer in a line: "label bees 0.970", "unknown ants 0.612 (out_of_distribution, ood 1.84)"."""
    text = f"{prediction.get('verdict') or 'label'} {prediction.get('label', '')} {prediction.get('confidence', 0):.3f}"
    notes = [prediction["unknown_reason"]] if prediction.get("unknown_reason") else []
    if prediction.get("ood_score") is not None:
        notes.append(f"ood {prediction['ood_score']:.2f}")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _say_prediction(item: dict) -> None:
    outcome = verdict_text(item) if item.get("status") == "classified" else f"rejected {item.get('reason', '')}"
    log.info("%s %s  %s", item.get("processed_at", ""), item["key"], outcome, extra={"prediction": item})


def load_model(version: str | None) -> LoadedModel:
    """The given registered version, or the active one, fetched and verified as the classifier does."""
    store = ModelStore.from_settings(get_settings())
    return store.load_version(version) if version else store.current()


def _classify(args: argparse.Namespace) -> int:
    """Classify local files one by one; a file that is no usable image is reported and makes the exit status 1."""
    settings = get_settings()
    model = load_model(args.model)
    status = 0
    for path in args.paths:
        try:
            image = images.decode(Path(path).read_bytes(), max_pixels=settings.max_image_pixels,
                                  min_side=settings.min_image_side)
        except (ImageRejected, OSError) as exc:
            reason = exc.reason if isinstance(exc, ImageRejected) else "unreadable"
            text = exc.message if isinstance(exc, ImageRejected) else (exc.strerror or str(exc))
            log.info("%s  rejected %s: %s", path, reason, text,
                     extra={"file": path, "status": "rejected", "reason": reason, "detail": text})
            status = 1
            continue
        prediction = model.classify([image])[0].as_dict()
        log.info("%s  %s", path, verdict_text(prediction), extra={"file": path, "status": "classified", **prediction})
    return status


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Mount `predictions` and `classify` into the `imgclf` command line."""
    listed = sub.add_parser("predictions", help="the newest predictions of uploaded images, newest first")
    listed.add_argument("--unknown", action="store_true", help="only those whose verdict is unknown")
    listed.add_argument("--limit", type=int, default=20, metavar="N", help="at most N predictions (default 20)")
    listed.set_defaults(func=guarded(_predictions, ApiError))

    classify = sub.add_parser("classify", help="classify local image files with the active model or a version")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="image files")
    classify.add_argument("--model", metavar="VERSION", help="a registered version instead of the active one")
    classify.set_defaults(func=guarded(_classify, ApiError))

    for parser in (listed, classify):
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="one JSON object a line")
