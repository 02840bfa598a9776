"""The Kubernetes manifests: both overlays render with `kubectl kustomize`, every
document is valid for Kubernetes (its published schemas, unknown fields refused), and
every pod is hardened: non-root, read-only root filesystem, no capabilities, the
runtime's seccomp profile, secrets as files, probes on /healthz and /readyz."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.config.declared import VARIABLES
from tests import support

KUBERNETES = support.ROOT / "deploy" / "kubernetes"
#: The Kubernetes release whose schemas the documents must meet.
KUBERNETES_VERSION = "1.32.0"
#: Variables only the account commands read (beside the broker's own).
ACCOUNT_VARIABLES = {"TWILIO_MONITOR_API_KEY_SID", "TWILIO_MONITOR_API_KEY_SECRET"}


def render(overlay: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [support.required_tool("kubectl"), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "deprecated" not in rendered.stderr.lower(), rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def pod_specs(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [d["spec"]["template"]["spec"] for d in by_kind(documents, "Deployment")]
    specs += [
        d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in by_kind(documents, "CronJob")
    ]
    return specs


def broker_container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def settings(documents: list[dict[str, Any]]) -> dict[str, str]:
    (found,) = [
        document
        for document in by_kind(documents, "ConfigMap")
        if document["metadata"]["name"].startswith("token-broker-settings")
    ]
    return found["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["single", "fleet"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def test_every_document_is_valid_for_kubernetes(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = overlay
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_refused_by_the_validation() -> None:
    (deployment,) = by_kind(render("single"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_pod_is_hardened(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = overlay
    for spec in pod_specs(documents):
        assert spec["automountServiceAccountToken"] is False
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] != 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            hardened = container["securityContext"]
            assert hardened["allowPrivilegeEscalation"] is False
            assert hardened["readOnlyRootFilesystem"] is True
            assert hardened["capabilities"]["drop"] == ["ALL"]
            assert "add" not in hardened["capabilities"]
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["limits"]["memory"]
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            scratch = mounts["/tmp"]  # noqa: S108  # the mount path the manifests give
            assert "emptyDir" in volumes[scratch]  # the only writable place, but state


def test_secrets_reach_the_pods_as_files_only(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = overlay
    known = {variable.name for variable in VARIABLES} | ACCOUNT_VARIABLES
    secrets = {variable.name for variable in VARIABLES if variable.secret} | {
        "TWILIO_MONITOR_API_KEY_SECRET"
    }
    for spec in pod_specs(documents):
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"]:
            mounted = {
                mount["mountPath"]
                for mount in container["volumeMounts"]
                if "secret" in volumes[mount["name"]]
            }
            for variable in container.get("env", []):
                assert "valueFrom" not in variable, variable["name"]  # no secret in env
                name = variable["name"].removesuffix("_FILE")
                assert name in known, variable["name"]  # a variable the broker reads
                assert name not in secrets or variable["name"].endswith("_FILE")
                if variable["name"].endswith("_FILE"):
                    assert str(Path(variable["value"]).parent) in mounted
    for variable in secrets:
        assert variable not in settings(documents)


def test_probes_and_the_policy_file(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = overlay
    container = broker_container(documents)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (policy,) = [
        document
        for document in by_kind(documents, "ConfigMap")
        if document["metadata"]["name"].startswith("token-broker-policy")
    ]
    # The shipped policy, as the image carries it (edit both, or only this one for yours).
    assert policy["data"]["policy.toml"] == (support.ROOT / "policy.toml").read_text()
    assert settings(documents)["BROKER_POLICY_FILE"] == "/etc/token-broker/policy.toml"
    assert settings(documents)["BROKER_PROFILE"] == "production"


def test_single_is_one_instance_on_sqlite_on_a_volume() -> None:
    documents = render("single")
    (deployment,) = by_kind(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two writers
    state = settings(documents)["BROKER_STATE_URL"]
    assert state.startswith("sqlite:////var/lib/token-broker/")
    (claim,) = by_kind(documents, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in broker_container(documents)["volumeMounts"]}
    claimed = volumes[mounts["/var/lib/token-broker"]]["persistentVolumeClaim"]["claimName"]
    assert claimed == claim["metadata"]["name"]


def test_fleet_is_spread_scaled_protected_and_fenced() -> None:
    documents = render("fleet")
    (deployment,) = by_kind(documents, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert settings(documents)["BROKER_STATE_URL"].startswith("redis://")
    selector = spec["selector"]["matchLabels"]
    keys = {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    (budget,) = by_kind(documents, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= selector.items()
    (scaler,) = by_kind(documents, "HorizontalPodAutoscaler")
    assert scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaler["spec"]["minReplicas"] >= 2
    (fence,) = by_kind(documents, "NetworkPolicy")
    assert fence["spec"]["policyTypes"] == ["Ingress"]
    assert fence["spec"]["podSelector"]["matchLabels"].items() <= selector.items()
    (rule,) = fence["spec"]["ingress"]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    (service,) = by_kind(documents, "Service")
    assert service["spec"]["selector"].items() <= selector.items()
    (watch,) = by_kind(documents, "CronJob")
    pod = watch["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["containers"][0]["command"] == ["token-broker", "account", "watch", "--once"]
    assert not pod["metadata"]["labels"].items() >= selector.items()  # not a broker endpoint
