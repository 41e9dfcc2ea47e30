"""The SAM-transformed template is the one that deploys: no placeholders, NoValue removed, overrides applied."""

from __future__ import annotations

import json

import pytest

from imgclf_local.sam_transform import language_extensions, main, transformed_template
from imgclf_local.template import StackTemplate, TemplateError, load_template

RAW = load_template()


def _values(node):
    """Every scalar of a template fragment, keys included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item)
    else:
        yield node


def _fn_ifs(node, path=()):
    """(path, Fn::If arguments) of every Fn::If in a template fragment."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            yield path, node["Fn::If"]
            return
        for key, value in node.items():
            yield from _fn_ifs(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _fn_ifs(item, (*path, index))


def _lookup(node, path):
    for step in path:
        node = node[step]
    return node


def _flips():
    """Parameter values that make every condition of the template true, then false, where a value can."""
    declared = RAW.get("Parameters", {})
    candidates = {
        "AlarmEmail": "ops@example.com",
        "TrainingImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/imgclf-dev-training:v1",
        "RequireApiKey": "true",
        "ReserveConcurrency": "true",
        "ApiGatewayLogsRole": "none",
    }
    return [{}, {k: v for k, v in candidates.items() if k in declared}]


@pytest.mark.parametrize("parameters", _flips(), ids=["defaults", "flipped"])
def test_transformed_template_has_only_plain_json_values(aws_credentials, parameters):
    # GIVEN the template transformed for a set of parameter values
    output = transformed_template(parameters)

    # WHEN every value of it is visited
    values = list(_values(output))

    # THEN each is plain JSON, and none is the repr of a Python object standing in for a value
    assert all(v is None or isinstance(v, str | int | float | bool) for v in values)
    placeholders = [v for v in values if isinstance(v, str) and v.startswith("<object object")]
    assert placeholders == []
    assert json.loads(json.dumps(output)) == output


@pytest.mark.parametrize("parameters", _flips(), ids=["defaults", "flipped"])
def test_every_fn_if_that_chooses_no_value_removes_its_property(parameters):
    # GIVEN the Fn::If of template.yaml and the branch each takes under these parameters
    conditions = StackTemplate(RAW, parameters=parameters).conditions
    chosen = {path: (true if conditions[name] else false) for path, (name, true, false) in _fn_ifs(RAW["Resources"])}
    assert chosen, "template.yaml has Fn::If to resolve"

    # WHEN AWS::LanguageExtensions is applied
    resources = language_extensions(RAW, parameters)["Resources"]

    # THEN a property whose branch is AWS::NoValue is gone, and any other holds its branch with intrinsics intact
    for path, branch in chosen.items():
        parent, key = _lookup(resources, path[:-1]), path[-1]
        if branch == {"Ref": "AWS::NoValue"}:
            assert key not in parent, path
        else:
            assert parent[key] == branch, path


def test_no_value_is_removed_from_properties_and_lists_and_other_intrinsics_stay():
    # GIVEN a fragment with NoValue as a property, as a list item, and a chosen branch that references a resource
    template = {
        "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Parameters": {"On": {"Type": "String", "Default": "false"}},
        "Conditions": {"IsOn": {"Fn::Equals": [{"Ref": "On"}, "true"]}},
        "Resources": {
            "Thing": {
                "Type": "AWS::SNS::Topic",
                "Properties": {
                    "Gone": {"Fn::If": ["IsOn", 5, {"Ref": "AWS::NoValue"}]},
                    "Plain": {"Ref": "AWS::NoValue"},
                    "Items": ["a", {"Fn::If": ["IsOn", "b", {"Ref": "AWS::NoValue"}]}, {"Ref": "AWS::NoValue"}],
                    "Kept": {"Fn::If": ["IsOn", "x", {"Fn::GetAtt": ["Other", "Arn"]}]},
                },
            },
        },
    }

    # WHEN AWS::LanguageExtensions is applied with the condition false
    out = language_extensions(template)

    # THEN NoValue left no trace, the other branch kept its intrinsic, and only the SAM transform remains
    assert out["Resources"]["Thing"]["Properties"] == {
        "Items": ["a"],
        "Kept": {"Fn::GetAtt": ["Other", "Arn"]},
    }
    assert out["Transform"] == ["AWS::Serverless-2016-10-31"]


def test_parameter_overrides_choose_the_branch():
    # GIVEN the same fragment as a deploy would see it with the parameter set
    template = {
        "Transform": ["AWS::LanguageExtensions"],
        "Parameters": {"On": {"Type": "String", "Default": "false"}},
        "Conditions": {"IsOn": {"Fn::Equals": [{"Ref": "On"}, "true"]}},
        "Resources": {"Thing": {"Type": "X", "Properties": {"P": {"Fn::If": ["IsOn", 5, {"Ref": "AWS::NoValue"}]}}}},
    }

    # WHEN the override turns the condition on
    out = language_extensions(template, {"On": "true"})

    # THEN the true branch is taken
    assert out["Resources"]["Thing"]["Properties"] == {"P": 5}


def test_an_unknown_parameter_is_refused(aws_credentials):
    with pytest.raises(TemplateError, match="NoSuchParameter"):
        transformed_template({"NoSuchParameter": "x"})


def test_cli_writes_the_transformed_template_with_overrides(aws_credentials, tmp_path):
    # GIVEN the command line the Makefile runs, plus overrides that flip conditions
    out = tmp_path / "build" / "template.transformed.json"
    overrides = _flips()[1]

    # WHEN it runs
    rc = main(["--out", str(out), "--parameter-overrides", *(f"{k}={v}" for k, v in overrides.items())])

    # THEN it writes the template transformed for those values, which is not the defaults' template
    assert rc == 0
    written = json.loads(out.read_text())
    assert written == transformed_template(overrides)
    assert written != transformed_template()


def test_cli_refuses_an_override_without_a_value(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "t.json"), "--parameter-overrides", "Stage"])
    assert "expected Key=Value" in capsys.readouterr().err
