"""`imgclf collect`: build a dataset from the command line, with a progress bar."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TextIO

from imgclf.errors import ImgclfError
from imgclf_collector.pipeline import Progress, collect
from imgclf_collector.sources import RETIREMENT_NOTE, SOURCES

EXAMPLE = (
    'imgclf collect --dataset obama --labels happy sad dancing --query "barack obama {label}" --per-label 150'
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `collect` to an argparse sub-parsers object; the parsed args carry func=run."""
    parser = subparsers.add_parser(
        "collect",
        help="collect labelled images into the dataset bucket",
        description="Search or import images for each label, validate and de-duplicate them, and store them "
        "as datasets/{dataset}/{label}/*.jpg with a manifest. Re-running tops a label up to --per-label.",
        epilog=f"example: {EXAMPLE}\n\nbing: {RETIREMENT_NOTE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. obama")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="labels to collect; folder, s3 and urls sources default to every label they hold",
    )
    parser.add_argument(
        "--query", default="{label}", help='search query; "{label}" is replaced by each label'
    )
    parser.add_argument(
        "--per-label", type=int, default=150, help="images each label should have (default 150)"
    )
    parser.add_argument(
        "--source", choices=SOURCES, default="ddg", help="where candidates come from (default ddg)"
    )
    parser.add_argument(
        "--from",
        dest="location",
        metavar="PATH_OR_URI",
        help="the folder (folder), s3://bucket/prefix/ (s3) or label,url list (urls) to import",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="source option, e.g. market=en-US (bing) or region=uk-en (ddg); repeatable",
    )
    parser.add_argument("--bucket", help="data bucket (default: DATA_BUCKET)")
    parser.add_argument("--workers", type=int, help="concurrent downloads (default: COLLECTOR_WORKERS or 16)")
    parser.add_argument("--max-side", type=int, help="longest side of stored images in px (default 1024)")
    parser.add_argument("--run", help="run name for the reports (default: a timestamp)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the sub-command: 0 when every label is complete, 1 when some fell short, 2 on an error."""
    try:
        options = _source_options(args)
        bar = None if args.quiet else ProgressBar(sys.stderr)
        summary = collect(
            args.dataset,
            args.labels,
            args.query,
            args.per_label,
            args.source,
            source_options=options,
            bucket=args.bucket,
            run=args.run,
            workers=args.workers,
            max_side=args.max_side,
            progress=bar,
        )
        if bar:
            bar.finish()
    except (ImgclfError, ValueError, OSError) as exc:
        print(f"imgclf collect: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print_summary(summary, sys.stdout)
    return 0 if all(label["complete"] for label in summary["labels"]) else 1


def print_summary(summary: dict, out: TextIO) -> None:
    """One line per label: images now held, accepted this run, rejections by reason, and the report."""
    print(f"dataset {summary['dataset']}, run {summary['run']}", file=out)
    for label in summary["labels"]:
        reasons = ", ".join(f"{reason} {n}" for reason, n in label["rejected_by_reason"].items()) or "none"
        print(
            f"  {label['label']:<20} {label['images']:>4}/{label['requested']:<4} images "
            f"(+{label['accepted']} new; rejected: {reasons})",
            file=out,
        )
        print(f"  {'':<20} report: {label['report_key']}", file=out)
    print(f"manifest: {summary['manifest_key']}", file=out)


class ProgressBar:
    """One line for the whole run, redrawn in place on a terminal: labels run side by side."""

    width = 30

    def __init__(self, out: TextIO):
        self._out = out
        self._tty = out.isatty()
        self._labels: dict[str, Progress] = {}
        self._lock = threading.Lock()  # labels report from their own threads

    def __call__(self, progress: Progress) -> None:
        with self._lock:
            self._labels[progress.label] = progress
            if self._tty:
                self._out.write("\r" + self._line())
                self._out.flush()

    def finish(self) -> None:
        """End the line (on a terminal) or print it once (in a log)."""
        with self._lock:
            if self._labels:
                self._out.write(("" if self._tty else self._line()) + "\n")
                self._out.flush()
            self._labels = {}

    def _line(self) -> str:
        wanted = sum(p.wanted for p in self._labels.values())
        done = sum(min(p.accepted, p.wanted) for p in self._labels.values())
        rejected = sum(p.rejected for p in self._labels.values())
        filled = self.width * done // wanted if wanted else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {done}/{wanted} new images, {rejected} rejected, {len(self._labels)} labels"


def _source_options(args: argparse.Namespace) -> dict:
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, not {item!r}")
        options[key.strip()] = value.strip()
    if args.location:
        options["uri" if args.location.startswith("s3://") else "path"] = args.location
    if args.source in {"folder", "s3", "urls"} and not args.location:
        raise ValueError(f"--source {args.source} needs --from")
    return options

