"""`imgclf reviewer add|list|remove`: the accounts of the people who sign in to the review page."""

from __future__ import annotations

import argparse
import sys

from imgclf import aws
from imgclf.settings import get_settings
from imgclf_api.sign_in import add_reviewer, list_reviewers, read_sign_in, remove_reviewer
from imgclf_cli.console import guarded, log


def _pool_id() -> str:
    """The reviewer pool of the stack, from the parameter that describes its sign-in."""
    settings = get_settings()
    settings.require("sign_in_parameter")
    return read_sign_in(aws.client("ssm"), settings.sign_in_parameter, endpoint="").user_pool_id


def _add(args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
    added = add_reviewer(aws.client("cognito-idp"), _pool_id(), args.email, password=password or None)
    log.info("reviewer %s added (%s)%s", added["email"], added["status"],
             "" if password else ": Cognito emails a temporary password, to change on the hosted sign-in page",
             extra={"reviewer": added})
    return 0


def _list(args: argparse.Namespace) -> int:
    reviewers = list_reviewers(aws.client("cognito-idp"), _pool_id())
    for reviewer in reviewers:
        log.info("%-40s %-22s %s", reviewer["email"], reviewer["status"],
                 "enabled" if reviewer["enabled"] else "disabled", extra={"reviewer": reviewer})
    if not reviewers:
        log.info("no reviewers yet: imgclf reviewer add EMAIL", extra={"count": 0})
    return 0


def _remove(args: argparse.Namespace) -> int:
    remove_reviewer(aws.client("cognito-idp"), _pool_id(), args.email)
    log.info("reviewer %s removed", args.email, extra={"reviewer": {"email": args.email}})
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Mount `reviewer` into the `imgclf` command line."""
    parser = sub.add_parser("reviewer", help="the accounts that sign in to the review page (the reviewer pool)")
    commands = parser.add_subparsers(dest="reviewer_command", required=True, metavar="ACTION")
    add = commands.add_parser("add", help="make a reviewer's account")
    add.add_argument("email", metavar="EMAIL")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password", metavar="PASSWORD",
                        help="a permanent password (the local stack, tests); otherwise Cognito emails a temporary one")
    secret.add_argument("--password-stdin", action="store_true", help="read the permanent password from stdin")
    add.set_defaults(func=guarded(_add))
    listing = commands.add_parser("list", help="every reviewer's account and status")
    listing.set_defaults(func=guarded(_list))
    remove = commands.add_parser("remove", help="delete a reviewer's account")
    remove.add_argument("email", metavar="EMAIL")
    remove.set_defaults(func=guarded(_remove))
