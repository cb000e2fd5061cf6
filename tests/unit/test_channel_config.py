import json
from typing import Any

import pytest
from samhandling.storage.v1 import storage_pb2

from services.platform.channels import RETRYABLE_STATUS_CODES, STORAGE_IDEMPOTENT_METHODS, service_config

STORAGE = "samhandling.storage.v1.StorageService"


def method_configs(methods: Any, **options: Any) -> list[dict[str, Any]]:
    config = json.loads(service_config(methods, **options))
    return config.get("methodConfig", [])


def retried_methods(configs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (name["service"], name["method"]) for config in configs if "retryPolicy" in config for name in config["name"]
    }


def test_the_service_config_sets_no_timeouts_deadlines_are_per_call() -> None:
    configs = method_configs(STORAGE_IDEMPOTENT_METHODS)

    assert all("timeout" not in config for config in configs)


def test_retry_policy_only_for_the_listed_methods() -> None:
    methods = [(STORAGE, "GetRecord"), (STORAGE, "ListRecords")]

    configs = method_configs(methods)

    assert len(configs) == 1
    assert configs[0]["name"] == [{"service": service, "method": method} for service, method in methods]
    assert retried_methods(configs) == set(methods)


def test_retry_policy_settings() -> None:
    policy = method_configs([(STORAGE, "GetRecord")], max_attempts=3)[0]["retryPolicy"]

    assert policy == {
        "maxAttempts": 3,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }


def test_default_max_attempts() -> None:
    assert method_configs([(STORAGE, "GetRecord")])[0]["retryPolicy"]["maxAttempts"] == 4


def test_never_retries_on_codes_that_may_mean_the_call_ran() -> None:
    assert not {"DEADLINE_EXCEEDED", "ABORTED", "INTERNAL", "UNKNOWN"} & set(RETRYABLE_STATUS_CODES)


@pytest.mark.parametrize("methods", [[], iter([])])
def test_no_idempotent_methods_means_no_retry_policy(methods: Any) -> None:
    assert method_configs(methods) == []


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


def test_calls_are_balanced_over_every_resolved_address() -> None:
    for methods in ([], STORAGE_IDEMPOTENT_METHODS):
        assert json.loads(service_config(methods))["loadBalancingConfig"] == [{"round_robin": {}}]
