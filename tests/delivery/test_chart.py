"""The Helm chart, linted and rendered offline with the real Helm engine, every manifest validated
against the Kubernetes 1.30 and the newest schemas (strict), and what matters asserted: probes,
security contexts, NetworkPolicy selectors, the migration hook, no secret in plain text, labels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from tests.delivery.chart import (
    CALLERS,
    CHART,
    EXAMPLES,
    GRPC_SERVICES,
    NAMESPACE,
    RELEASE,
    ROOT,
    SERVICES,
    VALUES_FILES,
    VENDOR_FACING,
    Rendered,
    component,
    env_of,
    load_values,
    render,
)

KUBERNETES_VERSIONS = ("1.30", latest_version())
# Custom resources kubernetes-validate has no schema for; checked field by field below instead.
CUSTOM_KINDS = {("postgresql.cnpg.io/v1", "Cluster")}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
SELECTOR_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
HEALTH_PROBE_IMAGE = "ghcr.io/grpc-ecosystem/grpc-health-probe"
PORTS = {"access": 50051, "overview": 50052, "news2": 50053, "storage": 50054}


def _values_for(name: str) -> dict[str, Any] | None:
    return None if name == "defaults" else load_values(EXAMPLES / f"{name}.yaml")


# --- lint and schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_the_chart_lints_clean_in_strict_mode(values_file: str):
    report = helm.lint(CHART, _values_for(values_file), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 3}, "additional properties 'replicaCount' not allowed"),
        ({"services": {"access": {"replica": 3}}}, "additional properties 'replica' not allowed"),
        ({"services": {"search": {"port": 50055}}}, "additional properties 'search' not allowed"),
        ({"database": {"url": "postgresql://samhandling:hemmelig@db:5432/samhandling"}}, "'url' not allowed"),
        ({"database": {"password": "hemmelig"}}, "'password' not allowed"),
        ({"services": {"news2": {"replicas": "two"}}}, "want integer"),
        ({"services": {"storage": {"port": 70000}}}, "/services/storage/port"),
        ({"networkPolicy": {"enabled": "yes"}}, "want boolean"),
        ({"config": {"logLevel": "LOUD"}}, "/config/logLevel"),
        ({"config": {"environment": "staging"}}, "/config/environment"),
        ({"tenants": [{"municipality": "18", "organisation": "972418013"}]}, "/tenants/0/municipality"),
        ({"telemetry": {"samplerArg": 2}}, "/telemetry/samplerArg"),
        ({"image": {"tag": "latest@sha256:abc"}}, "/image/tag"),
        ({"extraEnv": [{"name": "SAMHANDLING_DATABASE_URL", "value": "postgresql://u:p@h/d"}]}, "/extraEnv/0/name"),
        ({"extraEnv": [{"name": "SAMHANDLING_LOG_LEVEL", "value": "DEBUG"}]}, "/extraEnv/0/name"),
        ({"extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "x"}]}, "/extraEnv/0/name"),
        ({"networkPolicy": {"vendorIngress": {"namespaceSelector": {"matchLabel": {}}}}}, "'matchLabel' not allowed"),
    ],
)
def test_the_schema_rejects_unknown_keys_and_wrong_types(chart: helm.Chart, values: dict, complaint: str):
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    report = helm.lint(CHART, values, namespace=NAMESPACE)
    assert any(complaint in error for error in report["errors"]), report


def test_the_schema_rejects_unknown_keys_at_every_level():
    """`additionalProperties: false` on every object the schema describes (maps of labels excepted)."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_maps = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                if "properties" in node:
                    assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
                else:
                    open_maps.append(path)
                    assert node.get("additionalProperties", {}).get("type") == "string", path
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}/{index}")

    walk(schema, "")
    assert open_maps, "label and annotation maps are typed string → string"


