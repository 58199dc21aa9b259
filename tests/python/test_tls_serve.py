"""`tessera serve --tls-cert --tls-key` on a tiny generated model, with a self-signed certificate
made at test time by the openssl CLI (subjectAltName IP:127.0.0.1, DNS:localhost): curl with the
CA gets a chat completion, curl without it fails verification, plain HTTP on the port is refused
without harming the server, the openai client streams over HTTPS, a gRPC client with the CA runs
Generate, Chat and the health check, and bad credentials stop `serve` at start with a message
that names the file or the topology key."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import grpc
import pytest

from serve_util import BIN, grpc_stubs, launch
from tiny_models import TinySpec

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("curl") is None,
                                reason="needs the openssl and curl command-line tools")


def make_cert(d, name, cn="localhost"):
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    TinySpec().write_hf(str(d / "hf"))
    cert, key = make_cert(d, "server")
    other_cert, other_key = make_cert(d, "other", cn="other")
    return {"dir": d, "model": str(d / "hf"), "cert": cert, "key": key, "other_key": other_key}


@pytest.fixture(scope="module")
def server(files):
    log = open(files["dir"] / "serve.log", "w")
    try:
        proc, url, grpc_addr = launch(["--model", files["model"], "--http-port", "0",
                                       "--grpc-port", "0", "--no-warmup", "--kv-cache-mb", "8",
                                       "--tls-cert", files["cert"], "--tls-key", files["key"]],
                                      stderr=log)
    except RuntimeError:
        raise AssertionError(open(files["dir"] / "serve.log").read()[-3000:])
    assert url.startswith("https://127.0.0.1:")
    yield url, grpc_addr
    assert proc.poll() is None, "the server died during the tests"
    proc.terminate()
    assert proc.wait(timeout=60) == 0


CHAT = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 4,
        "ignore_eos": True}


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True,
                          text=True)


def curl_chat(url, *args):
    return curl(*args, "-H", "content-type: application/json", "-d", json.dumps(CHAT),
                "-w", "\n%{http_code}", url + "/v1/chat/completions")


def check_chat(out):
    assert out.returncode == 0, out.stderr
    body, code = out.stdout.rsplit("\n", 1)
    assert code == "200", out.stdout
    j = json.loads(body)
    assert j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-")
    assert j["choices"][0]["message"]["role"] == "assistant"
    assert j["choices"][0]["finish_reason"] == "length"
    assert j["usage"]["completion_tokens"] == 4


def test_curl_with_the_ca_gets_a_completion(server, files):
    url, _ = server
    check_chat(curl_chat(url, "--cacert", files["cert"]))
    # The name in the certificate's subjectAltName works too.
    check_chat(curl_chat(url.replace("127.0.0.1", "localhost"), "--cacert", files["cert"]))


def test_curl_without_the_ca_fails_verification(server):
    url, _ = server
    out = curl_chat(url)
    assert out.returncode == 60, (out.returncode, out.stderr)  # CURLE_PEER_FAILED_VERIFICATION
    assert "certificate" in out.stderr


def test_plain_http_is_refused_and_the_server_goes_on(server, files):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    # curl speaking plain HTTP to the TLS port: a plain-text 400 saying so, then the close.
    out = curl("-i", "-H", "content-type: application/json", "-d", json.dumps(CHAT),
               f"http://127.0.0.1:{port}/v1/chat/completions")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 400"), out.stdout
    assert "Connection: close" in out.stdout and "HTTPS only" in out.stdout
    # Raw sockets: an HTTP request, and bytes that are neither HTTP nor TLS.
    for payload in [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x01garbage" * 64]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(payload)
            got = b""
            while chunk := s.recv(4096):  # the server closes the connection
                got += chunk
            assert got == b"" or got.startswith(b"HTTP/1.1 400"), got
    # A TLS client that sends nothing after connecting does not block others either.
    idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    check_chat(curl_chat(url, "--cacert", files["cert"]))
    idle.close()


def test_openai_client_streams_over_https(server, files):
    openai = pytest.importorskip("openai")
    url, _ = server
    verified = ssl.create_default_context(cafile=files["cert"])
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60,
                           http_client=openai.DefaultHttpxClient(verify=verified))
    model = client.models.list().data[0].id
    stream = client.chat.completions.create(model=model, messages=CHAT["messages"], max_tokens=5,
                                            stream=True, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert len({c.id for c in chunks}) == 1
    # The system's trust store does not know this CA: the client refuses the server.
    untrusted = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.APIConnectionError):
        untrusted.models.list()


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    generate_pb2, _, tessera_pb2_grpc, health_pb2, health_pb2_grpc = grpc_stubs(
        tmp_path_factory.mktemp("pb"))
    return generate_pb2, tessera_pb2_grpc, health_pb2, health_pb2_grpc


def test_grpc_over_tls(server, files, stubs):
    generate_pb2, tessera_pb2_grpc, health_pb2, health_pb2_grpc = stubs
    _, addr = server
    creds = grpc.ssl_channel_credentials(root_certificates=open(files["cert"], "rb").read())
    channel = grpc.secure_channel(addr, creds)
    stub = tessera_pb2_grpc.TesseraServiceStub(channel)
    req = generate_pb2.GenerateRequest(text="hello world",
                                       stopping=generate_pb2.StoppingOptions(max_tokens=4, ignore_eos=True))
    resps = list(stub.Generate(req, timeout=60))
    assert resps[-1].WhichOneof("response") == "complete"
    assert resps[-1].complete.usage.completion_tokens == 4
    chat = generate_pb2.ChatRequest(messages=[generate_pb2.ChatMessage(role="user", content="hi")],
                                    stopping=generate_pb2.StoppingOptions(max_tokens=3, ignore_eos=True))
    kinds = [r.WhichOneof("response") for r in stub.Chat(chat, timeout=60)]
    assert kinds[-1] == "complete" and "error" not in kinds
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # A plaintext channel cannot talk to the TLS port.
    plain = health_pb2_grpc.HealthStub(grpc.insecure_channel(addr))
    with pytest.raises(grpc.RpcError) as e:
        plain.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def serve_fails(files, *args):
    out = subprocess.run([BIN, "serve", "--model", files["model"], "--http-port", "0",
                          "--no-warmup", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out.stderr[-2000:]
    assert "READY" not in out.stdout
    return out.stderr


def test_bad_credentials_stop_serve_at_start(files):
    cert, key, other_key = files["cert"], files["key"], files["other_key"]
    err = serve_fails(files, "--tls-cert", cert, "--tls-key", other_key)
    assert f"TLS private key {other_key} does not match the certificate {cert}" in err
    missing = str(files["dir"] / "missing.pem")
    assert f"TLS certificate {missing}: no such file" in serve_fails(
        files, "--tls-cert", missing, "--tls-key", key)
    assert "holds no PEM certificate" in serve_fails(files, "--tls-cert", key, "--tls-key", key)
    assert "holds no PEM private key" in serve_fails(files, "--tls-cert", cert, "--tls-key", cert)
    assert "needs --tls-key" in serve_fails(files, "--tls-cert", cert)
    assert "needs --tls-cert" in serve_fails(files, "--tls-key", key)


def test_topology_listen_tls_keys(files):
    d = files["dir"]
    base = f"model: {{path: '{files['model']}'}}\nscheduler: {{kv_cache_mb: 8}}\n"
    half = d / "half.yaml"
    half.write_text(base + f"listen:\n  http_port: 0\n  tls_cert: '{files['cert']}'\n")
    err = serve_fails(files, "--config", str(half))
    assert "listen.tls_key" in err and f"{half}:" in err
    wrong = d / "wrong.yaml"
    wrong.write_text(base + f"listen: {{http_port: 0, tls_cert: '{files['cert']}', "
                            f"tls_key: '{files['other_key']}'}}\n")
    assert "does not match the certificate" in serve_fails(files, "--config", str(wrong))
    # The flag wins over the file, as for the other listen settings.
    proc = subprocess.Popen([BIN, "serve", "--config", str(wrong), "--no-warmup",
                             "--tls-key", files["key"]],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.time() + 120
        while time.time() < deadline and not line.startswith("READY "):
            line = proc.stdout.readline()
            if not line:
                break
        assert line.startswith("READY https://"), line
        check_chat(curl_chat(line.split()[1].strip(), "--cacert", files["cert"]))
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
