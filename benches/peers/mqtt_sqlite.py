#!/usr/bin/env python3
"""Peer for the MQTT benchmark: a small paho-mqtt subscriber that parses the same JSON telemetry
and batch-inserts into SQLite. Prints one JSON line with its throughput and CPU time.

usage: mqtt_sqlite.py HOST:PORT TOPIC_FILTER SECONDS
"""
import json
import resource
import sqlite3
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

FIELDS = {"pac": ("ac_power_w", 1.0), "etotal": ("energy_lifetime_wh", 1000.0),
          "etoday": ("energy_today_wh", 1000.0), "temp": ("temperature_c", 1.0)}


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    topic, seconds = sys.argv[2], float(sys.argv[3])
    db = sqlite3.connect(tempfile.mktemp(suffix=".db"), check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE raw_samples (device_id TEXT, ts_ms INTEGER, ac_power_w REAL, "
               "energy_lifetime_wh REAL, readings TEXT, PRIMARY KEY (device_id, ts_ms))")
    batch, lock = [], threading.Lock()
    state = {"received": 0, "stored": 0, "bad": 0}
    subscribed = threading.Event()

    def flush():
        with lock:
            rows = batch[:]
            batch.clear()
        if rows:
            db.executemany("INSERT OR IGNORE INTO raw_samples VALUES (?, ?, ?, ?, ?)", rows)
            db.commit()
            state["stored"] += len(rows)

    def on_message(_c, _u, msg):
        state["received"] += 1
        try:
            rec = json.loads(msg.payload)
            logger = msg.topic.split("/")[-2]
            data = rec["data"]
            values = {FIELDS[k][0]: float(v) * FIELDS[k][1] for k, v in data.items() if k in FIELDS}
            row = (f"{logger}-{int(rec['addr'])}", int(rec["ts"]) * 1000, values.get("ac_power_w"),
                   values.get("energy_lifetime_wh"), json.dumps(values))
        except (ValueError, KeyError, TypeError):
            state["bad"] += 1
            return
        with lock:
            batch.append(row)
        if len(batch) >= 2000:
            flush()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-{time.time_ns()}",
                         clean_session=True)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(host, int(port), keepalive=30)
    client.subscribe(topic, qos=1)
    client.loop_start()
    subscribed.wait(10)
    print("ready", flush=True)
    # Measure from the first message for SECONDS.
    while state["received"] == 0:
        time.sleep(0.01)
    r0, t0 = state["received"], time.monotonic()
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    while time.monotonic() - t0 < seconds:
        time.sleep(0.2)
        flush()
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    r1, t1 = state["received"], time.monotonic()
    client.loop_stop()
    flush()
    n = r1 - r0
    cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
    print(json.dumps({"messages": n, "seconds": t1 - t0, "rate": n / (t1 - t0),
                      "cpu_us_per_msg": cpu / max(n, 1) * 1e6, "stored": state["stored"],
                      "bad": state["bad"], "max_rss_kib": peak_rss_kib()}), flush=True)


def peak_rss_kib():
    """This process's own peak RSS. (ru_maxrss is carried over an exec on Linux, so a peer started
    by a large benchmark process would report the benchmark's peak instead.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()
