"""Checks of the deployment files, run by infra/check-deploy.sh with the tools
it installs (PyYAML, kubernetes-validate, helm-python-sdk, Compose v2).

    check_deploy.py static COMPOSE_BIN
        compose.yaml through the real Compose loader, the Helm chart through
        the real Helm engine (lint, render with several value sets, values
        that must be refused), every manifest against the Kubernetes
        schemas, and cross-checks that the pieces fit: ports, names, paths,
        mounts, sizes, the init Job's node list.

    check_deploy.py rehearse COMPOSE_BIN BIN_DIR
        The same configurations run with the real binaries on loopback: an
        S3 server (quiver-test-s3), nodes started with the chart's rendered
        quiver.toml and pod environment (and with compose.yaml's), and the
        chart's init script, which initialises the topology, changes nothing
        when run again, and adds a fourth node after a scale-up.

Every failure is one line naming the file and what is wrong; the exit status
is 1 when any check failed.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import kubernetes_validate
import yaml

import helm_python as helm

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "quiver"
COMPOSE = ROOT / "compose.yaml"
COMPOSE_TOML = ROOT / "deploy" / "compose" / "quiver.toml"
INIT_SCRIPT = CHART / "files" / "init-topology.sh"
DOCKERFILE = ROOT / "Dockerfile"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the
# newest kubernetes-validate ships schemas for.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
NAMESPACE = "cache"
RELEASE = "quiver"
# quiver-test-s3's fixed credentials (quiver-testkit).
TEST_S3_KEY = "quiver-test-key"
TEST_S3_SECRET = "quiver-test-secret-0123456789"
# Every subprocess gets an answer within this many seconds.
COMMAND_TIMEOUT = 120


class CheckFailed(Exception):
    """A check found the deployment files wrong; the message says where."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run(args: list[str], *, env: dict | None = None, timeout: int = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)


# --- the image's defaults ------------------------------------------------------


