"""influxdb-client (InfluxDB 2.x Python client) -> Ocelli (run by clients_real.rs).

usage: influx.py <base url>

Writes points with the synchronous v2 write API into bucket "telemetry", plain and gzip
(exits non-zero if a write fails), then prints one JSON line: {"ping": client.ping(), "health": {status, message,
name, version}}. ping() and health() do not raise: they report a failure in their result.
"""

import json
import sys
from datetime import datetime, timezone

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS


def main():
    url = sys.argv[1]
    with InfluxDBClient(url=url, token="unused", org="clients-real", timeout=10_000) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        now = datetime.now(timezone.utc)
        write.write(
            bucket="telemetry",
            record=[
                Point("weather").tag("city", "paris").field("temperature", 21.5)
                .field("humidity", 40).time(now),
                Point("weather").tag("city", "oslo").field("temperature", -3.25)
                .field("humidity", 81).time(now),
            ],
        )
        # line protocol text, millisecond precision
        ms = int(now.timestamp() * 1000)
        write.write(
            bucket="telemetry",
            record=f"disk,host=db1,path=/var used_percent=71.5 {ms}",
            write_precision=WritePrecision.MS,
        )
    # the same client with gzip-compressed writes (Content-Encoding: gzip)
    with InfluxDBClient(url=url, token="unused", org="clients-real", enable_gzip=True) as gz:
        gz.write_api(write_options=SYNCHRONOUS).write(
            bucket="telemetry",
            record=Point("disk").tag("host", "db2").tag("path", "/srv").field("used_percent", 12.25),
        )
    with InfluxDBClient(url=url, token="unused", org="clients-real", timeout=10_000) as client:
        health = client.health()
        print(
            json.dumps(
                {
                    "ping": client.ping(),
                    "health": {
                        "status": health.status,
                        "message": health.message,
                        "name": health.name,
                        "version": health.version,
                    },
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
