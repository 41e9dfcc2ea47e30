"""Write template.yaml as aws-sam-translator transforms it, for checks that read plain CloudFormation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
from imgclf_local.template import StackTemplate, load_template  # noqa: E402


class OfflinePolicyLoader(ManagedPolicyLoader):
    """SAM looks up managed policy ARNs in IAM; the template uses none, so answer without a network call."""

    def load(self):
        return {}


def language_extensions(template: dict) -> dict:
    """Resolve what AWS::LanguageExtensions resolves before SAM runs: Fn::If on parameter conditions."""
    resolver = StackTemplate(template)

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                return walk(resolver.resolve(node))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    transforms = template["Transform"]
    out = dict(template, Resources=walk(template["Resources"]))
    out["Transform"] = [t for t in transforms if t != "AWS::LanguageExtensions"]
    return out


def packaged(template: dict) -> dict:
    """Replace local code paths the way `sam package` does, so the translator accepts them."""
    root = Path(__file__).resolve().parents[1]
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props["ImageUri"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/imgclf:{logical_id.lower()}"
            else:
                props["CodeUri"] = f"s3://imgclf-artifacts/{props['CodeUri'].strip('/')}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://imgclf-artifacts/{props['ContentUri'].strip('/')}.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((root / props.pop("DefinitionUri")).read_text())
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    template = packaged(language_extensions(load_template()))
    # Function Fn::If values stay intrinsic in the output, as CloudFormation would evaluate them.
    try:
        output = transform(template, {}, OfflinePolicyLoader(iam_client=None))
    except InvalidDocumentException as exc:
        print("\n".join(str(cause) for cause in exc.causes), file=sys.stderr)
        return 1
    carry_suppressions(template, output)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=1, default=str))
    return 0


if __name__ == "__main__":
    _ = boto3  # imported so a missing boto3 fails here, not deep inside the translator
    sys.exit(main())
