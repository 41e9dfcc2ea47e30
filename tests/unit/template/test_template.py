"""template.yaml holds together: handlers exist, names resolve, queues outlast functions, no recursive writes."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

from imgclf_local.lambda_runtime import load_handler
from imgclf_local.template import REPO_ROOT, StackTemplate, TemplateError, load_template

RAW = load_template()
RESOURCES = RAW["Resources"]
FUNCTIONS = {lid: r for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}


@pytest.fixture(scope="module")
def template() -> StackTemplate:
    return StackTemplate(parameters={"Stage": "local"})


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_handler_exists_and_imports(template, logical_id):
    function = template.functions[logical_id]
    module = function.handler.rpartition(".")[0]
    assert (function.code_dir / (module.replace(".", "/") + ".py")).is_file(), function.handler
    assert callable(load_handler(function))


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_ships_its_own_requirements(template, logical_id):
    assert (template.functions[logical_id].code_dir / "requirements.txt").is_file()


def _references(node):
    """Every logical id a template fragment refers to."""
    if isinstance(node, dict):
        for fn, arg in node.items():
            if fn == "Ref" and not str(arg).startswith("AWS::"):
                yield arg
            elif fn == "Fn::GetAtt":
                yield (arg.split(".")[0] if isinstance(arg, str) else arg[0])
            elif fn == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                for token in re.findall(r"\$\{([^}!]+)\}", text):
                    if not token.startswith("AWS::"):
                        yield token.split(".")[0]
            yield from _references(arg)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_every_environment_variable_names_a_resource_or_parameter_of_the_stack():
    known = set(RESOURCES) | set(RAW["Parameters"]) | set(RAW.get("Conditions", {}))
    envs = [RAW["Globals"]["Function"]["Environment"]] + [
        f["Properties"].get("Environment", {}) for f in FUNCTIONS.values()
    ]
    referenced = {ref for env in envs for ref in _references(env)}
    assert referenced, "the environment refers to stack resources"
    assert referenced <= known, referenced - known


def test_the_environment_resolves_and_agrees_between_functions(template):
    env = template.function_environment()  # raises when a name has two values
    assert env["DATA_BUCKET"] == template.buckets["DataBucket"].name
    assert env["PREDICTIONS_TABLE"] == template.tables["PredictionsTable"].name


def test_the_queue_outlasts_six_classifier_timeouts(template):
    classifier = template.functions["ClassifierFunction"]
    [trigger] = classifier.sqs_triggers
    queue = template.queues[trigger.queue_logical_id]
    assert int(queue.attributes["VisibilityTimeout"]) >= 6 * classifier.timeout_s
    assert queue.max_receive_count == 3 and queue.dlq_logical_id
    assert trigger.report_batch_item_failures


def _policy_statements(resource: dict) -> list[dict]:
    statements = []
    props = resource.get("Properties", {})
    for policy in props.get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            statements += policy["Statement"]
        if isinstance(policy, dict) and "PolicyDocument" in policy:
            statements += policy["PolicyDocument"]["Statement"]
    return statements


def _writes_uploads(template: StackTemplate, statement: dict) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    writes = [a for a in actions if fnmatch.fnmatch("s3:PutObject", a) or fnmatch.fnmatch("s3:CopyObject", a)]
    resources = template.resolve(statement.get("Resource", []))
    resources = resources if isinstance(resources, list) else [resources]
    bucket_arn = f"arn:aws:s3:::{template.buckets['DataBucket'].name}"
    return bool(writes) and any(fnmatch.fnmatch(f"{bucket_arn}/uploads/x.jpg", r) for r in resources)


def test_no_function_can_write_under_uploads(template):
    # The classifier is triggered by uploads/: any function that could write there risks a loop.
    for logical_id in FUNCTIONS:
        for statement in _policy_statements(RESOURCES[logical_id]):
            assert not _writes_uploads(template, statement), f"{logical_id} can write under uploads/"
    signers = [lid for lid, r in RESOURCES.items() if r["Type"] == "AWS::IAM::Role"
               and any(_writes_uploads(template, s) for s in _policy_statements(r))]
    assert signers == ["UploadSignerRole"]
    principal = RESOURCES["UploadSignerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"AWS": {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}}


def test_the_classifier_reads_only_uploads_and_models(template):
    statements = _policy_statements(RESOURCES["ClassifierFunction"])
    s3 = [s for s in statements if any(str(a).startswith("s3:") for a in s["Action"])]
    assert all(a.startswith("s3:Get") for s in s3 for a in s["Action"])
    resources = {r for s in s3 for r in template.resolve(s["Resource"])}
    assert {r.rsplit("/", 1)[-1] for r in resources} == {"*"}
    assert {r.split(":::")[1].split("/", 1)[1] for r in resources} == {"uploads/*", "models/*"}


def test_the_collector_writes_only_datasets(template):
    statements = _policy_statements(RESOURCES["CollectorFunction"])
    puts = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert [template.resolve(s["Resource"]).split("/", 1)[1] for s in puts] == ["datasets/*"]


def test_pass_role_is_scoped_to_the_sagemaker_role():
    for logical_id, resource in RESOURCES.items():
        for statement in _policy_statements(resource):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "iam:PassRole" in actions:
                assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, logical_id


# ---------------------------------------------------------------- the state machines
MACHINES = {lid: r["Properties"] for lid, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::StateMachine"}


def _definition(props: dict) -> dict:
    return json.loads((REPO_ROOT / props["DefinitionUri"]).read_text())


def _states(definition: dict):
    for name, state in definition["States"].items():
        yield name, state, definition
        for branch in [state.get("ItemProcessor") or state.get("Iterator")] + state.get("Branches", []):
            if branch:
                yield from _states(branch)


@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_the_state_machine_is_valid_asl(logical_id):
    definition = _definition(MACHINES[logical_id])
    processors = [s["ItemProcessor"] for _, s, _ in _states(definition) if s.get("ItemProcessor")]
    for scope in [definition, *processors]:
        assert scope["StartAt"] in scope["States"]
    for name, state, scope in _states(definition):
        assert state["Type"] in {"Task", "Map", "Choice", "Succeed", "Fail", "Pass", "Wait", "Parallel"}, name
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
        for target in filter(None, targets):
            assert target in scope["States"], f"{name} goes to unknown state {target}"
        terminal = state["Type"] in {"Succeed", "Fail", "Choice"} or state.get("End")
        assert terminal or state.get("Next"), f"{name} neither ends nor continues"


@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_every_resource_a_state_machine_calls_exists_and_may_be_called(logical_id):
    props = MACHINES[logical_id]
    definition = _definition(props)
    substitutions = props["DefinitionSubstitutions"]
    assert set(re.findall(r"\$\{(\w+)\}", json.dumps(definition))) == set(substitutions)
    invoked = {v["Fn::GetAtt"][0] for k, v in substitutions.items() if k.endswith("FunctionArn")}
    assert invoked and invoked <= set(FUNCTIONS)
    allowed = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"] for p in props["Policies"] if "LambdaInvokePolicy" in p}
    assert invoked <= allowed
    resources = {s["Resource"] for _, s, _ in _states(definition) if s["Type"] == "Task"}
    assert resources <= {"arn:aws:states:::lambda:invoke", "arn:aws:states:::sagemaker:createTrainingJob.sync"}


def test_unknown_references_are_reported_clearly():
    broken = json.loads(json.dumps(RAW))
    broken["Globals"]["Function"]["Environment"]["Variables"]["X"] = {"Ref": "NoSuchThing"}
    with pytest.raises(TemplateError, match="NoSuchThing"):
        StackTemplate(broken, parameters={"Stage": "local"}).function_environment()


def test_the_classifier_image_builds_from_the_functions_folder():
    metadata = RESOURCES["ClassifierFunction"]["Metadata"]
    context = REPO_ROOT / metadata["DockerContext"]
    assert (context / metadata["Dockerfile"]).is_file()
    targets = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", Path(context / metadata["Dockerfile"]).read_text(), re.M | re.I)
    assert metadata["DockerBuildTarget"] in targets