def test_every_value_has_a_comment():
    lines = (CHART / "values.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            assert lines[index - 1].lstrip().startswith("#"), f"values.yaml line {index + 1} has no comment: {line}"


def test_values_are_camel_case(chart: helm.Chart):
    def keys(node: Any, path: str = "") -> list[str]:
        if not isinstance(node, dict):
            return []
        found = []
        for key, child in node.items():
            # Free-form maps (labels, annotations, PostgreSQL parameters, resource names) are data.
            if path.split("/")[-1] in ("resourceAttributes", "parameters", "requests", "limits"):
                continue
            found.append(f"{path}/{key}")
            found += keys(child, f"{path}/{key}")
        return found

    bad = [key for key in keys(chart.values) if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", key.rsplit("/", 1)[-1])]
    assert bad == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"auth": {"jwksUrl": "http://insecure.example/jwks"}}, "production needs an https:// JWKS URL"),
        ({"auth": {"jwksConfigMap": {"name": "jwks"}}}, "either jwksUrl or jwksConfigMap.name"),
        ({"auth": {"issuer": ""}}, "auth.issuer and auth.audience are required"),
        ({"database": {"existingSecret": ""}}, "existingSecret"),
        ({"tls": {"enabled": True}}, "services.access.tlsSecret"),
        ({"auth": {"jwksUrl": ""}, "config": {"environment": "test"}}, "set jwksUrl or jwksConfigMap.name"),
    ],
)
def test_configurations_the_services_would_refuse_fail_at_install_time(chart: helm.Chart, values: dict, complaint: str):
    with pytest.raises(helm.HelmError, match=re.escape(complaint)):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


# --- every manifest is valid Kubernetes ------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(rendered: Rendered, version: str):
    for manifest in rendered.manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except SchemaNotFoundError:
            assert (manifest["apiVersion"], manifest["kind"]) in CUSTOM_KINDS, where
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where} against {version}: {'.'.join(map(str, error.path))}: {error.message}")


def test_each_service_gets_its_deployment_service_and_service_account(rendered: Rendered):
    for kind in ("Deployment", "Service", "ServiceAccount"):
        owners = sorted(component(m) for m in rendered.regular(kind))
        assert owners == sorted(SERVICES), kind
    for service in SERVICES:
        deployment = rendered.deployment(service)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"{RELEASE}-{service}"
        (container,) = pod["containers"]
        assert container["args"] == ["serve", service]
        (port,) = container["ports"]
        (k8s_service,) = [s for s in rendered.regular("Service") if component(s) == service]
        assert k8s_service["spec"]["ports"][0]["port"] == port["containerPort"]
        assert k8s_service["spec"]["ports"][0]["targetPort"] == port["name"] == "grpc"
        # Headless, so that the services' round-robin channels see every ready pod.
        assert k8s_service["spec"]["clusterIP"] == "None"


def test_names_follow_the_release(chart: helm.Chart):
    other = render(chart, release="mesh", namespace="kommune")
    assert sorted(d["metadata"]["name"] for d in other.of_kind("Deployment")) == sorted(
        f"mesh-samhandling-{s}" for s in SERVICES
    )
    env = env_of(other.container("news2"))
    assert env["SAMHANDLING_ACCESS_ADDRESS"]["value"] == "mesh-samhandling-access.kommune.svc:50051"
    assert env["SAMHANDLING_STORAGE_ADDRESS"]["value"] == "mesh-samhandling-storage.kommune.svc:50054"


# --- probes ----------------------------------------------------------------------------------------


def test_every_deployment_has_native_grpc_probes_on_the_health_service(rendered: Rendered):
    for service in SERVICES:
        container = rendered.container(service)
        port = container["ports"][0]["containerPort"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container[probe]) >= {"grpc"}, f"{service} {probe}"
            assert not {"exec", "httpGet", "tcpSocket"} & set(container[probe])
            assert container[probe]["grpc"]["port"] == port
        # Readiness follows the service by name (NOT_SERVING while its database is down or while it
        # drains); liveness asks for the server as a whole.
        assert container["readinessProbe"]["grpc"]["service"] == GRPC_SERVICES[service]
        assert container["livenessProbe"]["grpc"]["service"] == ""


def test_grpc_service_names_match_the_contracts():
    for service, full_name in GRPC_SERVICES.items():
        package, _, name = full_name.rpartition(".")
        proto = ROOT / "protos" / Path(*package.split(".")) / f"{service}.proto"
        assert f"package {package};" in proto.read_text()
        assert f"service {name} " in proto.read_text()


