"""The worker group behind the real server, with real processes over Gloo:
- `tessera serve --config configs/cpu-tp3-pp2.yaml` (6 worker processes) answers a greedy
  completion with the text of the single-process `tessera generate`, and reports each rank's
  memory (weights about 1/6 of the model's layers, plus its vocabulary shard);
- killing one worker mid-stream fails that stream with a clear error within seconds, /ready turns
  503 while the group restarts, and the server then serves the same answer again;
- two loopback "nodes" (`--node-rank 0` and `--node-rank 1`) form one PP=2 group;
- the same TP=3 x PP=2 group on the guarded device (configs/guarded-tp3-pp2.yaml) serves the
  single-process answer, streamed and not, with the device named in every rank's log line; so does
  `serve --backend guarded` (one worker process).
Every comparison runs the exact path (fp32 activations: the serve flag, or the topology key for the
two-node group), where layouts differ only in fp32 summation order; with int8 activations such
differences sometimes become whole rounding steps and a greedy text may part.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from serve_util import BIN, MODEL, start_server

SRC = os.environ.get("TESSERA_SOURCE_DIR", ".")
PROMPT = "The capital of France is"

pytestmark = pytest.mark.skipif(not os.path.exists(MODEL), reason="default model not downloaded")


def solo_greedy(max_tokens):
    out = subprocess.run([BIN, "generate", "--model", MODEL, "--prompt", PROMPT, "--max-tokens", str(max_tokens),
                          "--temperature", "0", "--json", "--activations", "fp32"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["text"]


def complete(url, max_tokens, **extra):
    r = requests.post(url + "/v1/completions", json={"model": "smollm2-135m-instruct", "prompt": PROMPT,
                                                      "max_tokens": max_tokens, "temperature": 0, **extra},
                      timeout=120)
    return r


def worker_pids(server_pid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == server_pid and b"worker" in cmd[1:2]:
            pids.append((int(cmd[cmd.index(b"--rank") + 1]), int(d)))
    return dict(pids)


def metric(url, name, labels=""):
    text = requests.get(url + "/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def write_config(tmp_path, body):
    p = tmp_path / "topology.yaml"
    p.write_text(body)
    return str(p)


@pytest.fixture(scope="module")
def tp3pp2():
    proc, url = start_server("--config", os.path.join(SRC, "configs/cpu-tp3-pp2.yaml"), "--no-warmup",
                             "--activations", "fp32",
                             "--kv-cache-mb", "64")
    yield proc, url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_tp3_pp2_serves_the_single_process_answer(tp3pp2):
    proc, url = tp3pp2
    want = solo_greedy(16)
    r = complete(url, 16)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == want
    # Memory per rank, as each worker measured it: 6 ranks, each with 1/6 of the layer weights.
    weights = [metric(url, "tessera:worker_weight_bytes", f'{{rank="{k}"}}') for k in range(6)]
    resident = [metric(url, "tessera:worker_resident_bytes", f'{{rank="{k}"}}') for k in range(6)]
    assert all(w and w > 0 for w in weights) and all(m and m > 0 for m in resident)
    model_bytes = os.path.getsize(MODEL)
    for w in weights:
        assert w < model_bytes / 3, (w, model_bytes)  # a sixth of the layers + a third of the vocab
    assert len(worker_pids(proc.pid)) == 6


def test_killed_worker_fails_the_stream_and_the_group_restarts(tp3pp2):
    proc, url = tp3pp2
    want = solo_greedy(8)
    before = metric(url, "tessera:worker_restarts_total") or 0.0
    r = requests.post(url + "/v1/completions", stream=True, timeout=120,
                      json={"model": "smollm2-135m-instruct", "prompt": PROMPT, "max_tokens": 400,
                            "temperature": 0, "ignore_eos": True, "stream": True})
    assert r.status_code == 200
    lines = r.iter_lines()
    got = 0
    for line in lines:  # a few tokens arrive: generation is under way
        if line.startswith(b"data: {"):
            got += 1
            if got == 3:
                break
    pids = worker_pids(proc.pid)
    assert sorted(pids) == list(range(6))
    t0 = time.time()
    os.kill(pids[4], signal.SIGKILL)  # stage 1, tp rank 1
    rest = b"\n".join(lines).decode()
    elapsed = time.time() - t0
    assert elapsed < 15, elapsed
    assert "error" in rest and "rank 4" in rest, rest[-2000:]
    saw_not_ready = False
    deadline = time.time() + 120
    while time.time() < deadline:
        code = requests.get(url + "/ready", timeout=10).status_code
        if code == 503:
            saw_not_ready = True
        elif code == 200 and saw_not_ready:
            break
        time.sleep(0.05)
    assert saw_not_ready
    assert requests.get(url + "/ready", timeout=10).status_code == 200
    assert metric(url, "tessera:worker_restarts_total") == before + 1
    r = complete(url, 8)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == want
    new = worker_pids(proc.pid)
    assert sorted(new) == list(range(6)) and new[4] != pids[4]


def test_worker_killed_while_idle_is_replaced_before_the_next_request(tp3pp2):
    proc, url = tp3pp2
    want = solo_greedy(8)
    before = metric(url, "tessera:worker_restarts_total") or 0.0
    pids = worker_pids(proc.pid)
    os.kill(pids[1], signal.SIGKILL)  # nobody is generating: only the heartbeats can tell
    deadline = time.time() + 60
    while time.time() < deadline and (metric(url, "tessera:worker_restarts_total") or 0.0) < before + 1:
        time.sleep(0.1)
    assert metric(url, "tessera:worker_restarts_total") == before + 1
    while time.time() < deadline and requests.get(url + "/ready", timeout=10).status_code != 200:
        time.sleep(0.1)
    r = complete(url, 8)  # the first request after the death is served, not failed
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == want
    assert worker_pids(proc.pid)[1] != pids[1]


def test_guarded_device_group_serves_the_single_process_answer(tmp_path):
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc, url = start_server("--config", os.path.join(SRC, "configs/guarded-tp3-pp2.yaml"),
                                 "--activations", "fp32",
                                 "--no-warmup", stderr=err)
    try:
        want = solo_greedy(12)
        r = complete(url, 12)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == want
        r = requests.post(url + "/v1/chat/completions", timeout=120, stream=True,
                          json={"model": "smollm2-135m-instruct", "max_tokens": 8, "temperature": 0,
                                "stream": True, "messages": [{"role": "user", "content": "Hi!"}]})
        assert r.status_code == 200
        chunks = [line for line in r.iter_lines() if line.startswith(b"data: {")]
        assert len(chunks) >= 2
        assert len(worker_pids(proc.pid)) == 6
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert len(re.findall(r"rank \d+ \(stage \d, tp \d\) on guarded:\d", text)) == 6, text[-3000:]


def test_single_worker_serves_on_the_guarded_device(tmp_path):
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc, url = start_server("--backend", "guarded", "--no-warmup", "--activations", "fp32", "--kv-cache-mb", "32", stderr=err)
    try:
        r = complete(url, 12)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == solo_greedy(12)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert re.search(r"rank 0 \(stage 0, tp 0\) on guarded:0", log.read_text())


def two_node_config(tmp_path, timeout=180):
    port = 29700 + os.getpid() % 200
    return write_config(tmp_path, f"""
