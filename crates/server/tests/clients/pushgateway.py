"""prometheus_client's Pushgateway functions -> Ocelli (run by clients_real.rs).

usage: pushgateway.py <base url> push|delete

push: push_to_gateway(job="backup") of a gauge and a counter, as a batch job does when it ends;
delete: delete_from_gateway(job="backup"). Either raises (exit non-zero) on an HTTP error.
"""

import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, delete_from_gateway, push_to_gateway


def main():
    url, op = sys.argv[1], sys.argv[2]
    if op == "push":
        registry = CollectorRegistry()
        Gauge(
            "backup_last_success_unixtime", "Last time the backup succeeded.", registry=registry
        ).set(1_700_000_000)
        Counter("backup_files", "Files backed up.", registry=registry).inc(42)
        push_to_gateway(url, job="backup", registry=registry)
    elif op == "delete":
        delete_from_gateway(url, job="backup")
    else:
        sys.exit(f"unknown op {op!r}")


if __name__ == "__main__":
    main()