def test_helm_test_checks_every_service_with_grpc_health_probe(rendered: Rendered):
    (pod,) = rendered.hooks("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    checked = {}
    for container in pod["spec"]["containers"]:
        assert container["image"].startswith(HEALTH_PROBE_IMAGE + ":")
        arguments = dict(argument.lstrip("-").split("=", 1) for argument in container["args"])
        checked[arguments["service"]] = arguments["addr"]
    assert checked == {GRPC_SERVICES[s]: f"{RELEASE}-{s}.{NAMESPACE}.svc:{PORTS[s]}" for s in SERVICES}
    assert "wget" not in "".join(rendered.templates.values())


def test_helm_test_may_reach_storage_only_while_the_test_runs(rendered: Rendered):
    hook_policies = rendered.hooks("NetworkPolicy")
    if not rendered.regular("NetworkPolicy"):
        assert hook_policies == []
        return
    (policy,) = hook_policies
    annotations = policy["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) >= {"hook-succeeded", "hook-failed"}
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer == {"podSelector": {"matchLabels": _selector("health-check")}}


# --- security --------------------------------------------------------------------------------------


def test_every_pod_is_hardened(rendered: Rendered):
    specs = list(rendered.pod_specs())
    assert {m["kind"] for m, _ in specs} >= {"Deployment", "Pod"}
    for manifest, pod in specs:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["enableServiceLinks"] is False, where
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security.get("privileged", False) is False, where
            assert "add" not in security["capabilities"], where
            assert container["resources"].get("requests"), where
            assert container["resources"].get("limits", {}).get("memory"), where


def test_samhandling_containers_get_a_writable_tmp_and_run_as_the_image_user(rendered: Rendered):
    for manifest, pod in rendered.pod_specs():
        if manifest["kind"] == "Pod":
            continue
        assert pod["securityContext"]["runAsUser"] == 10001
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        for container in pod["containers"]:
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_service_accounts_mount_no_token(rendered: Rendered):
    accounts = rendered.of_kind("ServiceAccount")
    assert accounts
    for account in accounts:
        assert account["automountServiceAccountToken"] is False


def test_no_secret_value_in_plain_text(rendered: Rendered):
    credentials_in_url = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
    assert rendered.of_kind("Secret") == [], "the chart never creates a Secret from values"
    for manifest, pod in rendered.pod_specs():
        for container in pod["containers"] + pod.get("initContainers", []):
            for item in container.get("env", []):
                where = f"{manifest['metadata']['name']}/{container['name']}/{item['name']}"
                value = item.get("value", "")
                assert not credentials_in_url.search(value), where
                assert "password" not in value.lower() and "passwd" not in value.lower(), where
                if re.search(r"PASSWORD|SECRET|DATABASE_URL|HEADERS", item["name"]):
                    assert "value" not in item and "secretKeyRef" in item["valueFrom"], where
    everything = "\n".join(rendered.templates.values())
    assert not credentials_in_url.search(everything)


def test_only_the_table_owners_get_the_database_url_all_from_the_same_secret(rendered: Rendered):
    references, holders = set(), set()
    for manifest, pod in rendered.pod_specs():
        if manifest["kind"] == "Pod":
            continue
        (container,) = pod["containers"]
        env = env_of(container)
        if "SAMHANDLING_DATABASE_URL" in env:
            reference = env["SAMHANDLING_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            references.add((reference["name"], reference["key"]))
            holders.add(component(manifest))
    assert len(references) == 1
    assert holders == {"access", "storage", "migrations"}


# --- NetworkPolicies -------------------------------------------------------------------------------


def _selector(name: str, release: str = RELEASE) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "samhandling",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": name,
    }


def test_storage_accepts_only_access_overview_and_news2_of_this_release(rendered: Rendered):
    policies = {component(p): p for p in rendered.regular("NetworkPolicy")}
    assert sorted(policies) == sorted(SERVICES)
    storage = policies["storage"]["spec"]
    assert storage["podSelector"] == {"matchLabels": _selector("storage")}
    assert storage["policyTypes"] == ["Ingress"]
    peers = [peer for rule in storage["ingress"] for peer in rule["from"]]
    assert peers == [{"podSelector": {"matchLabels": _selector(name)}} for name in ("access", "overview", "news2")]
    # No other policy of the release selects storage pods (policies add up).
    for name, policy in policies.items():
        labels = policy["spec"]["podSelector"]["matchLabels"]
        assert labels["app.kubernetes.io/component"] == name


def test_peers_and_vendors_reach_exactly_the_services_they_call(rendered: Rendered):
    vendor = rendered.values.get("networkPolicy", {}).get("vendorIngress", {})
    vendor_peer = {key: vendor[key] for key in ("namespaceSelector", "podSelector") if vendor.get(key)}
    for policy in rendered.regular("NetworkPolicy"):
        name = component(policy)
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
        in_release = [p for p in peers if p in [{"podSelector": {"matchLabels": _selector(s)}} for s in SERVICES]]
        callers = {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in in_release}
        assert callers == CALLERS[name], name
        others = [p for p in peers if p not in in_release]
        assert others == ([vendor_peer] if name in VENDOR_FACING and vendor_peer else []), name
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]


def test_the_production_example_admits_vendors_only_through_the_ingress_namespace(renderings: dict[str, Rendered]):
    policy = renderings["production-cloudnativepg"].named("NetworkPolicy", f"{RELEASE}-news2")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    assert "WARNING" not in renderings["production-cloudnativepg"].notes
    assert "WARNING: networkPolicy.vendorIngress selects nobody" in renderings["defaults"].notes


# --- migrations ------------------------------------------------------------------------------------


def test_migrations_run_as_a_hook_job_before_install_and_upgrade(rendered: Rendered):
    (job,) = rendered.of_kind("Job")
    annotations = job["metadata"]["annotations"]
    cloudnativepg = bool(rendered.of_kind("Cluster"))
    # A CloudNativePG database of the same release exists only after install: then post-install.
    expected = "post-install,pre-upgrade" if cloudnativepg else "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook"] == expected
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    service_container = rendered.container("storage")
    assert container["image"] == service_container["image"]
    assert env_of(container)["SAMHANDLING_DATABASE_URL"] == env_of(service_container)["SAMHANDLING_DATABASE_URL"]
    # The Job runs before the release's own ServiceAccounts exist: it brings its own, as an earlier hook.
    (account,) = [a for a in rendered.hooks("ServiceAccount") if a["metadata"]["name"] == pod["serviceAccountName"]]
    assert account["metadata"]["annotations"]["helm.sh/hook"] == expected
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])