def image_env() -> dict[str, str]:
    """The ENV the Dockerfile gives the runtime image: what every container
    starts with before compose or Kubernetes add theirs."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    runtime = text.split("\nFROM ")[-1]
    env = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line):
                env[key] = value
    require("QUIVER_ADMIN_LISTEN" in env, "Dockerfile: the runtime stage sets no QUIVER_ADMIN_LISTEN")
    return env


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- compose.yaml ----------------------------------------------------------------


def compose_config(compose_bin: str, *extra: str, path: Path = COMPOSE) -> dict:
    result = run([compose_bin, "-f", str(path), *extra, "config", "--format", "json"])
    require(result.returncode == 0, f"{path.name}: docker compose config failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def check_compose_validator_refuses(compose_bin: str) -> None:
    """The loader really validates: a file with a wrong condition fails."""
    text = COMPOSE.read_text(encoding="utf-8").replace("service_healthy", "service_warm", 1)
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "compose.yaml"
        broken.write_text(text, encoding="utf-8")
        result = run([compose_bin, "-f", str(broken), "config", "--quiet"])
    require(result.returncode != 0, "docker compose config accepted a file with depends_on condition 'service_warm'")


def compose_nodes(config: dict) -> dict[str, dict]:
    return {name: svc for name, svc in config["services"].items() if "QUIVER_NODE_ID" in (svc.get("environment") or {})}


def check_compose(compose_bin: str) -> dict:
    config = compose_config(compose_bin)
    tools = compose_config(compose_bin, "--profile", "tools")
    require("cli" in tools["services"], "compose.yaml: no `cli` service in the tools profile")
    check_compose_validator_refuses(compose_bin)
    services = config["services"]
    defaults = image_env()
    settings = tomllib.loads(COMPOSE_TOML.read_text(encoding="utf-8"))
    nodes = compose_nodes(config)
    require(len(nodes) == 3, f"compose.yaml: expected 3 nodes, found {sorted(nodes)}")

    # The S3 service: the endpoint, bucket and keys the nodes use.
    s3 = services["s3"]
    source = settings["source"][0]
    endpoint = re.fullmatch(r"http://([^:/]+):(\d+)", source["endpoint"])
    require(endpoint is not None, f"{COMPOSE_TOML.name}: endpoint {source['endpoint']} is not http://HOST:PORT")
    require(endpoint.group(1) == "s3", f"{COMPOSE_TOML.name}: the endpoint host is not the `s3` service")
    require(any(p["target"] == int(endpoint.group(2)) for p in s3.get("ports", [])), "compose.yaml: the s3 service does not expose the endpoint's port")
    bucket = re.match(r"s3://([^/]+)/", source["url"]).group(1)
    require(f"-bucket={bucket}" in s3["command"], f"compose.yaml: the s3 service does not create bucket {bucket}")
    require(settings["cluster"]["topology"].startswith(f"s3://{bucket}/"), f"{COMPOSE_TOML.name}: the topology is not in bucket {bucket}")

    # The generated secrets are the files [auth] names, in the volume mounted there.
    auth_files = [settings["auth"][k] for k in ("tokens_file", "admin_token_file", "peer_token_file")]
    secrets_dir = str(Path(auth_files[0]).parent)
    require(all(str(Path(f).parent) == secrets_dir for f in auth_files), f"{COMPOSE_TOML.name}: token files in different directories")
    generator = services["secrets"]
    require(any(v["target"] == secrets_dir and not v.get("read_only") for v in generator["volumes"]), "compose.yaml: `secrets` does not write the token directory")
    for name in ("tokens", "admin-token", "peer-token"):
        require(name in generator["command"][0], f"compose.yaml: `secrets` does not write {name}")

    ids, urls = set(), {}
    for name, svc in nodes.items():
        env = {**defaults, **svc["environment"]}
        require(env["QUIVER_NODE_ID"] not in ids, f"compose.yaml: node id {env['QUIVER_NODE_ID']} twice")
        ids.add(env["QUIVER_NODE_ID"])
        listen = port_of(env["QUIVER_LISTEN"])
        advertise = re.fullmatch(r"grpc://([^:]+):(\d+)", env["QUIVER_ADVERTISE"])
        require(advertise is not None, f"compose.yaml: {name} advertises {env['QUIVER_ADVERTISE']}")
        require(advertise.group(1) == name, f"compose.yaml: {name} advertises host {advertise.group(1)}, not its service name")
        require(int(advertise.group(2)) == listen, f"compose.yaml: {name} advertises port {advertise.group(2)} but listens on {listen}")
        published = {p["target"] for p in svc.get("ports", [])}
        require({listen, port_of(env["QUIVER_ADMIN_LISTEN"])} <= published, f"compose.yaml: {name} does not publish its Flight and admin ports")
        mounts = {v["target"]: v for v in svc["volumes"]}
        require(env["QUIVER_CONFIG"] in mounts and Path(mounts[env["QUIVER_CONFIG"]]["source"]) == COMPOSE_TOML, f"compose.yaml: {name} does not mount {COMPOSE_TOML.name} at QUIVER_CONFIG")
        require(mounts.get(secrets_dir, {}).get("source") == "secrets" and mounts[secrets_dir].get("read_only"), f"compose.yaml: {name} does not mount the secrets volume read-only at {secrets_dir}")
        cache = mounts.get(env["QUIVER_CACHE_DISK_DIR"])
        require(cache is not None and cache["type"] == "volume", f"compose.yaml: {name} has no volume at its disk tier {env['QUIVER_CACHE_DISK_DIR']}")
        require(svc["environment"]["AWS_ACCESS_KEY_ID"] == s3["environment"]["AWS_ACCESS_KEY_ID"], f"compose.yaml: {name}'s S3 key differs from the store's")
        require(svc["depends_on"]["secrets"]["condition"] == "service_completed_successfully", f"compose.yaml: {name} may start before its tokens exist")
        urls[env["QUIVER_NODE_ID"]] = env["QUIVER_ADVERTISE"]
    caches = [v["source"] for svc in nodes.values() for v in svc["volumes"] if v["type"] == "volume" and v["target"] != secrets_dir]
    require(len(set(caches)) == len(caches), "compose.yaml: two nodes share a disk-tier volume")

    init = services["init"]
    listed = dict(spec.split("=", 1) for spec in init["environment"]["QUIVER_INIT_NODES"].split(","))
    require(listed == urls, f"compose.yaml: init lists {listed}, the nodes advertise {urls}")
    require(init["environment"]["QUIVER_ENDPOINT"] in urls.values(), "compose.yaml: init talks to no node")
    script = init["entrypoint"][-1]
    mounted = {v["target"]: v["source"] for v in init["volumes"]}
    require(Path(mounted.get(script, "")) == INIT_SCRIPT, f"compose.yaml: init runs {script}, which is not the chart's init-topology.sh")
    require(init["environment"]["QUIVER_ADMIN_TOKEN_FILE"] == settings["auth"]["admin_token_file"], "compose.yaml: init reads another admin token file than the nodes")
    require(all(init["depends_on"][n]["condition"] == "service_healthy" for n in nodes), "compose.yaml: init does not wait for every node")
    print(f"compose.yaml: {len(services)} services valid; nodes, store, tokens and init agree")
    return config


# --- the Helm chart ------------------------------------------------------------


def render(values: dict, name: str = RELEASE) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=name, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    require(len(found) == 1, f"chart: expected one {kind} named *{name_suffix}, found {len(found)}")
    return found[0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def mounted_file(pod: dict, container: dict, path: str) -> tuple[dict, str] | None:
    """The volume and the key inside it that `path` is in this container."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) and mount["name"] in volumes:
            return volumes[mount["name"]], path[len(prefix):]
    return None


