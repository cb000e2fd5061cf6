import json
from typing import Any

import pytest
from samhandling.storage.v1 import storage_pb2

from services.platform.channels import RETRYABLE_STATUS_CODES, STORAGE_IDEMPOTENT_METHODS, service_config

STORAGE = "samhandling.storage.v1.StorageService"


def method_configs(methods: list[tuple[str, str]], **options: Any) -> list[dict[str, Any]]:
    config = json.loads(service_config(methods, **{"timeout_seconds": 5.0} | options))
    assert list(config) == ["methodConfig"]
    return config["methodConfig"]


def retried_methods(configs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (name["service"], name["method"]) for config in configs if "retryPolicy" in config for name in config["name"]
    }


def test_default_timeout_applies_to_every_method_without_retries() -> None:
    default = method_configs(STORAGE_IDEMPOTENT_METHODS)[0]

    assert default == {"name": [{}], "timeout": "5.000s"}


@pytest.mark.parametrize(("seconds", "text"), [(5.0, "5.000s"), (0.25, "0.250s"), (30, "30.000s"), (1.5, "1.500s")])
def test_timeout_is_a_duration_string(seconds: float, text: str) -> None:
    configs = method_configs([(STORAGE, "GetRecord")], timeout_seconds=seconds)

    assert [config["timeout"] for config in configs] == [text, text]


def test_retry_policy_only_for_the_listed_methods() -> None:
    methods = [(STORAGE, "GetRecord"), (STORAGE, "ListRecords")]

    configs = method_configs(methods)

    assert len(configs) == 2
    assert configs[1]["name"] == [{"service": service, "method": method} for service, method in methods]
    assert retried_methods(configs) == set(methods)
    assert all("retryPolicy" not in config for config in configs if {} in config["name"])


def test_retry_policy_settings() -> None:
    policy = method_configs([(STORAGE, "GetRecord")], max_attempts=3)[1]["retryPolicy"]

    assert policy == {
        "maxAttempts": 3,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }


def test_default_max_attempts() -> None:
    assert method_configs([(STORAGE, "GetRecord")])[1]["retryPolicy"]["maxAttempts"] == 4


def test_never_retries_on_codes_that_may_mean_the_call_ran() -> None:
    assert not {"DEADLINE_EXCEEDED", "ABORTED", "INTERNAL", "UNKNOWN"} & set(RETRYABLE_STATUS_CODES)


@pytest.mark.parametrize("methods", [[], iter([])])
def test_no_idempotent_methods_means_no_retry_policy(methods: Any) -> None:
    configs = method_configs(methods)

    assert configs == [{"name": [{}], "timeout": "5.000s"}]


def test_methods_may_be_any_iterable() -> None:
    configs = method_configs(iter(STORAGE_IDEMPOTENT_METHODS))

    assert retried_methods(configs) == set(STORAGE_IDEMPOTENT_METHODS)


def test_storage_idempotent_methods() -> None:
    assert set(STORAGE_IDEMPOTENT_METHODS) == {
        (STORAGE, "PutRecord"),
        (STORAGE, "GetRecord"),
        (STORAGE, "ListRecordVersions"),
        (STORAGE, "ListRecords"),
    }


def test_watch_is_never_retried() -> None:
    assert all(method != "Watch" for _, method in STORAGE_IDEMPOTENT_METHODS)
    assert (STORAGE, "Watch") not in retried_methods(method_configs(STORAGE_IDEMPOTENT_METHODS))


def test_idempotent_methods_exist_in_the_storage_contract() -> None:
    service = storage_pb2.DESCRIPTOR.services_by_name["StorageService"]

    assert service.full_name == STORAGE
    assert {method for _, method in STORAGE_IDEMPOTENT_METHODS} <= set(service.methods_by_name)
    assert "Watch" in service.methods_by_name
