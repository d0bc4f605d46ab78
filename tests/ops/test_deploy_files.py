"""The deployment files stay valid and say the same as the code: Kubernetes manifests (offline
schemas), the KEDA ScaledObject (a CRD: its structure checked here), docker-compose's healthcheck and
monitoring profile, and the Grafana dashboard, whose every query must name a metric topicq exports.

And they are safe to apply: every container restricted (non-root, read-only root filesystem, no
privilege escalation, no capabilities, seccomp RuntimeDefault), every port a NetworkPolicy opens
behind a default deny, credentials only from Secrets the operator creates (none in the manifests),
Redis with AOF. kube-linter and kubeconform are not on PyPI or npm, so these rules are checked here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
CORE_MANIFESTS = ["configmap.yaml", "models-pvc.yaml", "migrate-job.yaml", "worker-deployment.yaml",
                  "redis.yaml", "postgres.yaml", "network-policies.yaml"]
PROMETHEUS_BUILTINS = {"up"}
GEMINI_SECRET = "topicq-gemini"  # created by the operator (README, "Deployment"), never shipped
WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label names and functions left out)."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    return {w for w in words if w.startswith("topicq_")} | (words & PROMETHEUS_BUILTINS)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def applied() -> list[dict[str, Any]]:
    """Every object `kubectl apply -k deploy/kubernetes` creates."""
    return [d for name in load(KUBE / "kustomization.yaml")["resources"] for d in load_all(KUBE / name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in applied() if d["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    [document] = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return document


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("name", CORE_MANIFESTS)
def test_manifest_validates_against_the_kubernetes_schema(name: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for document in load_all(KUBE / name):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_kustomize_builds_the_manifests() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert {d["kind"] for d in yaml.safe_load_all(built.stdout)} >= {"Deployment", "NetworkPolicy"}


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
    assert secret_volume["secret"] == {"secretName": GEMINI_SECRET, "optional": True}


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
    assert {t["type"] for t in spec["triggers"]} == {"prometheus", "redis"}
    for trigger in spec["triggers"]:  # KEDA reads every metadata value as a string
        assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger
    [prometheus] = [t["metadata"] for t in spec["triggers"] if t["type"] == "prometheus"]
    assert {"serverAddress", "query", "threshold"} <= set(prometheus)
    assert metric_names(prometheus["query"]) == {"topicq_queue_depth", "topicq_queue_messages"}
    assert f'queue="{settings["QUEUE"]}"' in prometheus["query"]
    lists = [t["metadata"] for t in spec["triggers"] if t["type"] == "redis"]
    for redis in lists:
        assert redis["passwordFromEnv"] == "REDIS_PASSWORD"
        assert set(redis) <= {"address", "addressFromEnv", "host", "port", "databaseIndex", "listName",
                              "listLength", "activationListLength", "enableTLS", "usernameFromEnv",
                              "passwordFromEnv"}
    # The queue and the lists a stock Celery producer's priorities land on (kombu's steps 3, 6, 9).
    queue = settings["QUEUE"]
    assert [r["listName"] for r in lists] == [queue] + [f"{queue}\x06\x16{n}" for n in (3, 6, 9)]
    redis = lists[0]
    [worker] = deployment["spec"]["template"]["spec"]["containers"]
    assert "REDIS_PASSWORD" in env_of(worker)
    worker_url = env_of(worker)["REDIS_URL"]["value"]
    assert worker_url == f"redis://:$(REDIS_PASSWORD)@{redis['address']}/{redis['databaseIndex']}"
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


def pods() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]) for d in applied()
            if d["kind"] in WORKLOADS]


def test_no_secret_is_shipped_and_every_credential_comes_from_a_secret() -> None:
    # `kubectl apply -k` must not overwrite a key the operator created.
    assert of_kind("Secret") == []
    assert not list(KUBE.glob("secret*.yaml"))
    text = "\n".join((KUBE / name).read_text() for name in load(KUBE / "kustomization.yaml")["resources"])
    assert not re.search(r"//[^/\s:@]*:(?!\$\()[^@\s]*@", text), "a literal password in a URL"
    for where, template in pods():
        for container in template["spec"]["containers"]:
            env = env_of(container)
            for name, entry in env.items():
                if "PASSWORD" in name or "AUTH" in name:
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{where}: {name}"
            for name in ("REDIS_URL", "DATABASE_URL"):
                if name in env:  # the URL takes the password from the Secret-backed variable
                    assert "$(" in env[name]["value"] and "PASSWORD" in env[name]["value"], where
    for where, template in pods():
        if template["metadata"]["labels"]["app.kubernetes.io/name"] == "topicq":
            [container] = template["spec"]["containers"]
            assert {"REDIS_URL", "DATABASE_URL"} & set(env_of(container)), where
    config = load(KUBE / "configmap.yaml")["data"]
    assert "REDIS_URL" not in config and "DATABASE_URL" not in config


@pytest.mark.parametrize("where, template", pods(), ids=[w for w, _ in pods()])
def test_every_container_runs_restricted(where: str, template: dict[str, Any]) -> None:
    pod = template["spec"]
    pod_context = pod.get("securityContext", {})
    assert pod.get("automountServiceAccountToken") is False, where
    for container in pod.get("initContainers", []) + pod["containers"]:
        context = {**pod_context, **container.get("securityContext", {})}
        name = f"{where} {container['name']}"
        assert context.get("runAsNonRoot") is True, name
        assert context.get("runAsUser", 1) != 0, name
        assert context.get("readOnlyRootFilesystem") is True, name
        assert context.get("allowPrivilegeEscalation") is False, name
        assert context.get("privileged", False) is False, name
        assert context.get("capabilities") == {"drop": ["ALL"]}, name
        assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, name


def test_the_worker_writes_only_to_its_volumes() -> None:
    """With a read-only root filesystem, TOPICQ_HOME (the image's default) and the heartbeat file
    sit on emptyDir volumes; the image's encoder directory is only read."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    [home] = re.findall(r"TOPICQ_HOME=(\S+)", dockerfile)
    heartbeat = Path(load(KUBE / "configmap.yaml")["data"]["HEARTBEAT_FILE"])
    for where, template in pods():
        if template["metadata"]["labels"]["app.kubernetes.io/name"] != "topicq":
            continue
        pod = template["spec"]
        [container] = pod["containers"]
        scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(home) in scratch, where
        assert mounts.get(str(heartbeat.parent)) in scratch, where


def test_the_image_runs_as_a_numeric_non_root_user_the_pods_name() -> None:
    # runAsNonRoot can only be checked by the kubelet for a numeric USER.
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    for where, template in pods():
        if template["spec"]["containers"][0]["image"].startswith("topicq"):
            assert template["spec"]["securityContext"]["runAsUser"] == int(uid), where


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # matchExpressions are not used here
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def port_opened(rule: dict[str, Any], port: int, name: str | None) -> bool:
    return any(p.get("port") in (port, name) for p in rule.get("ports", []))


def ingress_rules_to(labels: dict[str, str], port: int, name: str | None) -> list[dict[str, Any]]:
    return [rule for policy in of_kind("NetworkPolicy") if selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("ingress", []) if port_opened(rule, port, name)]


def test_a_default_deny_covers_every_pod() -> None:
    policies = of_kind("NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
               and "ingress" not in p["spec"] and "egress" not in p["spec"] for p in policies)


def test_every_port_is_opened_by_a_network_policy_and_only_to_whom_needs_it() -> None:
    labels_of = {d["metadata"]["name"]: t["metadata"]["labels"] for d in applied() if d["kind"] in WORKLOADS
                 for t in [d["spec"]["template"]]}
    services = of_kind("Service")
    assert {s["metadata"]["name"] for s in services} == {"redis", "postgres"}
    for service in services:
        pod_labels = next(labels for labels in labels_of.values() if selects(
            {"matchLabels": service["spec"]["selector"]}, labels))
        for port in service["spec"]["ports"]:
            rules = ingress_rules_to(pod_labels, port["port"], port.get("targetPort"))
            assert rules, f"service {service['metadata']['name']} port {port['port']}"
            for rule in rules:  # topicq's pods, and KEDA's operator for its redis trigger
                for peer in rule["from"]:
                    assert peer in ({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "topicq"}}},
                                    {"namespaceSelector": {"matchLabels": {
                                        "kubernetes.io/metadata.name": "keda"}}}), peer
    # The worker's metrics: from the monitoring namespace only.
    worker = labels_of["topicq-worker"]
    rules = ingress_rules_to(worker, 9800, "metrics")
    assert rules and all(rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}] for rule in rules)


def test_the_worker_may_reach_redis_postgresql_dns_and_https_only() -> None:
    worker = named("Deployment", "topicq-worker")["spec"]["template"]["metadata"]["labels"]
    egress = [rule for policy in of_kind("NetworkPolicy") if selects(policy["spec"]["podSelector"], worker)
              for rule in policy["spec"].get("egress", [])]
    ports = {(p.get("protocol", "TCP"), p["port"]) for rule in egress for p in rule["ports"]}
    assert ports == {("TCP", 6379), ("TCP", 5432), ("UDP", 53), ("TCP", 53), ("TCP", 443)}
    https = [rule for rule in egress if port_opened(rule, 443, None)]
    for rule in https:  # Gemini: the internet, not the cluster's own addresses
        for peer in rule["to"]:
            assert "10.0.0.0/8" in peer["ipBlock"]["except"]


def test_the_clusters_redis_keeps_queued_posts_across_a_restart() -> None:
    [redis] = named("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert "secretKeyRef" in env_of(redis)["REDIS_PASSWORD"]["valueFrom"]
    assert any(m["mountPath"] == "/data" for m in redis["volumeMounts"])