def check_secret_file(pod: dict, container: dict, path: str, what: str) -> None:
    found = mounted_file(pod, container, path)
    require(found is not None, f"chart: {what} {path} is on no mounted volume")
    volume, key = found
    source = volume.get("secret") or volume.get("configMap")
    require(source is not None, f"chart: {what} {path} is not from a Secret or ConfigMap")
    items = [i["path"] for i in source.get("items", [])]
    require(not items or key in items, f"chart: {what} {path}: the volume projects {items}, not {key}")


def check_chart_rendering(label: str, values: dict) -> list[dict]:
    """Renders `values` and checks that every piece fits the others."""
    merged = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

    def merge(base: dict, over: dict) -> dict:
        for k, v in over.items():
            base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    v = merge(copy.deepcopy(merged), values)
    docs = manifests(render(values))
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise CheckFailed(f"chart ({label}): {doc['kind']} {doc['metadata']['name']} is invalid for Kubernetes {version}: {str(exc).splitlines()[0]}") from exc

    full = v.get("fullnameOverride") or RELEASE
    sts = one(docs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    node = pod["containers"][0]
    env = env_of(node)
    labels = sts["spec"]["template"]["metadata"]["labels"]
    replicas = v["replicaCount"]
    require(sts["spec"]["replicas"] == replicas, f"chart ({label}): {sts['spec']['replicas']} replicas, not {replicas}")

    # Services: peers at stable names, clients through one Service.
    headless = one(docs, "Service", "-headless")
    require(headless["spec"].get("clusterIP") == "None" and headless["spec"].get("publishNotReadyAddresses"), f"chart ({label}): the peer Service is not headless with unready addresses published")
    require(sts["spec"]["serviceName"] == headless["metadata"]["name"], f"chart ({label}): the StatefulSet's serviceName is not the headless Service")
    ports = {p["name"]: p["containerPort"] for p in node["ports"]}
    for svc in by_kind(docs, "Service"):
        require(svc["spec"]["selector"].items() <= labels.items(), f"chart ({label}): Service {svc['metadata']['name']} selects no node")
        for p in svc["spec"]["ports"]:
            require(ports.get(p["targetPort"]) == p["port"], f"chart ({label}): Service {svc['metadata']['name']} port {p['name']} is not the container's")

    # Each pod is a node with a stable id and a URL its peers resolve.
    scheme = "grpc+tls" if v["tls"]["enabled"] else "grpc"
    require(env["QUIVER_NODE_ID"] == "$(POD_NAME)", f"chart ({label}): the node id is not the pod name")
    expected = f"{scheme}://$(POD_NAME).{headless['metadata']['name']}.{NAMESPACE}.svc.{v['clusterDomain']}:{v['ports']['flight']}"
    require(env["QUIVER_ADVERTISE"] == expected, f"chart ({label}): advertises {env['QUIVER_ADVERTISE']}, peers resolve {expected}")
    require(port_of(env["QUIVER_LISTEN"]) == ports["flight"], f"chart ({label}): QUIVER_LISTEN is not the flight port")
    require(port_of(env["QUIVER_ADMIN_LISTEN"]) == ports["admin"], f"chart ({label}): QUIVER_ADMIN_LISTEN is not the admin port")
    for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        require(node[probe]["httpGet"] == {"path": path, "port": "admin"}, f"chart ({label}): {probe} is not GET {path} on the admin port")

    # The configuration file, and every file it names, is mounted.
    config_map = one(docs, "ConfigMap", "-config")
    found = mounted_file(pod, node, env["QUIVER_CONFIG"])
    require(found is not None and found[0].get("configMap", {}).get("name") == config_map["metadata"]["name"], f"chart ({label}): QUIVER_CONFIG is not the config ConfigMap")
    settings = tomllib.loads(config_map["data"][found[1]])
    auth = settings.get("auth", {})
    require(bool(auth.get("tokens_file")) == v["auth"]["enabled"], f"chart ({label}): [auth] tokens do not follow auth.enabled")
    require(bool(auth.get("tls_cert")) == v["tls"]["enabled"], f"chart ({label}): [auth] TLS does not follow tls.enabled")
    for key, path in auth.items():
        check_secret_file(pod, node, path, f"[auth] {key}")
    secret_names = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    if v["auth"]["enabled"] and not v["auth"]["existingSecret"]:
        tokens = secret_names.get(f"{full}-auth")
        require(tokens is not None and {"tokens", "admin-token", "peer-token"} <= set(tokens["data"]), f"chart ({label}): no Secret with the three tokens")
    require(settings["cluster"]["topology"].startswith("s3://"), f"chart ({label}): the topology {settings['cluster']['topology']} is not in S3")
    require(settings.get("server", {}).get("insecure", False) == v["insecure"], f"chart ({label}): server.insecure does not follow insecure")

    # Sizes: memory from the tiers, the claim from the disk tier.
    memory = v["cache"]["memoryMiB"] + v["cache"]["hotMiB"] + v["cache"]["metadataMiB"] + v["resources"]["memoryHeadroomMiB"]
    resources = node["resources"]
    require(resources["requests"]["memory"] == resources["limits"]["memory"] == f"{memory}Mi", f"chart ({label}): memory {resources} is not {memory}Mi")
    require(settings["cache"]["memory"] == f"{v['cache']['memoryMiB']}MiB" and settings["cache"]["hot"] == f"{v['cache']['hotMiB']}MiB", f"chart ({label}): the tiers in quiver.toml differ from the values")
    disk = v["cache"]["diskMiB"]
    claims = sts["spec"].get("volumeClaimTemplates", [])
    if disk:
        require(len(claims) == 1, f"chart ({label}): no volume claim for a {disk} MiB disk tier")
        size = claims[0]["spec"]["resources"]["requests"]["storage"]
        require(size == f"{disk + max(256, disk // 20)}Mi", f"chart ({label}): the claim is {size} for a {disk} MiB tier")
        mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
        require(mounts.get(env["QUIVER_CACHE_DISK_DIR"]) == claims[0]["metadata"]["name"], f"chart ({label}): the disk tier's directory is not the claim's mount")
    else:
        require(not claims, f"chart ({label}): a volume claim for a memory-only node")
    context = node["securityContext"]
    require(context["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"], f"chart ({label}): the node may write its image or run as root")

    pdb = by_kind(docs, "PodDisruptionBudget")
    require(len(pdb) == 1 and pdb[0]["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"chart ({label}): no PodDisruptionBudget over the nodes")

    if not v["initJob"]["enabled"]:
        require(not by_kind(docs, "Job") and not [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-scripts")], f"chart ({label}): an init Job although initJob.enabled is false")
        return docs
    # The init Job lists exactly the pods, at the URLs they advertise.
    job = one(docs, "Job", "-init-topology")
    require("post-install" in job["metadata"]["annotations"]["helm.sh/hook"], f"chart ({label}): the init Job is not a post-install hook")
    job_pod = job["spec"]["template"]["spec"]
    runner = job_pod["containers"][0]
    job_env = env_of(runner)
    pods = [f"{full}-{i}" for i in range(replicas)]
    listed = dict(spec.split("=", 1) for spec in job_env["QUIVER_INIT_NODES"].split(","))
    require(list(listed) == pods, f"chart ({label}): the init Job lists {list(listed)}, the pods are {pods}")
    for pod_name, url in listed.items():
        require(url == expected.replace("$(POD_NAME)", pod_name), f"chart ({label}): the init Job reaches {pod_name} at {url}")
    require(job_env["QUIVER_ENDPOINT"] in listed.values(), f"chart ({label}): the init Job talks to no node")
    require(job_env["QUIVER_INIT_REPLICATION"] == str(v["topology"]["replication"]), f"chart ({label}): the init Job's replication is not topology.replication")
    if v["auth"]["enabled"]:
        check_secret_file(job_pod, runner, job_env["QUIVER_ADMIN_TOKEN_FILE"], "the init Job's admin token")
    if v["tls"]["enabled"]:
        check_secret_file(job_pod, runner, job_env["QUIVER_TLS_CA"], "the init Job's CA")
    script = mounted_file(job_pod, runner, runner["command"][-1])
    require(script is not None, f"chart ({label}): the init Job's script is not mounted")
    scripts = one(docs, "ConfigMap", "-scripts")
    require(scripts["data"][script[1]] == INIT_SCRIPT.read_text(encoding="utf-8"), f"chart ({label}): the scripts ConfigMap is not files/init-topology.sh")
    return docs


# Value sets that exercise the templates' branches.
CHART_VALUE_SETS = {
    "defaults": {},
    "tls, 5 replicas, memory-only, existing secrets, extra settings": {
        "replicaCount": 5,
        "fullnameOverride": "lake-cache",
        "ports": {"flight": 8815, "admin": 8080},
        "cache": {"diskMiB": 0, "hotMiB": 0, "memoryMiB": 2048},
        "tls": {"enabled": True, "secretName": "lake-cache-tls"},
        "auth": {"existingSecret": "lake-cache-tokens"},
        "s3": {"existingSecret": "lake-cache-s3"},
        "topology": {"replication": 3, "reload": "5s"},
        "initJob": {"waitSeconds": 120, "backoffLimit": 2},
        "config": {
            "limits": {"max_concurrent_scans": 16, "stall_timeout": "45s"},
            "miss": {"policy": "read-through"},
            "sql": {"max_queries": 8},
            "extraToml": '[[sql.table]]\nsource = "lake"\nname = "events"\npath = "raw/events/"\n',
        },
        "service": {"type": "LoadBalancer", "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
        "persistence": {"storageClassName": "local-nvme"},
        "resources": {"cpuLimit": "4"},
    },
    "no tokens on a trusted network, keys from the values, no init Job": {
        "auth": {"enabled": False},
        "insecure": True,
        "s3": {"accessKeyId": "AKIDEXAMPLE", "secretAccessKey": "secret-example"},
        "sources": [
            {"name": "lake", "url": "s3://lake/warehouse/", "endpoint": "http://seaweedfs.storage:8333", "region": "us-east-1", "retries": 5},
            {"name": "raw", "url": "s3://raw/"},
        ],
        "topology": {"url": "s3://lake/.quiver/topology.json", "source": "lake"},
        "initJob": {"enabled": False},
        "podDisruptionBudget": {"maxUnavailable": 2},
    },
}

# Values the chart must refuse, with a piece of the reason it must give.
CHART_REFUSALS = [
    ({"auth": {"enabled": False}}, "insecure=true"),
    ({"tls": {"enabled": True}}, "tls.secretName"),
    ({"cache": {"hotMiB": 32}}, "hotMiB"),
    ({"cache": {"diskMiB": 10}}, "diskMiB"),
    ({"sources": [{"name": "lake", "url": "s3://b/", "secret_access_key": "x"}]}, "secret_access_key"),
    ({"sources": [{"name": "local", "url": "file:///data/"}]}, "topology.url"),
    ({"replicaCount": 0}, "replicaCount"),
    ({"s3": {"accessKeyId": "AKID"}}, "go together"),
    ({"memoryTier": 1}, "memoryTier"),
]


def check_chart() -> None:
    lint = helm.lint(str(CHART), strict=True)
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + [{"error": e} for e in lint.get("errors", [])]
    require(not problems, f"chart: helm lint --strict: {problems}")
    for label, values in CHART_VALUE_SETS.items():
        docs = check_chart_rendering(label, values)
        print(f"chart ({label}): {len(docs)} manifests valid for Kubernetes {' and '.join(KUBE_VERSIONS)}; pieces agree")
    for values, reason in CHART_REFUSALS:
        try:
            render(values)
        except helm.HelmError as exc:
            require(reason in str(exc), f"chart: {values} was refused, but not for {reason}: {str(exc).splitlines()[0]}")
            continue
        raise CheckFailed(f"chart: {values} rendered; it must be refused ({reason})")
    print(f"chart: {len(CHART_REFUSALS)} invalid value sets refused with their reason")


# --- rehearsal with the real binaries ----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def known_env_names(bin_dir: Path) -> set[str]:
    """Every QUIVER_* variable quiver-server or quiver reads (clap lists them in --help)."""
    names = set()
    for binary in ("quiver-server", "quiver"):
        result = run([str(bin_dir / binary), "--help"])
        require(result.returncode == 0, f"{binary} --help failed: {result.stderr}")
        names |= set(re.findall(r"\[env: (QUIVER_[A-Z_]+)", result.stdout))
    require("QUIVER_ADVERTISE" in names, "quiver-server --help lists no environment variables")
    # Read by the code rather than by a flag: the log filter, and the CLI's
    # old name for QUIVER_ENDPOINT.
    return names | {"QUIVER_LOG", "QUIVER_NODE"}


def sample_lake(bin_dir: Path, work: Path) -> Path:
    """A small TPC-H lake (tpch/<table>/part-0.parquet), written by
    quiver-server's embedded default into an empty data directory."""
    data = work / "sample"
    admin = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "QUIVER_DATA_DIR": str(data),
        "QUIVER_SAMPLE_SCALE": "0.001",
        "QUIVER_LISTEN": f"127.0.0.1:{free_port()}",
        "QUIVER_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "QUIVER_CACHE_DISK": "0",
    }
    with open(work / "sample.log", "w") as log:
        proc = subprocess.Popen([str(bin_dir / "quiver-server")], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
        try:
            wait_ready(proc, admin, work / "sample.log", "the sample writer")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    require((data / "tpch" / "nation").is_dir(), f"quiver-server wrote no TPC-H sample into {data}")
    return data


def wait_ready(proc: subprocess.Popen, admin: int, log: Path, name: str) -> None:
    deadline = time.time() + 90
    while True:
        if proc.poll() is not None:
            raise CheckFailed(f"{name}: quiver-server exited with {proc.returncode}: {log.read_text()[-1500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        require(time.time() < deadline, f"{name}: not ready within 90 s: {log.read_text()[-1500:]}")
        time.sleep(0.3)


class Rehearsal:
    """Processes started on loopback for one rehearsal, stopped at the end."""

    def __init__(self, bin_dir: Path, work: Path):
        self.bin_dir = bin_dir
        self.work = work
        self.procs: list[tuple[subprocess.Popen, object]] = []
        self.known = known_env_names(bin_dir)

    def start_s3(self, buckets: list[str], lake: Path) -> str:
        """The S3 server, with the sample lake in the first bucket."""
        shutil.copytree(lake, self.work / "s3" / buckets[0])
        log = open(self.work / "s3.log", "w")
        proc = subprocess.Popen([str(self.bin_dir / "quiver-test-s3"), str(self.work / "s3"), *buckets], stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append((proc, log))
        endpoint = proc.stdout.readline().strip()
        require(endpoint.startswith("http://127.0.0.1:"), f"quiver-test-s3 printed {endpoint!r}")
        return endpoint

    def remap_path(self, path: str) -> str:
        """Where an absolute path of the container lives in this rehearsal."""
        return str(self.work / "fs" / path.lstrip("/"))

    def start_node(self, name: str, env: dict[str, str], config_text: str) -> dict:
        """Starts a node with a deployment's environment and configuration;
        only addresses and directories move to loopback and the work dir."""
        unknown = sorted(k for k in env if k.startswith("QUIVER_") and k not in self.known)
        require(not unknown, f"{name}: the deployment sets {unknown}, which quiver-server does not read")
        flight, admin = free_port(), free_port()
        scheme = env["QUIVER_ADVERTISE"].split("://", 1)[0]
        # Only the deployment's variables: nothing of this shell's QUIVER_* or AWS_*.
        node_env = dict(env)
        config = self.work / name / "quiver.toml"
        config.parent.mkdir(parents=True)
        config.write_text(config_text.replace('"/etc/quiver/', f'"{self.remap_path("/etc/quiver")}/'), encoding="utf-8")
        node_env.update(
            PATH=os.environ["PATH"],
            HOME=str(self.work),
            QUIVER_CONFIG=str(config),
            QUIVER_LISTEN=f"127.0.0.1:{flight}",
            QUIVER_ADMIN_LISTEN=f"127.0.0.1:{admin}",
            QUIVER_ADVERTISE=f"{scheme}://127.0.0.1:{flight}",
            QUIVER_CACHE_DISK_DIR=str(self.work / name / "cache"),
            QUIVER_DATA_DIR=str(self.work / name / "data"),
            # A small disk tier whatever the deployment asks: the rehearsal
            # checks that the settings fit together, not the sizes.
            QUIVER_CACHE_DISK="64MiB",
            AWS_ACCESS_KEY_ID=TEST_S3_KEY,
            AWS_SECRET_ACCESS_KEY=TEST_S3_SECRET,
            QUIVER_LOG_FORMAT="text",
        )
        log = open(self.work / name / "node.log", "w")
        proc = subprocess.Popen([str(self.bin_dir / "quiver-server")], env=node_env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work / name)
        self.procs.append((proc, log))
        wait_ready(proc, admin, self.work / name / "node.log", name)
        return {"id": env["QUIVER_NODE_ID"], "url": f"{scheme}://127.0.0.1:{flight}", "advertised": env["QUIVER_ADVERTISE"], "admin": admin}

    def check_reads(self, endpoint: str, env: dict[str, str], label: str) -> None:
        """A reader's SQL over the sample through the cluster: the source's
        endpoint, keys and prefix, the reader token and the routing work."""
        out = self.quiver(["--endpoint", endpoint, "sql", "SELECT count(*) AS n, sum(n_regionkey) AS s FROM nation", "--table", "nation=lake/tpch/nation/", "--format", "csv"], env)
        require(out.split() == ["n,s", "25,50"], f"{label}: SQL over the sample answered {out!r}, not 25 nations")

    def check_health_script(self, admin: int) -> None:
        """The image's HEALTHCHECK script: healthy against a ready node (also
        when the address is the wildcard one the image listens on), unhealthy
        where nothing listens."""
        script = ROOT / "deploy" / "docker" / "quiver-ready"
        for address, healthy in ((f"0.0.0.0:{admin}", True), (f"127.0.0.1:{admin}", True), (f"0.0.0.0:{free_port()}", False)):
            result = run(["bash", str(script)], env={"PATH": os.environ["PATH"], "QUIVER_ADMIN_LISTEN": address}, timeout=10)
            require((result.returncode == 0) == healthy, f"quiver-ready with QUIVER_ADMIN_LISTEN={address} exited {result.returncode}: {result.stderr.strip()}")

    def quiver(self, args: list[str], env: dict[str, str]) -> str:
        full = {**os.environ, **env, "PATH": f"{self.bin_dir}:{os.environ['PATH']}"}
        result = run([str(self.bin_dir / "quiver"), *args], env=full)
        require(result.returncode == 0, f"quiver {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def init_topology(self, env: dict[str, str], nodes: list[dict]) -> str:
        """Runs the chart's init script with a deployment's environment, its
        node URLs moved to where the nodes listen here."""
        unknown = sorted(k for k in env if k.startswith("QUIVER_") and k not in self.known and not k.startswith("QUIVER_INIT_"))
        require(not unknown, f"the init step sets {unknown}, which neither quiver nor init-topology.sh reads")
        moved = {n["advertised"]: n["url"] for n in nodes}
        listed = [spec.split("=", 1) for spec in env["QUIVER_INIT_NODES"].split(",")]
        for node_id, url in listed:
            require(url in moved, f"the init step lists {node_id} at {url}, which no node advertises")
        script_env = {
            **os.environ,
            **env,
            "PATH": f"{self.bin_dir}:{os.environ['PATH']}",
            "QUIVER_INIT_NODES": ",".join(f"{i}={moved[u]}" for i, u in listed),
            "QUIVER_ENDPOINT": moved[env["QUIVER_ENDPOINT"]],
            "QUIVER_INIT_WAIT": "60",
        }
        for key in ("QUIVER_ADMIN_TOKEN_FILE", "QUIVER_TLS_CA"):
            if key in env:
                script_env[key] = self.remap_path(env[key])
        result = run(["sh", str(INIT_SCRIPT)], env=script_env, timeout=300)
        require(result.returncode == 0, f"init-topology.sh failed: {result.stdout}{result.stderr}")
        return result.stdout

    def topology(self, endpoint: str, env: dict[str, str]) -> dict:
        cli_env = {k: self.remap_path(v) if k in ("QUIVER_ADMIN_TOKEN_FILE", "QUIVER_TLS_CA") else v for k, v in env.items() if k in ("QUIVER_ADMIN_TOKEN_FILE", "QUIVER_TLS_CA")}
        return json.loads(self.quiver(["--endpoint", endpoint, "cluster", "show", "--json"], cli_env))

    def stop(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, log in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def write_files(rehearsal: Rehearsal, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        target = Path(rehearsal.remap_path(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o400)


def make_tls(work: Path) -> dict[str, bytes]:
    """A CA and one certificate for 127.0.0.1, as the chart's TLS Secret keys."""
    d = work / "pki"
    d.mkdir()
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=quiver rehearsal CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt")],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(d / "tls.key"), "-out", str(d / "tls.csr")],
        ["openssl", "x509", "-req", "-in", str(d / "tls.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "tls.crt")],
    ]
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
    for step in steps:
        result = run(step)
        require(result.returncode == 0, f"openssl failed: {result.stderr}")
    return {name: (d / name).read_bytes() for name in ("tls.crt", "tls.key", "ca.crt")}


def pod_env(container: dict, pod_name: str, secrets: dict[str, dict]) -> dict[str, str]:
    """A container's environment as Kubernetes gives it: $(VAR) expanded,
    the downward API's pod name, and envFrom Secrets."""
    env = dict(image_env())
    for ref in container.get("envFrom", []):
        secret = secrets.get(ref["secretRef"]["name"])
        require(secret is not None, f"chart: envFrom names Secret {ref['secretRef']['name']}, which the chart does not write")
        env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for item in container.get("env", []):
        if item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
        elif "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
    return env


def rehearse_chart(bin_dir: Path, lake: Path, label: str, values: dict, tls: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="quiver-rehearsal-") as tmp:
        rehearsal = Rehearsal(bin_dir, Path(tmp))
        try:
            endpoint = rehearsal.start_s3(["lake"], lake)
            values = {
                **values,
                "sources": [{"name": "lake", "url": "s3://lake/", "endpoint": endpoint, "region": "us-east-1"}],
                "s3": {"accessKeyId": TEST_S3_KEY, "secretAccessKey": TEST_S3_SECRET},
                "cache": {"memoryMiB": 64, "hotMiB": 64, "metadataMiB": 16, "diskMiB": 64},
            }
            if tls:
                values["tls"] = {"enabled": True, "secretName": "quiver-tls"}
                write_files(rehearsal, {f"/etc/quiver/tls/{k}": v for k, v in make_tls(Path(tmp)).items()})

            def deploy(replicas: int) -> tuple[list[dict], dict]:
                docs = manifests(render({**values, "replicaCount": replicas}))
                secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
                return docs, secrets

            docs, secrets = deploy(3)
            auth = secrets[f"{RELEASE}-auth"]
            # The Secret of this rendering; later renderings (the scale-up)
            # run where `lookup` would find it, so they keep its tokens.
            write_files(rehearsal, {f"/etc/quiver/secrets/{k}": base64.b64decode(v) for k, v in auth["data"].items()})
            config_text = one(docs, "ConfigMap", "-config")["data"]["quiver.toml"]
            container = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
            nodes = [rehearsal.start_node(f"{RELEASE}-{i}", pod_env(container, f"{RELEASE}-{i}", secrets), config_text) for i in range(3)]
            job = one(docs, "Job", "-init-topology")["spec"]["template"]["spec"]["containers"][0]
            job_env = pod_env(job, "init", secrets)

            out = rehearsal.init_topology(job_env, nodes)
            topology = rehearsal.topology(nodes[0]["url"], job_env)
            require(topology["epoch"] == 1 and [n["id"] for n in topology["nodes"]] == [f"{RELEASE}-{i}" for i in range(3)], f"chart ({label}): after the init Job the topology is {topology['epoch']} {topology['nodes']}: {out}")
            require(topology["replication"] == 2, f"chart ({label}): replication {topology['replication']}")
            out = rehearsal.init_topology(job_env, nodes)
            require(rehearsal.topology(nodes[1]["url"], job_env)["epoch"] == 1 and "0 added" in out, f"chart ({label}): a second run of the init Job changed the topology: {out}")

            # helm upgrade --set replicaCount=4: a new pod, and the hook adds it.
            docs, _ = deploy(4)
            container = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
            nodes.append(rehearsal.start_node(f"{RELEASE}-3", pod_env(container, f"{RELEASE}-3", secrets), config_text))
            job_env = pod_env(one(docs, "Job", "-init-topology")["spec"]["template"]["spec"]["containers"][0], "init", secrets)
            out = rehearsal.init_topology(job_env, nodes)
            topology = rehearsal.topology(nodes[3]["url"], job_env)
            owners = {owner for r in topology["slots"] for owner in r["owners"][:1]}
            require(len(topology["nodes"]) == 4 and f"{RELEASE}-3" in owners, f"chart ({label}): after scaling to 4 the topology is {topology['nodes']} with primaries {owners}: {out}")

            # Readers: the reader token lists the source through the cluster.
            reader = {"QUIVER_TOKEN": base64.b64decode(auth["data"]["tokens"]).decode().split()[0]}
            if tls:
                reader["QUIVER_TLS_CA"] = rehearsal.remap_path("/etc/quiver/tls/ca.crt")
            rehearsal.check_reads(nodes[2]["url"], reader, f"chart ({label})")
            rehearsal.quiver(["--endpoint", nodes[0]["url"], "stats"], reader)
        finally:
            rehearsal.stop()
    print(f"chart ({label}): 3 nodes from the rendered chart formed a cluster through the init Job's script; a re-run changed nothing; a 4th node was added and given slots; SQL read the sample from S3 through it")


def rehearse_compose(bin_dir: Path, lake: Path, config: dict) -> None:
    services = config["services"]
    nodes_cfg = compose_nodes(config)
    settings_text = COMPOSE_TOML.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="quiver-rehearsal-") as tmp:
        rehearsal = Rehearsal(bin_dir, Path(tmp))
        try:
            bucket = re.search(r"-bucket=(\S+)", " ".join(services["s3"]["command"])).group(1)
            endpoint = rehearsal.start_s3([bucket], lake)
            settings_text = settings_text.replace('endpoint = "http://s3:8333"', f'endpoint = "{endpoint}"')
            # The `secrets` service's own script writes the tokens.
            script = services["secrets"]["command"][0].replace("$$", "$").replace("/etc/quiver/secrets", rehearsal.remap_path("/etc/quiver/secrets"))
            Path(rehearsal.remap_path("/etc/quiver/secrets")).mkdir(parents=True)
            written = []
            for _ in range(2):
                result = run(["bash", "-c", script])
                require(result.returncode == 0, f"compose.yaml: the secrets script failed: {result.stderr}")
                written.append({n: Path(rehearsal.remap_path(f"/etc/quiver/secrets/{n}")).read_text() for n in ("tokens", "admin-token", "peer-token")})
            require(written[0] == written[1] and len(set(written[0].values())) == 3, "compose.yaml: the secrets script does not keep three distinct tokens across runs")
            tokens = written[0]["tokens"]
            require(re.fullmatch(r"[0-9a-f]{64}\n", tokens) is not None, f"compose.yaml: the secrets script wrote {tokens!r}")
            nodes = [rehearsal.start_node(name, {**image_env(), **svc["environment"]}, settings_text) for name, svc in sorted(nodes_cfg.items())]
            rehearsal.check_health_script(nodes[0]["admin"])
            init_env = services["init"]["environment"]
            rehearsal.init_topology(init_env, nodes)
            topology = rehearsal.topology(nodes[0]["url"], init_env)
            require(topology["epoch"] == 1 and sorted(n["id"] for n in topology["nodes"]) == ["node1", "node2", "node3"], f"compose.yaml: after init the topology is {topology}")
            rehearsal.check_reads(nodes[1]["url"], {"QUIVER_TOKEN": tokens.strip()}, "compose.yaml")
        finally:
            rehearsal.stop()
    print("compose.yaml: 3 nodes from its environment and quiver.toml formed a cluster through the init service and served SQL over the sample; the image's health check tells a ready node from a missing one")


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["static"] and len(argv) == 2:
            check_compose(argv[1])
            check_chart()
        elif argv[:1] == ["rehearse"] and len(argv) == 3:
            bin_dir = Path(argv[2])
            config = compose_config(argv[1])
            with tempfile.TemporaryDirectory(prefix="quiver-sample-") as tmp:
                lake = sample_lake(bin_dir, Path(tmp))
                rehearse_chart(bin_dir, lake, "plain", {}, tls=False)
                rehearse_chart(bin_dir, lake, "TLS", {}, tls=True)
                rehearse_compose(bin_dir, lake, config)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as exc:
        print(f"check-deploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
