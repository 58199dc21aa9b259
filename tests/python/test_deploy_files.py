"""The container images and the Kubernetes example, checked against the repository, since no
machine here runs a Docker engine or a cluster: every CMake option and target the Dockerfiles
build exists, the runtime stage installs a package for every library the server links (ldd +
dpkg on this machine's build, which is Debian 12 like the image), every flag the images and
manifests pass is one `tessera serve --help` lists, and ports, probes, paths, node counts and GPU
counts agree between the Dockerfiles, the topology in the ConfigMap and the LeaderWorkerSet."""

import os
import re
import shlex
import subprocess

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("TESSERA_BIN", os.path.join(ROOT, "build", "tessera"))


def read(*p):
    return open(os.path.join(ROOT, *p)).read()


def dockerfile(name):
    """[(stage name, [(instruction, argument text)])] with continuation lines joined."""
    text = re.sub(r"\\\n", " ", read("docker", name))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op == "FROM":
            stages.append((arg.split(" AS ")[-1] if " AS " in arg else arg, []))
        elif stages:
            stages[-1][1].append((op, arg.strip()))
    return stages


def serve_flags():
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"^\s+(--[a-z][a-z-]*)", out.stdout, re.M))


def flags_in(args):
    return [a for a in args if a.startswith("--")]


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_builds_what_the_repository_has(name):
    stages = dict(dockerfile(name))
    assert set(stages) == {"build", "runtime"}, stages.keys()
    build = " ".join(arg for op, arg in stages["build"] if op == "RUN")
    assert "scripts/install_deps.sh --build-only" in build
    cmake = read("CMakeLists.txt")
    for opt in re.findall(r"-D(TESSERA_[A-Z_]+)=", build):
        assert re.search(rf"option\({opt}\b", cmake), f"{name}: no CMake option {opt}"
    target = re.search(r"--target (\S+)", build).group(1)
    assert re.search(rf"add_executable\({target}\b", cmake), f"{name}: no target {target}"
    assert re.search(rf"set_target_properties\({target} PROPERTIES OUTPUT_NAME tessera\)", cmake)
    assert "scripts/runtime_packages.sh build/tessera" in build
    runtime = stages["runtime"]
    ops = {op for op, _ in runtime}
    assert {"USER", "HEALTHCHECK", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD"} <= ops
    user = [arg for op, arg in runtime if op == "USER"][0]
    assert user not in ("root", "0")
    health = [arg for op, arg in runtime if op == "HEALTHCHECK"][0]
    assert "http://127.0.0.1:8000/health" in health
    assert [arg for op, arg in runtime if op == "EXPOSE"] == ["8000 50051"]
    # Known models are cached in the volume: the variable the server reads names it.
    assert ("ENV", "TESSERA_MODEL_DIR=/models") in runtime
    assert ("VOLUME", '["/models"]') in runtime
    assert 'getenv("TESSERA_MODEL_DIR")' in read("src", "cli", "model_registry.cpp")
    cmd = eval([arg for op, arg in runtime if op == "CMD"][0])  # a JSON-style list
    assert cmd[0] == "serve" and set(flags_in(cmd)) <= serve_flags(), cmd
    if "--config" in cmd:  # the image's configs/ are copied to /etc/tessera/configs
        path = cmd[cmd.index("--config") + 1]
        assert path.startswith("/etc/tessera/configs/")
        assert os.path.exists(os.path.join(ROOT, "configs", os.path.basename(path)))
    if "--http-port" in cmd:
        assert cmd[cmd.index("--http-port") + 1] == "8000"


def test_runtime_packages_cover_every_linked_library():
    if not os.path.exists(BIN):
        pytest.skip(f"{BIN} not built")
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "runtime_packages.sh"), BIN],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # This machine's CUDA toolkit is not a Debian package; the CPU image builds without CUDA and
    # the CUDA runtime image brings cudart/cuBLAS/NCCL itself.
    unowned = [l for l in out.stderr.splitlines()
               if l.startswith("no package holds") and "/usr/local/cuda" not in l]
    assert not unowned, out.stderr
    pkgs = out.stdout.split()
    assert "libc6" in pkgs and "libstdc++6" in pkgs, pkgs
    # Each is an installed Debian 12 package here, so `apt-get install` in the image finds it.
    for p in pkgs + ["python3", "python3-pip", "ca-certificates", "curl"]:
        st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                            text=True)
        assert st.returncode == 0 and "installed" in st.stdout, p


