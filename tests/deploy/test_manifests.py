"""deploy/: the Kubernetes manifests render, validate offline, and agree with the service they run."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import ServiceConfig, build_parser, load_config
from tests.conftest import REPO
from trainer.config import parse_config

DEPLOY = REPO / "deploy"
KUSTOMIZATIONS = ("base", "overlays/kserve", "overlays/keda", "overlays/canary")
SECRET_FILES = ("db_password", "mlflow_password", "flask_secret_key")  # what deploy/README.md has people create
K8S_VERSION = "1.37.0"
CRD_GROUPS = ("serving.kserve.io", "keda.sh")  # the custom kinds' API groups, checked against their CRDs
CRDS_ENV = "MNIST37_K8S_CRDS"  # else the CRD folder CI lays beside the checkout
OUR_IMAGE = "mnist37"  # the name the manifests give the project's image; Kustomize's images: sets the rest
SERVICE_COMMAND = ["python", "-m", "service"]
# Retry conditions under which the replica did not compute the call (base/envoy/envoy.yaml says why).
SAFE_RETRIES = {"unavailable", "connect-failure", "refused-stream", "reset-before-request", "retriable-status-codes"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|(^|_)KEY($|_)")
PASSWORD_IN_URI = re.compile(r"://[^/@:\s]+:[^/@\s]+@")
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the KServe CRD is large

Obj = dict[str, Any]
Render = Callable[[str], tuple[Obj, ...]]


def tool(name: str) -> str:
    """The venv's copy of a command-line tool, else the PATH's; skipped (failed under CI) when neither."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed: `pip install -e '.[dev]'` brings it"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def deploy_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/ copied, with throwaway files where the secrets go: the real ones are never committed."""
    copy_root = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy_root, ignore=shutil.ignore_patterns("secrets"))
    (copy_root / "base" / "secrets").mkdir()
    for name in SECRET_FILES:
        (copy_root / "base" / "secrets" / name).write_text(f"not-a-secret-{name}\n")
    return copy_root


@pytest.fixture(scope="session")
def render(deploy_copy: Path) -> Render:
    """`kubectl kustomize` of one kustomization, parsed; each rendered once per session."""
    kubectl = tool("kubectl")

    @cache
    def rendered(name: str) -> tuple[Obj, ...]:
        run = subprocess.run([kubectl, "kustomize", str(deploy_copy / name)], capture_output=True, text=True)
        assert run.returncode == 0, f"kubectl kustomize deploy/{name} failed:\n{run.stderr}"
        return tuple(doc for doc in yaml.load_all(run.stdout, Loader=LOADER) if doc)

    return rendered


@pytest.fixture(params=KUSTOMIZATIONS)
def objects(request: pytest.FixtureRequest, render: Render) -> tuple[Obj, ...]:
    return render(request.param)


@dataclass(frozen=True)
class Pod:
    where: str  # Kind/name of the object holding the pod template
    spec: Obj
    labels: dict[str, str]
    workload: Obj


def pods(objects: tuple[Obj, ...]) -> Iterator[Pod]:
    """Every pod template, the InferenceService's predictor included (it is a pod spec with extras)."""
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            template = obj["spec"]["template"]
            yield Pod(where, template["spec"], template["metadata"].get("labels", {}), obj)
        elif obj["kind"] == "InferenceService":
            predictor = obj["spec"]["predictor"]
            yield Pod(where, predictor, predictor.get("labels", {}), obj)


def service_pods(objects: tuple[Obj, ...]) -> list[tuple[Pod, Obj]]:
    found = [(pod, c) for pod in pods(objects) for c in pod.spec["containers"] if c.get("command") == SERVICE_COMMAND]
    assert found, "no container runs `python -m service`"
    return found


def one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_env(container: Obj) -> dict[str, str]:
    """The container's literal environment, as the service would read it ($(POD_NAME) filled in)."""
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return {k: v.replace("$(POD_NAME)", "mnist37-inference-0") for k, v in env.items()}