def test_the_image_entrypoint_runs_what_the_chart_asks_for():
    """`samhandling serve SERVICE` and `samhandling migrate` exist in the CLI the image's ENTRYPOINT runs."""
    from services.cli import _parser

    parser = _parser()
    for service in SERVICES:
        assert parser.parse_args(["serve", service]).service == service
    assert parser.parse_args(["migrate"]).handler.__name__ == "_migrate"


# --- configuration ---------------------------------------------------------------------------------


def _settings_variables() -> set[str]:
    """Every SAMHANDLING_* variable the settings reader reads."""
    source = (ROOT / "services" / "platform" / "settings.py").read_text()
    names = set(re.findall(r'self\._(?:text|optional|int|float|choice|port|raw)\(\s*"([A-Z_]+)"', source))
    names |= {f"{service.upper()}_{kind}" for service in SERVICES for kind in ("PORT", "ADDRESS")}
    names.add("TENANTS")
    return {f"SAMHANDLING_{name}" for name in names}


def test_every_setting_is_configured_by_the_chart(rendered: Rendered):
    expected = _settings_variables()
    assert "SAMHANDLING_DATABASE_URL" in expected and "SAMHANDLING_JWKS" in expected
    for service in SERVICES:
        container = rendered.container(service)
        configured = {name for name in env_of(container) if name.startswith("SAMHANDLING_")}
        if service in ("overview", "news2"):
            # No tables of their own: they never get the database credentials.
            configured |= {"SAMHANDLING_DATABASE_URL", "SAMHANDLING_DATABASE_POOL_SIZE"}
        if env_of(container)["SAMHANDLING_ENVIRONMENT"]["value"] != "production":
            # Outside production, the dev issuer and audience are the services' own defaults.
            configured |= {"SAMHANDLING_TOKEN_ISSUER", "SAMHANDLING_TOKEN_AUDIENCE"}
        assert expected <= configured, expected - configured


