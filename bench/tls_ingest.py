#!/usr/bin/env python3
"""Ingest cost of TLS and tokens, side by side in one run.

Loads the same remote_write bodies (a workload made by the shared harness's gen.py) into fresh
servers, one after another and interleaved over several rounds so that machine noise falls on
every configuration alike:

- `ocelli`: `ocelli server` over plain HTTP, no auth (the baseline);
- `ocelli-tls-op`: `--tls-auto --auth`, writing with the operator's token;
- `ocelli-tls-ns`: the same, writing with a namespace-scoped write token (every series gets
  the namespace's `ns` label set by the server);
- `vm` and `vm-tls`: VictoriaMetrics (Debian `victoria-metrics`) over HTTP and with `-tls`,
  using the certificate Ocelli made.

For each it reports the server's CPU time per stored sample (from /proc/PID/stat during the load)
and the ratios the security issue asks for: Ocelli with TLS and a token against Ocelli without,
and Ocelli with TLS against VictoriaMetrics with TLS.

Usage (from the repository root, after `cargo build --release -p ocelli`):
  python3 bench/tls_ingest.py --bench-dir ../shared/bench [--workdir DIR] [--rounds 3]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url, ctx, token, limit=60):
    t0 = time.time()
    while time.time() - t0 < limit:
        try:
            req = urllib.request.Request(url)
            if token:
                req.add_header("Authorization", "Bearer " + token)
            with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("not ready: " + url)


def load(host, port, path, ctx, token, headers, mm, idx, conns):
    """Sends every body; returns (samples accepted, errors)."""
    per = [idx[i::conns] for i in range(conns)]
    out = {"ok": 0, "err": 0, "first_error": None}
    lock = threading.Lock()

    def worker(recs):
        c = None
        ok = err = 0
        first = None
        for _, ns, off, ln in recs:
            if c is None:
                c = (http.client.HTTPSConnection(host, port, context=ctx, timeout=60) if ctx
                     else http.client.HTTPConnection(host, port, timeout=60))
            h = dict(headers)
            h["Content-Length"] = str(ln)
            if token:
                h["Authorization"] = "Bearer " + token
            c.request("POST", path, body=memoryview(mm)[off:off + ln], headers=h)
            r = c.getresponse()
            body = r.read()
            if 200 <= r.status < 300:
                ok += ns
            else:
                err += 1
                first = first or "%d %s" % (r.status, body[:200])
        with lock:
            out["ok"] += ok
            out["err"] += err
            out["first_error"] = out["first_error"] or first

    ts = [threading.Thread(target=worker, args=(p,)) for p in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def make_token(binary, data, *args):
    out = subprocess.run([binary, "token", "create", "--data-dir", data, "-o", "json", *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["token"]


def run_ocelli(kind, binary, run_dir, wl, manifest, certs):
    data = os.path.join(run_dir, "data")
    os.makedirs(data)
    port = free_port()
    cmd = [binary, "server", "--no-local-agent", "--listen", "127.0.0.1:%d" % port, "--data-dir", data]
    token, ctx = None, None
    if kind != "ocelli":
        cmd += ["--tls-auto", "--auth"]
        op = make_token(binary, data, "--scope", "admin")
        token = op if kind == "ocelli-tls-op" else make_token(
            binary, data, "--namespace", "bench", "--scope", "write")
    log = open(os.path.join(run_dir, "server.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        scheme = "http"
        if kind != "ocelli":
            ca = os.path.join(data, "tls", "ca.pem")
            for _ in range(100):
                if os.path.exists(ca):
                    break
                time.sleep(0.1)
            ctx = ssl.create_default_context(cafile=ca)
            scheme = "https"
            if certs and not os.path.exists(os.path.join(certs, "server.pem")):
                os.makedirs(certs, exist_ok=True)
                for f in ("server.pem", "server.key", "ca.pem"):
                    shutil.copy(os.path.join(data, "tls", f), certs)
        wait_ready("%s://127.0.0.1:%d/-/ready" % (scheme, port), ctx, token)
        return measure(p.pid, "127.0.0.1", port, "/api/v1/write", ctx, token, wl, manifest)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)


def run_vm(kind, binary, run_dir, wl, manifest, certs):
    data = os.path.join(run_dir, "data")
    port = free_port()
    cmd = [binary, "-storageDataPath=" + data, "-httpListenAddr=127.0.0.1:%d" % port,
           "-retentionPeriod=100y"]
    ctx = None
    if kind == "vm-tls":
        cmd += ["-tls", "-tlsCertFile=" + os.path.join(certs, "server.pem"),
                "-tlsKeyFile=" + os.path.join(certs, "server.key")]
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    log = open(os.path.join(run_dir, "server.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        scheme = "https" if ctx else "http"
        wait_ready("%s://127.0.0.1:%d/health" % (scheme, port), ctx, None)
        return measure(p.pid, "127.0.0.1", port, "/api/v1/write", ctx, None, wl, manifest)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)


def measure(pid, host, port, path, ctx, token, wl, manifest):
    sys.path.insert(0, ARGS.bench_dir)
    import load as shared_load  # the shared harness's body index reader
    info = manifest["formats"]["prom"]
    mm, idx = shared_load.read_index(os.path.join(wl, info["file"]))
    c0, t0 = cpu_s(pid), time.monotonic()
    res = load(host, port, path, ctx, token, info["headers"], mm, idx, ARGS.conns)
    wall = time.monotonic() - t0
    cpu = cpu_s(pid) - c0
    if res["err"]:
        raise SystemExit("%d failed requests, e.g. %s" % (res["err"], res["first_error"]))
    return {"samples": res["ok"], "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_us_per_sample": cpu / res["ok"] * 1e6, "samples_per_s": res["ok"] / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-dir", required=True, help="the shared harness (gen.py, load.py)")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tls-bench"))
    ap.add_argument("--binary", default="target/release/ocelli")
    ap.add_argument("--vm", default=shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics")
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--duration", default="30m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--json", help="write the results here")
    global ARGS
    ARGS = ap.parse_args()
    wl = os.path.join(ARGS.workdir, "wl-%dx100-%s" % (ARGS.hosts, ARGS.duration))
    if not os.path.exists(os.path.join(wl, "manifest.json")):
        subprocess.run([sys.executable, os.path.join(ARGS.bench_dir, "gen.py"), "--out", wl,
                        "--hosts", str(ARGS.hosts), "--series-per-host", "100", "--interval", "10s",
                        "--duration", ARGS.duration, "--formats", "prom"], check=True)
    with open(os.path.join(wl, "manifest.json")) as fh:
        manifest = json.load(fh)
    certs = os.path.join(ARGS.workdir, "certs")
    shutil.rmtree(certs, ignore_errors=True)
    kinds = ["ocelli", "ocelli-tls-op", "ocelli-tls-ns", "vm", "vm-tls"]
    results = {k: [] for k in kinds}
    for rnd in range(ARGS.rounds):
        for k in kinds:
            run_dir = os.path.join(ARGS.workdir, "run-%s-%d" % (k, rnd))
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            r = (run_ocelli if k.startswith("ocelli") else run_vm)(k, os.path.abspath(ARGS.binary) if k.startswith("ocelli") else ARGS.vm, run_dir, wl, manifest, certs)
            results[k].append(r)
            print("round %d %-14s %8.3f us/sample  %9.0f samples/s  (%d samples, %.1f CPU s)" % (
                rnd, k, r["cpu_us_per_sample"], r["samples_per_s"], r["samples"], r["cpu_s"]), flush=True)
            shutil.rmtree(os.path.join(run_dir, "data"), ignore_errors=True)
    med = {k: statistics.median(r["cpu_us_per_sample"] for r in v) for k, v in results.items()}
    print("\nmedian server CPU per sample (us):")
    for k in kinds:
        print("  %-14s %.3f" % (k, med[k]))
    ratios = {
        "ocelli TLS+operator token / ocelli plain": med["ocelli-tls-op"] / med["ocelli"],
        "ocelli TLS+namespace token / ocelli plain": med["ocelli-tls-ns"] / med["ocelli"],
        "ocelli TLS+operator token / VictoriaMetrics TLS": med["ocelli-tls-op"] / med["vm-tls"],
        "ocelli plain / VictoriaMetrics plain": med["ocelli"] / med["vm"],
    }
    for k, v in ratios.items():
        print("  %-48s %.3f" % (k, v))
    if ARGS.json:
        with open(ARGS.json, "w") as fh:
            json.dump({"results": results, "median_us": med, "ratios": ratios}, fh, indent=1)


if __name__ == "__main__":
    main()