def port_number(pod: Pod, port: int | str) -> int:
    """A probe's or Service's port, named or numbered, as a number in the pod's containers."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for c in pod.spec["containers"] for p in c.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"{pod.where}: no container port named {port!r}"
    return int(numbers[0])


def walk(node: Any) -> Iterator[Any]:
    """node and everything inside it, depth first."""
    yield node
    for child in node.values() if isinstance(node, dict) else node if isinstance(node, list | tuple) else ():
        yield from walk(child)


def is_ours(image: str) -> bool:
    return image.split(":")[0].rsplit("/")[-1] == OUR_IMAGE


@cache
def sources() -> tuple[Obj, ...]:
    """Every YAML document under deploy/, as committed (Envoy's bootstraps included)."""
    return tuple(doc for path in sorted(DEPLOY.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc)


def routes(bootstrap: Obj) -> Iterator[Obj]:
    """Each route of an Envoy bootstrap's listeners (one HTTP connection manager each)."""
    for listener in bootstrap["static_resources"]["listeners"]:
        (chain,) = listener["filter_chains"]
        (manager,) = chain["filters"]  # HTTP routing per request: no tcp_proxy
        assert manager["name"] == "envoy.filters.network.http_connection_manager", listener["name"]
        for host in manager["typed_config"]["route_config"]["virtual_hosts"]:
            yield from (route["route"] for route in host["routes"])


# 1. Rendering


def test_every_kustomization_renders(objects: tuple[Obj, ...]) -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "two objects share a kind and a name"
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {one(objects, "Namespace", "mnist37")["metadata"]["name"]}, namespaces


# 2. Core kinds against Kubernetes' own schemas


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    """The kubernetes-validate package (its schemas of every core kind, release by release)."""
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        tool("kubernetes-validate")  # skips (fails under CI), naming how to install it
        raise
    return kubernetes_validate


def test_core_kinds_validate_strictly(objects: tuple[Obj, ...], kubernetes_validate: Any) -> None:
    errors = []
    for obj in (o for o in objects if o["apiVersion"].split("/")[0] not in CRD_GROUPS):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:  # the tool only warns; a kind it cannot check fails
            errors.append(f"{where}: {e.message}")
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_an_unknown_field(render: Render, kubernetes_validate: Any) -> None:
    deployment = copy.deepcopy(one(render("base"), "Deployment", "mnist37-inference"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# 3. Custom kinds against their CRDs


def closed(schema: Obj) -> Obj:
    """The schema with each object that lists its fields closed to others, as the API server treats them."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: closed(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = closed(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [closed(sub) for sub in out[key]]
    return out


@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) → the CRD's openAPIV3Schema, closed; skipped where the CRD folder is absent."""
    folder = Path(os.environ.get(CRDS_ENV) or REPO.parent / "shared" / "k8s-crds")
    if not folder.is_dir():
        pytest.skip(f"no CRD folder at {folder} (set {CRDS_ENV}): custom kinds are not checked here")
    schemas = {}
    for path in sorted(folder.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=LOADER)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = closed(version["schema"]["openAPIV3Schema"])
    return schemas


def crd_errors(obj: Obj, schemas: dict[tuple[str, str], Obj]) -> list[str]:
    from jsonschema import Draft7Validator

    schema = schemas.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no CRD for {obj['apiVersion']} {obj['kind']}"]
    found = Draft7Validator(schema).iter_errors(obj)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in sorted(found, key=lambda e: list(map(str, e.path)))]


def test_custom_kinds_validate_against_their_crds(
    objects: tuple[Obj, ...], crd_schemas: dict[tuple[str, str], Obj]
) -> None:
    errors = []
    for obj in (o for o in objects if o["apiVersion"].split("/")[0] in CRD_GROUPS):
        errors += [f"{obj['kind']}/{obj['metadata']['name']}: {e}" for e in crd_errors(obj, crd_schemas)]
        assert set(obj["metadata"]) <= {"name", "namespace", "labels", "annotations"}, obj["metadata"]
    assert not errors, "\n".join(errors)


def test_crd_check_rejects_an_unknown_field(render: Render, crd_schemas: dict[tuple[str, str], Obj]) -> None:
    service = copy.deepcopy(one(render("overlays/kserve"), "InferenceService", "mnist37"))
    assert not crd_errors(service, crd_schemas)
    service["spec"]["predictor"]["minReplica"] = 2
    assert any("minReplica" in e for e in crd_errors(service, crd_schemas))


# 4. The manifests against the service, the image and each other


def test_service_pods_run_the_service_defaults(objects: tuple[Obj, ...]) -> None:
    known = set(re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", build_parser().format_help()))
    for pod, container in service_pods(objects):
        unknown = {e["name"] for e in container["env"]} - known - {"MLFLOW_TRACKING_USERNAME", "POD_NAME"}
        assert unknown <= {"MLFLOW_TRACKING_PASSWORD"}, f"{pod.where}: settings the service lacks: {unknown}"
        config = load_config([], environ=pod_env(container))
        assert (config.host, config.http_host, config.metrics_host) == ("0.0.0.0",) * 3, pod.where
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        grpc_name = next(iter(ports))  # `grpc`, or KServe's `h2c`: first, as KServe reads it
        assert grpc_name in ("grpc", "h2c"), pod.where
        assert ports == {grpc_name: config.port, "http": config.http_port, "metrics": config.metrics_port}, pod.where
        assert (config.port, config.http_port, config.metrics_port) == (
            ServiceConfig.port,
            ServiceConfig.http_port,
            ServiceConfig.metrics_port,
        ), f"{pod.where}: not the service's default ports"
        assert config.replica_name == "mnist37-inference-0", f"{pod.where}: REPLICA_NAME is not $(POD_NAME)"
        pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
        assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, pod.where


def test_probes_tell_waiting_from_dead(objects: tuple[Obj, ...]) -> None:
    for pod, container in service_pods(objects):
        ready, live, startup = (container[f"{kind}Probe"] for kind in ("readiness", "liveness", "startup"))
        # Ready only with a model: the gRPC health of the whole server.
        assert ready["grpc"] == {"port": ServiceConfig.port, "service": ""}, pod.where
        # Alive while the process answers, model or not: a replica waiting for the registry is not restarted.
        for probe in (live, startup):
            assert probe["httpGet"]["path"] == "/v2/health/live", pod.where
            assert port_number(pod, probe["httpGet"]["port"]) == ServiceConfig.http_port, pod.where
        assert live != ready, pod.where


def test_pods_outlive_the_drain(objects: tuple[Obj, ...]) -> None:
    for pod, container in service_pods(objects):
        config = load_config([], environ=pod_env(container))
        assert {"DRAIN_SECONDS", "GRACE_SECONDS"} <= set(pod_env(container)), f"{pod.where}: set the drain explicitly"
        assert config.drain_seconds <= config.grace_seconds, pod.where  # the grace includes the drain
        period = pod.spec["terminationGracePeriodSeconds"]
        assert period > config.drain_seconds + config.grace_seconds, f"{pod.where}: SIGKILL before the drain ends"


def test_every_pod_runs_non_root_and_read_only(objects: tuple[Obj, ...]) -> None:
    app_uid = int(re.findall(r"--uid (\d+)", (REPO / "Dockerfile").read_text())[0])
    for pod in pods(objects):
        context = pod.spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, pod.where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, pod.where
        for container in pod.spec["containers"] + pod.spec.get("initContainers", []):
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, f"{pod.where} {container['name']}"
            assert "requests" in container["resources"] and "limits" in container["resources"], pod.where
            if is_ours(container["image"]):
                assert context["runAsUser"] == app_uid, f"{pod.where}: not the Dockerfile's user {app_uid}"
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{pod.where}: nowhere to write on a read-only root"


def test_one_reference_to_our_image(objects: tuple[Obj, ...]) -> None:
    containers = [c for pod in pods(objects) for c in pod.spec["containers"]]
    ours = {c["image"] for c in containers if is_ours(c["image"])}
    assert len(ours) == 1, ours
    roles = {" ".join(c.get("command", [])[:3]) for c in containers if c["image"] in ours}
    assert {"python -m service", "mlflow server --app-name=basic-auth"} <= roles, roles


def test_our_image_is_set_in_one_place() -> None:
    entries = [i for doc in sources() for i in doc.get("images", []) if i["name"] == OUR_IMAGE]
    assert len(entries) == 1, entries
    named = {n["image"] for n in walk(sources()) if isinstance(n, dict) and isinstance(n.get("image"), str)}
    assert {n for n in named if is_ours(n)} == {OUR_IMAGE}, "an image of ours named other than by Kustomize"


def test_no_secret_value_is_committed(objects: tuple[Obj, ...]) -> None:
    assert not [d for d in sources() if d.get("kind") == "Secret"], "a Secret manifest in deploy/"
    for generator in (g for d in sources() for g in d.get("secretGenerator", [])):
        assert set(generator) == {"name", "files"}, generator  # no literals, no env files
        assert all(f.split("=")[-1].startswith("secrets/") for f in generator["files"]), generator
    assert "/base/secrets/" in (DEPLOY / ".gitignore").read_text().split()
    for pod in pods(objects):
        for container in pod.spec["containers"]:
            for env in (e for e in container.get("env", []) if SECRET_NAME.search(e["name"])):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], f"{pod.where}: {env['name']}"
    assert not [s for s in walk(objects) if isinstance(s, str) and PASSWORD_IN_URI.search(s)], "a password in a URI"


def test_services_select_one_workload_each(objects: tuple[Obj, ...]) -> None:
    all_pods = list(pods(objects))
    for obj in (o for o in objects if o["kind"] in ("Service", "PodDisruptionBudget")):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector) if obj["kind"] == "PodDisruptionBudget" else selector
        chosen = [p for p in all_pods if selector and selector.items() <= p.labels.items()]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert len(chosen) == 1, f"{where} selects {[p.where for p in chosen]}"
        for port in obj["spec"].get("ports", []):
            port_number(chosen[0], port["targetPort"])


def test_the_trainer_downloads_mnist_into_its_volume(objects: tuple[Obj, ...]) -> None:
    # A data folder named by flag or environment is read as it is, never downloaded into: on a new
    # volume the run would fail for want of MNIST.
    workdir = re.findall(r"^WORKDIR (\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)[-1]
    trainers = [(p, c) for p in pods(objects) for c in p.spec["containers"] if c["name"] == "trainer"]
    assert trainers, "no trainer container"
    for pod, container in trainers:
        config = parse_config(container.get("args", []), pod_env(container))
        assert config.download, f"{pod.where}: reads MNIST from {config.data_dir} and never downloads it"
        folder = Path(container.get("workingDir", workdir)) / config.data_dir
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert str(folder) in mounts, f"{pod.where}: downloads MNIST into {folder}, not into a volume"


def test_everyone_reaches_the_one_registry(objects: tuple[Obj, ...]) -> None:
    clients = [(p, c) for p in pods(objects) for c in p.spec["containers"] if "MLFLOW_TRACKING_URI" in pod_env(c)]
    assert {c["name"] for _, c in clients} >= {"trainer"}, "the trainer does not reach MLflow"
    for pod, container in clients:
        env = pod_env(container)
        host, port = env["MLFLOW_TRACKING_URI"].removeprefix("http://").split(":")
        mlflow = one(objects, "Service", host)
        assert int(port) in {p["port"] for p in mlflow["spec"]["ports"]}, pod.where
        assert env["MODEL_NAME"] == ServiceConfig.model_name, pod.where
        assert env["MODEL_ALIAS"] in (ServiceConfig.alias, "challenger"), pod.where
        assert env["MLFLOW_TRACKING_USERNAME"] == "admin", pod.where


def test_one_autoscaler_per_champion(objects: tuple[Obj, ...]) -> None:
    for pod, container in service_pods(objects):
        name = pod.workload["metadata"]["name"]
        hpas = [
            o for o in objects if o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["name"] == name
        ]
        keda = [o for o in objects if o["kind"] == "ScaledObject" and o["spec"]["scaleTargetRef"]["name"] == name]
        minimums = [h["spec"]["minReplicas"] for h in hpas] + [k["spec"]["minReplicaCount"] for k in keda]
        if pod.workload["kind"] == "InferenceService":
            minimums.append(pod.spec["minReplicas"])
        if pod_env(container)["MODEL_ALIAS"] == "challenger":
            assert not minimums and pod.workload["spec"]["replicas"] >= 1, pod.where
            continue
        assert len(minimums) == 1 and minimums[0] >= 2, f"{pod.where}: autoscaled from {minimums}"
        # A count in the manifest would be forced back onto a scaled-out Deployment by every apply.
        assert "replicas" not in pod.workload["spec"], pod.where
        for scaled in keda:
            (trigger,) = scaled["spec"]["triggers"]
            assert trigger["type"] == "prometheus" and "mnist37_in_flight_calls" in trigger["metadata"]["query"]


def test_the_load_gauge_exists() -> None:
    from service.metrics import ServiceMetrics

    assert "mnist37_in_flight_calls" in {m.name for m in ServiceMetrics("mnist-3v7", "champion").registry.collect()}


def test_kserve_predictor_is_the_base_pod(render: Render) -> None:
    kserve = render("overlays/kserve")
    service = one(kserve, "InferenceService", "mnist37")
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Standard", "RawDeployment")
    assert not [o for o in kserve if o["kind"] == "Deployment" and o["metadata"]["name"] == "mnist37-inference"]
    predictor = dict(service["spec"]["predictor"])
    (container,) = predictor.pop("containers")
    base = one(render("base"), "Deployment", "mnist37-inference")["spec"]["template"]["spec"]
    (base_container,) = base["containers"]
    assert container["name"] == "kserve-container" and container["ports"][0]["name"] == "h2c"
    same_ports = [{k: v for k, v in p.items() if k not in ("name", "protocol")} for p in container["ports"]]
    assert same_ports == [{"containerPort": p["containerPort"]} for p in base_container["ports"]]
    drop = ("name", "ports")
    assert {k: v for k, v in container.items() if k not in drop} == {
        k: v for k, v in base_container.items() if k not in drop
    }, "the predictor's container drifted from the base's"
    for key in ("securityContext", "terminationGracePeriodSeconds", "volumes", "automountServiceAccountToken"):
        assert predictor[key] == base[key], key


def envoy_bootstrap(objects: tuple[Obj, ...]) -> Obj:
    deployment = one(objects, "Deployment", "mnist37-envoy")["spec"]["template"]["spec"]
    (container,) = deployment["containers"]
    path = Path(container["args"][container["args"].index("--config-path") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    (volume,) = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    bootstrap: Obj = yaml.safe_load(config_map["data"][path.name])
    return bootstrap


def test_envoy_balances_over_the_headless_services(objects: tuple[Obj, ...]) -> None:
    for cluster in envoy_bootstrap(objects)["static_resources"]["clusters"]:
        name = cluster["name"]
        assert cluster["type"] == "STRICT_DNS" and cluster["load_assignment"]["cluster_name"] == name
        ((endpoint,),) = [
            [e["endpoint"] for e in group["lb_endpoints"]] for group in cluster["load_assignment"]["endpoints"]
        ]
        address = endpoint["address"]["socket_address"]
        service_name, namespace = address["address"].split(".")[:2]
        assert name in (service_name, f"{service_name}-http"), f"cluster {name} is not named for {service_name}"
        service = one(objects, "Service", service_name)
        assert service["spec"]["clusterIP"] == "None" and service["metadata"]["namespace"] == namespace
        assert address["address"] == f"{service_name}.{namespace}.svc.cluster.local"
        (port,) = [p for p in service["spec"]["ports"] if p["port"] == address["port_value"]]
        assert "outlier_detection" in cluster, name
        (check,) = cluster["health_checks"]
        if "typed_extension_protocol_options" in cluster:  # HTTP/2 to the replicas: gRPC
            assert port["appProtocol"] == "kubernetes.io/h2c" and port["port"] == ServiceConfig.port, name
            assert check["grpc_health_check"] == {}, name  # service "": the server as a whole
        else:
            assert port["port"] == ServiceConfig.http_port and check["http_health_check"]["path"] == "/v2/health/ready"


def test_envoy_listens_where_its_pods_say_and_retries_safely(objects: tuple[Obj, ...]) -> None:
    bootstrap = envoy_bootstrap(objects)
    (container,) = one(objects, "Deployment", "mnist37-envoy")["spec"]["template"]["spec"]["containers"]
    listening = {
        listener["address"]["socket_address"]["port_value"] for listener in bootstrap["static_resources"]["listeners"]
    }
    assert (
        listening == {p["containerPort"] for p in container["ports"]} == {ServiceConfig.port, ServiceConfig.http_port}
    )
    clusters = {c["name"] for c in bootstrap["static_resources"]["clusters"]}
    for route in routes(bootstrap):
        split = route.get("weighted_clusters", {"clusters": [{"name": route.get("cluster")}]})
        assert {c["name"] for c in split["clusters"]} <= clusters, route
        assert set(route["retry_policy"]["retry_on"].split(",")) <= SAFE_RETRIES, route["retry_policy"]


def test_the_canary_bootstrap_is_the_base_one_split() -> None:
    base = yaml.safe_load((DEPLOY / "base" / "envoy" / "envoy.yaml").read_text())
    canary = yaml.safe_load((DEPLOY / "overlays" / "canary" / "envoy.yaml").read_text())
    shares = []
    for route in routes(canary):
        champion, challenger = route.pop("weighted_clusters")["clusters"]
        assert challenger["name"] == champion["name"].replace("inference", "inference-challenger")
        route["cluster"] = champion["name"]
        shares.append((champion["weight"], challenger["weight"]))
    assert len(set(shares)) == 1 and sum(shares[0]) == 100 and 0 < shares[0][1] < 100, shares
    clusters = canary["static_resources"].pop("clusters")
    champions = [c for c in clusters if "challenger" not in c["name"]]
    challengers = [c for c in clusters if "challenger" in c["name"]]
    renamed = yaml.safe_load(yaml.safe_dump(champions).replace("mnist37-inference", "mnist37-inference-challenger"))
    assert challengers == renamed, "the challenger's clusters differ from the champion's"
    canary["static_resources"]["clusters"] = champions
    assert canary == base, "the canary bootstrap differs from the base's in more than the split"
