"""`imgclf audit`: what a training run's whole-dataset audit found, less the images already decided."""

from __future__ import annotations

import argparse

from imgclf import aws
from imgclf.decisions import Decisions
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_api import audit
from imgclf_api.errors import ApiError
from imgclf_cli.console import guarded, log


def _audit(args: argparse.Namespace) -> int:
    """The findings of a run's audit.json, through the listing GET /training-runs/{id}/audit serves."""
    settings = get_settings()
    settings.require("runs_table", "data_bucket")
    run = Runs(settings.runs_table).get(args.run_id)
    decisions = Decisions(settings.decisions_table) if settings.decisions_table else None
    found = audit.audit_findings(aws.client("s3"), settings.data_bucket, run, decisions=decisions, kind=args.kind,
                                 label=args.label, models_root=settings.models_prefix,
                                 datasets_root=settings.dataset_prefix)
    findings = found["findings"][: args.limit]
    for finding in findings:
        log.info("%s", finding_text(finding), extra={"finding": _plain(finding)})
    counts = found["summary"].get("counts") or {}
    log.info("%d of %d finding(s) shown; %d decided already; the audit counted %s", len(findings),
             len(found["findings"]), found["decided"],
             ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "nothing",
             extra={"shown": len(findings), "open": len(found["findings"]), "decided": found["decided"],
                    "counts": counts})
    return 0


def finding_text(finding: dict) -> str:
    """One finding in a line: kind, label, suggested label, score and path."""
    score = finding.get("score")
    notes = []
    if finding.get("kind") == "near_duplicate" and finding.get("group") is not None:
        notes.append(f"group {finding['group']} of {finding.get('group_size', '?')}"
                     + (", cross-label" if finding.get("cross_label") else ""))
    return (f"{finding.get('kind', ''):14} {finding.get('label', ''):14} -> {finding.get('suggested_label') or '-':14} "
            f"{score if isinstance(score, int) else format(score or 0.0, '.3f'):>7}  "
            f"{finding.get('current_key') or finding.get('s3_key') or finding.get('path', '')}"
            + (f"  ({'; '.join(notes)})" if notes else ""))


def _plain(finding: dict) -> dict:
    """A finding without its presigned link, which is long and expires."""
    return {k: v for k, v in finding.items() if k != "thumbnail_url"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Mount `audit` into the `imgclf` command line."""
    parser = sub.add_parser("audit", help="what a training run's whole-dataset audit found (label errors, outliers, "
                                          "near-duplicates), less the images already decided")
    parser.add_argument("run_id", metavar="RUN_ID", help="the training run")
    parser.add_argument("--kind", choices=audit.KINDS, help="only findings of this kind")
    parser.add_argument("--label", metavar="LABEL", help="only images with this label when the run trained")
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="at most N findings (default 50)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object a line")
    parser.set_defaults(func=guarded(_audit, ApiError))