def k8s_docs():
    docs = {}
    for name in sorted(os.listdir(os.path.join(ROOT, "deploy", "k8s"))):
        for d in yaml.safe_load_all(read("deploy", "k8s", name)):
            if d and "kind" in d:
                docs[d["kind"]] = d
    return docs


def test_kubernetes_example_agrees_with_itself_and_the_server():
    docs = k8s_docs()
    kust = yaml.safe_load(read("deploy", "k8s", "kustomization.yaml"))
    assert sorted(kust["resources"]) == sorted(
        f for f in os.listdir(os.path.join(ROOT, "deploy", "k8s")) if f != "kustomization.yaml")
    topo = yaml.safe_load(docs["ConfigMap"]["data"]["topology.yaml"])
    # Every key of the topology is one the shipped configs (parsed by the server's tests) use.
    known = set()
    for f in os.listdir(os.path.join(ROOT, "configs")):
        if f.endswith(".yaml"):
            for k, v in yaml.safe_load(read("configs", f)).items():
                known.add(k)
                if isinstance(v, dict):
                    known |= {f"{k}.{s}" for s in v}
    for k, v in topo.items():
        assert k in known, k
        if isinstance(v, dict):
            for s in v:
                assert f"{k}.{s}" in known, f"{k}.{s}"

    lws = docs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    nodes, par = topo["nodes"], topo["parallel"]
    assert len(nodes) == lws["size"]
    assert par["tensor"] * par["pipeline"] == sum(len(n["devices"]) for n in nodes)
    name = docs["LeaderWorkerSet"]["metadata"]["name"]
    # LWS pod DNS names: <name>-<group> leads, <name>-<group>-<i> are the workers, under <name>.
    assert nodes[0]["host"] == f"{name}-0.{name}" == topo["coordinator"]["host"]
    for i, n in enumerate(nodes[1:], 1):
        assert n["host"] == f"{name}-0-{i}.{name}"
    http = topo["listen"]["http_port"]
    flags = serve_flags()

    leader = lws["leaderTemplate"]["spec"]
    c = leader["containers"][0]
    assert set(flags_in(c["args"])) <= flags, c["args"]
    assert c["args"][c["args"].index("--node-rank") + 1] == "0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": http}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": http}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": http, "grpc": topo["listen"]["grpc_port"],
                     "coordinator": topo["coordinator"]["port"]}
    drain = float(c["args"][c["args"].index("--drain-timeout") + 1])
    sleep = float(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert leader["terminationGracePeriodSeconds"] > drain + sleep

    worker = lws["workerTemplate"]["spec"]["containers"][0]
    wargs = shlex.split(worker["args"][0])
    assert wargs[:2] == ["exec", "tessera"] and set(flags_in(wargs)) <= flags, wargs
    assert wargs[wargs.index("--node-rank") + 1] == "$LWS_WORKER_INDEX"
    for spec in (leader, lws["workerTemplate"]["spec"]):
        ctr = spec["containers"][0]
        assert ctr["resources"]["limits"]["nvidia.com/gpu"] == len(nodes[0]["devices"])
        assert [e["name"] for e in ctr["env"]] == ["TESSERA_GROUP_SECRET"]
        mounts = {m["mountPath"] for m in ctr["volumeMounts"]}
        assert {"/etc/tessera/topology.yaml", "/models", "/dev/shm"} <= mounts
        assert topo["model"]["path"].startswith("/models/")

    svc = docs["Service"]["spec"]
    assert svc["selector"].items() <= lws["leaderTemplate"]["metadata"]["labels"].items()
    assert {p["targetPort"] for p in svc["ports"]} == {http, topo["listen"]["grpc_port"]}
