"""The deployment files stay valid and say the same as the code: Kubernetes manifests (offline
schemas), the KEDA ScaledObject (a CRD: its structure checked here), docker-compose's healthcheck and
monitoring profile, and the Grafana dashboard, whose every query must name a metric topicq exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
CORE_MANIFESTS = ["configmap.yaml", "models-pvc.yaml", "secret.yaml", "migrate-job.yaml",
                  "worker-deployment.yaml"]
PROMETHEUS_BUILTINS = {"up"}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label names and functions left out)."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    return {w for w in words if w.startswith("topicq_")} | (words & PROMETHEUS_BUILTINS)


@pytest.mark.parametrize("name", CORE_MANIFESTS)
def test_manifest_validates_against_the_kubernetes_schema(name: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(load(KUBE / name), kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = load(KUBE / "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def test_worker_deployment_probes_the_heartbeat_and_readiness_without_celery_ping() -> None:
    deployment, settings = load(KUBE / "worker-deployment.yaml"), load(KUBE / "configmap.yaml")["data"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    port = int(settings["METRICS_PORT"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["exec"]["command"] == ["topicq", "health"]
    assert "celery" not in json.dumps(container)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    # Long enough to finish a batch: its wait, then one Gemini call with its SDK retries.
    defaults = Settings()
    batch_s = defaults.batch_wait_s + defaults.gemini_timeout_s * (defaults.gemini_retries + 1)
    assert pod["terminationGracePeriodSeconds"] >= batch_s
    # The liveness probe gives the heartbeat at least its max age before a restart.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= float(settings["HEARTBEAT_MAX_AGE_S"])
    # The Gemini key is a mounted Secret, not an environment value.
    assert not any("GEMINI_API_KEY" == e["name"] for e in container.get("env", []))
    key_file = next(e["value"] for e in container["env"] if e["name"] == "GEMINI_API_KEY_FILE")
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret_volume["name"])
    assert key_file.startswith(mount["mountPath"] + "/")
    assert secret_volume["secret"]["secretName"] == load(KUBE / "secret.yaml")["metadata"]["name"]


def test_keda_scaled_object_scales_the_worker_on_the_whole_backlog() -> None:
    scaled, deployment = load(KUBE / "keda-scaledobject.yaml"), load(KUBE / "worker-deployment.yaml")
    settings = load(KUBE / "configmap.yaml")["data"]
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = scaled["spec"]
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                         "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount"}
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert all(isinstance(spec[k], int) for k in ("pollingInterval", "cooldownPeriod"))
    triggers = {t["type"]: t["metadata"] for t in spec["triggers"]}
    assert set(triggers) == {"prometheus", "redis"}
    for metadata in triggers.values():  # KEDA reads every metadata value as a string
        assert all(isinstance(v, str) for v in metadata.values()), metadata
    prometheus = triggers["prometheus"]
    assert {"serverAddress", "query", "threshold"} <= set(prometheus)
    assert metric_names(prometheus["query"]) == {"topicq_queue_depth"}
    assert f'queue="{settings["QUEUE"]}"' in prometheus["query"]
    redis = triggers["redis"]
    assert set(redis) <= {"address", "addressFromEnv", "host", "port", "databaseIndex", "listName",
                          "listLength", "activationListLength", "enableTLS", "usernameFromEnv",
                          "passwordFromEnv"}
    assert redis["listName"] == settings["QUEUE"]
    assert f"redis://{redis['address']}/{redis['databaseIndex']}" == settings["REDIS_URL"]
    int(redis["listLength"]), int(redis["activationListLength"]), float(prometheus["threshold"])


def test_compose_worker_healthcheck_and_monitoring_profile() -> None:
    spec = load(ROOT / "docker-compose.yml")
    services = spec["services"]
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "topicq", "health"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    scrape = load(ROOT / "deploy" / "prometheus" / "prometheus.yml")["scrape_configs"]
    [job] = scrape
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == Settings().metrics_port
    mounted = " ".join(services["grafana"]["volumes"] + services["prometheus"]["volumes"])
    assert "./deploy/grafana/dashboards" in mounted and "./deploy/prometheus/prometheus.yml" in mounted


def test_dashboard_loads_and_every_query_names_a_metric_topicq_exports() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "topicq.json").read_text())
    exported = metrics.exported_names() | PROMETHEUS_BUILTINS
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10
    read = set()
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {names - exported} is not exported"
        read |= names
    # What an operator needs on one screen: backlog, throughput, latency, errors, model version.
    assert {"topicq_queue_depth", "topicq_posts_total", "topicq_end_to_end_seconds_bucket",
            "topicq_retries_total", "topicq_model_info"} <= read
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
