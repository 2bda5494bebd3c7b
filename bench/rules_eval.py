#!/usr/bin/env python3
"""Rule evaluation cost: 1,000 alerting rules over the 100,000-series workload.

Generates a workload with the shared harness's gen.py (1,000 hosts x 100 series, 10 s) whose
samples run up to a few minutes past now, so that rules evaluated at the wall clock see data;
loads it into a fresh `ocelli server` (release build, no local agent) with a rule file of
1,000 alerting rules in 10 groups; lets the groups run for a few evaluation cycles; and reports
each group's evaluation time (from `GET /api/v1/rules`), the sum per cycle, and the server's
CPU time per cycle (from /proc).

The rules are of two kinds, as operators write them:
- 900 per-VM rules, as threshold alarms over one VM make them:
  `100 * (1 - avg by (vm) (rate(node_cpu_seconds_total{mode="idle",vm="vm-N"}[5m]))) > T`;
- 100 fleet-wide rules over every host (`node_load1 > T`, a filesystem ratio, network rates
  summed by namespace).

Usage (from the repository root):
  python3 bench/rules_eval.py --bench-dir ../shared/bench [--workdir DIR] [--cycles 5]
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rules_yaml(groups, per_group, interval):
    out = ["groups:"]
    n = 0
    for g in range(groups):
        out.append(f"  - name: bench-{g}")
        out.append(f"    interval: {interval}")
        out.append("    rules:")
        for i in range(per_group):
            if g < groups - 1:
                vm = "vm-%06d" % (n % 1000)
                expr = ('100 * (1 - avg by (vm) (rate(node_cpu_seconds_total{mode="idle",vm="%s"}[5m]))) > %d'
                        % (vm, 50 + n % 40))
            else:
                kind = i % 3
                if kind == 0:
                    expr = "node_load1 > %d" % (1 + i % 4)
                elif kind == 1:
                    expr = "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.%02d" % (10 + i % 30)
                else:
                    expr = "sum by (ns) (rate(node_network_receive_bytes_total[5m])) > %d" % (1_000_000 * (1 + i % 9))
            out.append(f"      - alert: Bench{n}")
            out.append(f"        expr: '{expr}'")
            out.append("        for: 1m")
            out.append("        labels: {severity: warning}")
            out.append("        annotations: {summary: 'value {{ $value }} on {{ $labels.vm }}'}")
            n += 1
    return "\n".join(out) + "\n"


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.load(r)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-dir", required=True, help="the shared harness (gen.py, load.py)")
    ap.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "ocelli-rules-bench"))
    ap.add_argument("--binary", default="target/release/ocelli")
    ap.add_argument("--interval", default="30s", help="evaluation interval of every group")
    ap.add_argument("--cycles", type=int, default=5, help="evaluation cycles to measure")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--per-group", type=int, default=100)
    args = ap.parse_args()

    wd = args.workdir
    os.makedirs(wd, exist_ok=True)
    wl = os.path.join(wd, "wl")
    # 20 minutes of data ending 6 minutes from now: rules evaluated over the next minutes see
    # full 5-minute windows
    end = int(time.time()) + 360
    subprocess.run([sys.executable, os.path.join(args.bench_dir, "gen.py"), "--out", wl, "--hosts", "1000",
                    "--series-per-host", "100", "--interval", "10s", "--duration", "20m", "--end", str(end),
                    "--formats", "prom"], check=True)
    with open(os.path.join(wd, "rules.yml"), "w") as f:
        f.write(rules_yaml(args.groups, args.per_group, args.interval))
    port = free_port()
    data = os.path.join(wd, "data")
    subprocess.run(["rm", "-rf", data], check=True)
    with open(os.path.join(wd, "server.toml"), "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\n\n[rules]\nfiles = ["rules.yml"]\n'
                f'evaluation_interval = "{args.interval}"\n')
    log = open(os.path.join(wd, "server.log"), "w")
    srv = subprocess.Popen([args.binary, "server", "--config", os.path.join(wd, "server.toml"), "--no-local-agent"],
                           stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run([sys.executable, os.path.join(args.bench_dir, "load.py"), "--workload", wl, "--url", base,
                        "--conns", "2"], check=True)
        rules = get(base + "/api/v1/rules")["data"]["groups"]
        n_rules = sum(len(g["rules"]) for g in rules)
        print(f"{len(rules)} groups, {n_rules} rules loaded; waiting for {args.cycles} cycles")
        seen = {}
        cycle_times = []
        interval_s = float(args.interval.rstrip("s"))
        cpu0, t0 = cpu_seconds(srv.pid), time.time()
        while len(cycle_times) < args.cycles:
            time.sleep(interval_s / 4)
            gs = get(base + "/api/v1/rules")["data"]["groups"]
            last = {g["name"]: (g["lastEvaluation"], g["evaluationTime"]) for g in gs}
            if all(seen.get(k, (None,))[0] != v[0] for k, v in last.items()):
                # every group evaluated again since the last cycle recorded
                if seen:
                    cycle_times.append(sum(v[1] for v in last.values()))
                    firing = sum(1 for g in gs for r in g["rules"] for a in r.get("alerts", []))
                    print(f"cycle {len(cycle_times)}: sum of group evaluation times {cycle_times[-1]:.3f} s, "
                          f"slowest group {max(v[1] for v in last.values()):.3f} s, {firing} alerts active")
                seen = last
        cpu1, t1 = cpu_seconds(srv.pid), time.time()
        cycles_elapsed = (t1 - t0) / interval_s
        print(json.dumps({
            "rules": n_rules,
            "series": 100_000,
            "cycle_eval_seconds_median": sorted(cycle_times)[len(cycle_times) // 2],
            "cycle_eval_seconds_all": cycle_times,
            "server_cpu_seconds_per_cycle": (cpu1 - cpu0) / cycles_elapsed,
        }, indent=1))
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=60)


if __name__ == "__main__":
    main()