def test_service_configuration_in_the_pods(rendered: Rendered):
    for service in SERVICES:
        container = rendered.container(service)
        env = env_of(container)
        assert env["SAMHANDLING_BIND_HOST"]["value"] == "::"
        assert env[f"SAMHANDLING_{service.upper()}_PORT"]["value"] == str(container["ports"][0]["containerPort"])
        assert re.fullmatch(r"(\d{4}=\d{9},)*\d{4}=\d{9}", env["SAMHANDLING_TENANTS"]["value"])
        assert env["SAMHANDLING_LOG_LEVEL"]["value"] in ("DEBUG", "INFO", "WARNING", "ERROR")
        jwks = env["SAMHANDLING_JWKS"]["value"]
        if env["SAMHANDLING_ENVIRONMENT"]["value"] == "production":
            assert jwks.startswith("https://")
            assert env["SAMHANDLING_TOKEN_ISSUER"]["value"] and env["SAMHANDLING_TOKEN_AUDIENCE"]["value"]
        elif not jwks.startswith("https://"):
            # A JWKS file from a ConfigMap, mounted read-only where the variable points.
            mount = next(m for m in container["volumeMounts"] if m["name"] == "jwks")
            assert jwks.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True


def test_opentelemetry_is_configured_per_service(rendered: Rendered, renderings: dict[str, Rendered]):
    names = set()
    for service in SERVICES:
        env = env_of(rendered.container(service))
        names.add(env["OTEL_SERVICE_NAME"]["value"])
        attributes = dict(pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(","))
        assert attributes["k8s.namespace.name"] == rendered.namespace
        assert attributes["helm.release.name"] == rendered.release
        assert attributes["k8s.pod.name"] == "$(K8S_POD_NAME)"
        # Kubernetes expands $(VAR) only from variables defined earlier in the list.
        order = [item["name"] for item in rendered.container(service)["env"]]
        assert order.index("K8S_POD_NAME") < order.index("OTEL_RESOURCE_ATTRIBUTES")
        assert env["OTEL_TRACES_SAMPLER"]["value"]
    assert len(names) == len(SERVICES)
    production = env_of(renderings["production-cloudnativepg"].container("news2"))
    assert production["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability.svc:4317"
    assert production["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.25"
    defaults = env_of(renderings["defaults"].container("news2"))
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in defaults


def test_tls_certificates_are_mounted_read_only_when_enabled(chart: helm.Chart):
    values = {
        "tls": {"enabled": True, "clientCaSecret": "samhandling-client-ca"},
        "services": {s: {"tlsSecret": f"samhandling-{s}-tls"} for s in SERVICES},
    }
    rendered = render(chart, values)
    for service in SERVICES:
        pod = rendered.pod(service)
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == f"samhandling-{service}-tls"
        assert volumes["client-ca"]["secret"]["secretName"] == "samhandling-client-ca"
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/samhandling/tls", "readOnly": True}
        assert mounts["client-ca"]["readOnly"] is True
    for version in KUBERNETES_VERSIONS:
        for deployment in rendered.of_kind("Deployment"):
            kubernetes_validate.validate(deployment, version, strict=True)


# --- availability ----------------------------------------------------------------------------------


def test_disruption_budgets_and_autoscalers_follow_the_values(rendered: Rendered, renderings: dict[str, Rendered]):
    services = rendered.values.get("services", {})
    defaults = renderings["defaults"]
    budgets = {component(b): b for b in rendered.of_kind("PodDisruptionBudget")}
    autoscalers = {component(h): h for h in rendered.of_kind("HorizontalPodAutoscaler")}
    for service in SERVICES:
        overrides = services.get(service, {})
        deployment = rendered.deployment(service)
        selector = deployment["spec"]["selector"]
        budget_enabled = overrides.get("podDisruptionBudget", {}).get("enabled", True)
        assert (service in budgets) == budget_enabled
        if budget_enabled:
            assert budgets[service]["spec"]["selector"] == selector
        if overrides.get("autoscaling", {}).get("enabled", False):
            target = autoscalers[service]["spec"]["scaleTargetRef"]
            assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
            assert "replicas" not in deployment["spec"]
        else:
            assert service not in autoscalers
            assert deployment["spec"]["replicas"] == overrides.get(
                "replicas", defaults.deployment(service)["spec"]["replicas"]
            )


def test_pods_drain_before_they_are_killed(rendered: Rendered):
    for service in SERVICES:
        pod = rendered.pod(service)
        (container,) = pod["containers"]
        grace = float(env_of(container)["SAMHANDLING_SHUTDOWN_GRACE_SECONDS"]["value"])
        delay = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] > delay + grace


# --- labels ----------------------------------------------------------------------------------------


def test_every_resource_carries_the_standard_labels(rendered: Rendered):
    for manifest in rendered.manifests:
        labels = manifest["metadata"]["labels"]
        for label in STANDARD_LABELS:
            assert labels.get(label), f"{manifest['kind']}/{manifest['metadata']['name']} lacks {label}"
        assert labels["app.kubernetes.io/name"] == "samhandling"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "samhandling"
        assert re.fullmatch(r"samhandling-\d+\.\d+\.\d+.*", labels["helm.sh/chart"])


def test_selectors_use_only_name_instance_and_component(rendered: Rendered):
    for deployment in rendered.of_kind("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(selector) == SELECTOR_LABELS
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert set(STANDARD_LABELS) <= set(pod_labels)
    for service in rendered.regular("Service"):
        assert set(service["spec"]["selector"]) == SELECTOR_LABELS
        assert service["spec"]["selector"] == rendered.deployment(component(service))["spec"]["selector"]["matchLabels"]
    for policy in rendered.regular("NetworkPolicy"):
        assert set(policy["spec"]["podSelector"]["matchLabels"]) == SELECTOR_LABELS


# --- CloudNativePG ---------------------------------------------------------------------------------


def test_cloudnativepg_is_off_by_default(renderings: dict[str, Rendered]):
    assert renderings["defaults"].of_kind("Cluster") == []
    assert renderings["small-test"].of_kind("Cluster") == []


def test_the_production_example_runs_on_a_cloudnativepg_cluster(renderings: dict[str, Rendered]):
    rendered = renderings["production-cloudnativepg"]
    (cluster,) = rendered.of_kind("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    # The fields used, as the Cluster CRD defines them (no schema for it ships with kubernetes-validate).
    assert set(spec) <= {
        "instances",
        "imageName",
        "primaryUpdateStrategy",
        "enableSuperuserAccess",
        "bootstrap",
        "storage",
        "postgresql",
        "resources",
    }
    assert isinstance(spec["instances"], int) and spec["instances"] >= 2
    assert spec["enableSuperuserAccess"] is False
    assert set(spec["bootstrap"]) == {"initdb"} and set(spec["bootstrap"]["initdb"]) == {"database", "owner"}
    assert set(spec["storage"]) <= {"size", "storageClass"}
    assert all(isinstance(v, str) for v in spec["postgresql"]["parameters"].values())
    # The operator's app Secret <cluster>-app holds the owner's URL under `uri`.
    for service in ("access", "storage"):
        container = rendered.container(service)
        reference = env_of(container)["SAMHANDLING_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    assert f"{cluster['metadata']['name']}-app" in rendered.notes


def test_the_small_test_example_is_small(renderings: dict[str, Rendered]):
    rendered = renderings["small-test"]
    assert all(d["spec"]["replicas"] == 1 for d in rendered.of_kind("Deployment"))
    assert rendered.of_kind("PodDisruptionBudget") == []
    env = env_of(rendered.container("access"))
    assert env["SAMHANDLING_ENVIRONMENT"]["value"] == "test"


def test_the_chart_defaults_agree_with_the_services(renderings: dict[str, Rendered]):
    """The tenant table and, in the small test install, the dev-token issuer and audience."""
    from services.platform.settings import DEV_TOKEN_AUDIENCE, DEV_TOKEN_ISSUER
    from services.platform.tenants import DEFAULT_TENANTS

    defaults = env_of(renderings["defaults"].container("overview"))
    assert defaults["SAMHANDLING_TENANTS"]["value"] == DEFAULT_TENANTS
    small = env_of(renderings["small-test"].container("overview"))
    assert small["SAMHANDLING_TOKEN_ISSUER"]["value"] == DEV_TOKEN_ISSUER
    assert small["SAMHANDLING_TOKEN_AUDIENCE"]["value"] == DEV_TOKEN_AUDIENCE
