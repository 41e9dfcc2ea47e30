"""template.yaml as aws-sam-translator transforms it: the plain CloudFormation that checkov and the rehearsal read."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from imgclf_local.template import NO_VALUE, REPO_ROOT, StackTemplate, load_template

# sam package uploads code here; the rehearsal creates the bucket and these keys in moto.
ARTIFACTS_BUCKET = "imgclf-artifacts"
IMAGE_REPOSITORY_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/imgclf"

_NO_VALUE = {"Ref": "AWS::NoValue"}


class OfflinePolicyLoader(ManagedPolicyLoader):
    """SAM looks up managed policy ARNs in IAM; the template uses none, so answer without a network call."""

    def load(self):
        return {}


def transformed_template(parameters: dict[str, str] | None = None, template: dict | None = None) -> dict:
    """The stack's CloudFormation after both transforms, for these parameter values (defaults for the rest)."""
    # SAM takes the region from the AWS environment, as `sam validate` does (NoRegionFound without one), and
    # raises InvalidDocumentException for a template it rejects.
    parameters = {k: str(v) for k, v in (parameters or {}).items()}
    source = copy.deepcopy(template) if template is not None else load_template()
    extended = packaged(language_extensions(source, parameters))
    output = transform(extended, dict(parameters), OfflinePolicyLoader(iam_client=None))
    carry_suppressions(extended, output)
    return output


def language_extensions(template: dict, parameters: dict[str, str] | None = None) -> dict:
    """Resolve what AWS::LanguageExtensions resolves before SAM runs: Fn::If on parameter conditions."""
    # Only the branch is chosen: the intrinsics in it stay for CloudFormation, so references keep their
    # dependencies and ARNs the deploying account. AWS::NoValue removes its key or list item, as CloudFormation does.
    conditions = StackTemplate(template, parameters=parameters).conditions

    def walk(node: Any) -> Any:
        if node == _NO_VALUE:
            return NO_VALUE
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, when_true, when_false = node["Fn::If"]
                return walk(when_true if conditions[name] else when_false)
            return {k: v for k, v in ((k, walk(v)) for k, v in node.items()) if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (walk(item) for item in node) if v is not NO_VALUE]
        return node

    transforms = template["Transform"] if isinstance(template["Transform"], list) else [template["Transform"]]
    out = dict(template, Resources=walk(template["Resources"]))
    out["Transform"] = [t for t in transforms if t != "AWS::LanguageExtensions"]
    return out


def packaged(template: dict) -> dict:
    """Replace local code paths the way `sam package` does, so the translator accepts them."""
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props["ImageUri"] = f"{IMAGE_REPOSITORY_URI}:{logical_id.lower()}"
            else:
                props["CodeUri"] = f"s3://{ARTIFACTS_BUCKET}/{props['CodeUri'].strip('/')}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{ARTIFACTS_BUCKET}/{props['ContentUri'].strip('/')}.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((REPO_ROOT / props.pop("DefinitionUri")).read_text())
    return template


def carry_suppressions(source: dict, output: dict) -> None:
    """Give the resources SAM generates from a resource the checkov suppressions written on that resource."""
    for logical_id, resource in source["Resources"].items():
        skips = resource.get("Metadata", {}).get("checkov", {}).get("skip")
        if not skips or not resource["Type"].startswith("AWS::Serverless::"):
            continue
        for generated_id, generated in output["Resources"].items():
            if generated_id.startswith(logical_id):
                checkov = generated.setdefault("Metadata", {}).setdefault("checkov", {})
                known = {s["id"] for s in checkov.setdefault("skip", [])}
                checkov["skip"] += [s for s in skips if s["id"] not in known]


def _parameter_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected Key=Value, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write template.yaml as aws-sam-translator transforms it.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parameter-overrides", nargs="+", type=_parameter_override, default=[], metavar="K=V",
                        help="parameter values, as for sam deploy; the template's defaults for the rest")
    args = parser.parse_args(argv)
    try:
        output = transformed_template(dict(args.parameter_overrides))
    except InvalidDocumentException as exc:
        print("\n".join(str(cause) for cause in exc.causes), file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # No default=: a value JSON cannot write is a bug here, not something to print as a placeholder.
    args.out.write_text(json.dumps(output, indent=1))
    return 0
