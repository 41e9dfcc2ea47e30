"""The search key: from an SSM SecureString or a Secrets Manager secret, with clear errors when missing."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from imgclf.errors import ConfigError, TransientError
from imgclf_collector.search_key import forget_cached_keys, load_search_key


@pytest.fixture(autouse=True)
def fresh_cache():
    forget_cached_keys()
    yield
    forget_cached_keys()


def test_an_ssm_secure_string_is_read_decrypted(mocked_aws):
    # GIVEN the key in an SSM SecureString parameter
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/imgclf/bing-search-key", Value="abc123", Type="SecureString"
    )

    # WHEN it is loaded by name
    # THEN the decrypted value comes back
    assert load_search_key("/imgclf/bing-search-key") == "abc123"


def test_a_secrets_manager_secret_is_read_by_arn(mocked_aws):
    # GIVEN the key in a Secrets Manager secret
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="imgclf/search", SecretString="  key-from-secret \n"
    )["ARN"]

    # WHEN it is loaded by its ARN
    # THEN the trimmed secret string comes back
    assert load_search_key(arn) == "key-from-secret"


def test_a_json_secret_gives_its_key_field(mocked_aws):
    # GIVEN a JSON secret with a "key" field, named with the secretsmanager: prefix
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="imgclf/search-json", SecretString='{"key": "k-json", "endpoint": "ignored"}'
    )

    # WHEN it is loaded
    # THEN the key field comes back
    assert load_search_key("secretsmanager:imgclf/search-json") == "k-json"


def test_a_missing_parameter_is_a_configuration_error_naming_the_setting(mocked_aws):
    # GIVEN no parameter at all
    # WHEN the key is loaded
    # THEN the error says which setting to fix
    with pytest.raises(ConfigError, match="SEARCH_KEY_PARAMETER"):
        load_search_key("/imgclf/missing")


def test_an_unset_parameter_name_is_a_configuration_error():
    # GIVEN SEARCH_KEY_PARAMETER unset
    # WHEN the key is loaded
    # THEN the error says so, without calling AWS
    with pytest.raises(ConfigError, match="not set"):
        load_search_key("")


def test_the_key_is_cached_between_calls(mocked_aws):
    # GIVEN a key read once
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/k", Value="first", Type="SecureString")
    load_search_key("/k")

    # WHEN the parameter changes and the key is read again within the cache period
    ssm.put_parameter(Name="/k", Value="second", Type="SecureString", Overwrite=True)

    # THEN the cached value is used (no SSM call per search page)
    assert load_search_key("/k") == "first"


@pytest.mark.parametrize(("code", "raised", "says"), [
    ("AccessDeniedException", ConfigError, "permission to read SSM parameter '/imgclf/key'"),
    ("ThrottlingException", TransientError, "ThrottlingException"),
])
def test_a_refused_read_is_a_configuration_error_and_a_throttled_one_may_pass(aws_credentials, code, raised, says):
    # GIVEN SSM answering the read with an error
    ssm = boto3.client("ssm", region_name="us-east-1")
    with Stubber(ssm) as stub:
        stub.add_client_error("get_parameter", service_error_code=code, http_status_code=400)

        # WHEN the key is loaded
        # THEN access denied needs the deployment fixed, throttling only a retry
        with pytest.raises(raised, match=says):
            load_search_key("/imgclf/key", ssm=ssm)