model: {{path: smollm2-135m-instruct}}
backend: cpu
parallel: {{tensor: 1, pipeline: 2}}
nodes:
  - {{name: a, host: 127.0.0.1, devices: [0]}}
  - {{name: b, host: 127.0.0.1, devices: [0]}}
coordinator: {{host: 127.0.0.1, port: {port}, timeout_s: {timeout}}}
scheduler: {{kv_cache_mb: 32}}
cpu_activations: fp32
""")


def with_secret(secret):
    env = dict(os.environ)
    env.pop("TESSERA_GROUP_SECRET", None)
    if secret is not None:
        env["TESSERA_GROUP_SECRET"] = secret
    return env


def test_two_nodes_form_one_pipeline(tmp_path):
    cfg = two_node_config(tmp_path)
    secret = os.urandom(32).hex()
    node1 = subprocess.Popen([BIN, "serve", "--config", cfg, "--node-rank", "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=with_secret(secret))
    try:
        proc, url = start_server("--config", cfg, "--node-rank", "0", "--no-warmup",
                                 env=with_secret(secret))
        try:
            r = complete(url, 12)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["text"] == solo_greedy(12)
            ranks = list(worker_pids(proc.pid).values()) + list(worker_pids(node1.pid).values())
            assert len(worker_pids(proc.pid)) == 1  # rank 0 here, rank 1 under the other node
            assert len(ranks) == 2
            for pid in ranks:  # the secret travels in the environment, never on a command line
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert secret.encode() not in f.read()
                with open(f"/proc/{pid}/environ", "rb") as f:
                    assert b"TESSERA_GROUP_SECRET=" + secret.encode() in f.read().split(b"\0")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        node1.send_signal(signal.SIGTERM)
        node1.wait(timeout=60)


def test_several_nodes_need_the_group_secret(tmp_path):
    cfg = two_node_config(tmp_path)
    out = subprocess.run([BIN, "serve", "--config", cfg, "--node-rank", "0"], capture_output=True,
                         text=True, timeout=60, env=with_secret(None))
    assert out.returncode != 0
    assert "TESSERA_GROUP_SECRET" in out.stderr and "2 nodes" in out.stderr, out.stderr


# A node that presents another secret is refused by the coordinator's store (which says so in its
# log); the group never forms, and the coordinator says which rank did not register.
def test_a_node_with_the_wrong_secret_is_refused(tmp_path):
    cfg = two_node_config(tmp_path, timeout=6)
    log0, log1 = tmp_path / "node0.log", tmp_path / "node1.log"
    with open(log1, "w") as err1:
        node1 = subprocess.Popen([BIN, "serve", "--config", cfg, "--node-rank", "1"],
                                 stdout=subprocess.DEVNULL, stderr=err1,
                                 env=with_secret("an-intruder-who-guessed-wrong"))
    try:
        with open(log0, "w") as err0:
            coord = subprocess.run([BIN, "serve", "--config", cfg, "--node-rank", "0", "--no-warmup",
                                    "--http-port", "0"], stdout=subprocess.DEVNULL, stderr=err0,
                                   timeout=120, env=with_secret(os.urandom(32).hex()))
        assert coord.returncode != 0
        text0 = log0.read_text()
        assert "rendezvous store: refused a connection: wrong group secret" in text0, text0[-3000:]
        assert "rank(s) 1 did not register" in text0, text0[-3000:]
    finally:
        node1.send_signal(signal.SIGTERM)
        node1.wait(timeout=60)
    assert "group secret" in log1.read_text(), log1.read_text()[-3000:]


def test_invalid_topology_exits_with_the_line_and_the_choices(tmp_path):
    cfg = write_config(tmp_path, "model: {path: smollm2-135m-instruct}\nparallel: {tensor: 2}\n")
    out = subprocess.run([BIN, "serve", "--config", cfg], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "tensor" in out.stderr and "1, 3, 9" in out.stderr, out.stderr
