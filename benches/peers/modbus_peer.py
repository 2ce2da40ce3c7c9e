#!/usr/bin/env python3
"""Peer for `sunshare bench modbus`: a small asyncio pymodbus poller doing what Sunshare does per
poll of a Huawei SUN2000 (the two block reads of its poll plan, decoding, one SQLite insert), one connection
per gateway, one request in flight per connection, as fast as the simulator answers.

Usage: modbus_peer.py --units N --seconds S HOST:PORT [HOST:PORT ...]
Prints one JSON object: polls, reads, seconds, reads_per_s, cpu_us_per_poll.
"""
import argparse
import asyncio
import json
import resource
import sqlite3
import tempfile
import time

from pymodbus.client import AsyncModbusTcpClient

# The readings' blocks; like Sunshare, a routine poll leaves the model and serial (30000..30025) to
# commissioning.
BLOCKS = [(32008, 16), (32064, 52)]


def s32(hi, lo):
    v = (hi << 16) | lo
    return v - (1 << 32) if v & 0x80000000 else v


def decode(blocks):
    b = {start: regs for start, regs in blocks}
    r = b[32064]
    return {
        "dc_power_w": s32(r[0], r[1]),
        "ac_power_w": s32(r[16], r[17]),
        "frequency_hz": r[21] / 100.0,
        "temperature_c": (r[23] - 65536 if r[23] & 0x8000 else r[23]) / 10.0,
        "state": r[25],
        "energy_lifetime_wh": ((r[42] << 16) | r[43]) * 10.0,
        "energy_today_wh": ((r[50] << 16) | r[51]) * 10.0,
        "alarm1": b[32008][0],
    }


async def gateway(addr, units, deadline, db, counts):
    host, port = addr.rsplit(":", 1)
    client = AsyncModbusTcpClient(host, port=int(port), timeout=5)
    await client.connect()
    while time.monotonic() < deadline:
        for unit in range(1, units + 1):
            blocks = []
            for start, count in BLOCKS:
                rr = await client.read_holding_registers(start, count=count, device_id=unit)
                if rr.isError():
                    raise RuntimeError(f"{addr} unit {unit}: {rr}")
                blocks.append((start, rr.registers))
                counts["reads"] += 1
            v = decode(blocks)
            db.execute(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?)",
                (f"{addr}/{unit}", time.time(), v["ac_power_w"], v["energy_lifetime_wh"], json.dumps(v)),
            )
            counts["polls"] += 1
            if counts["polls"] % 200 == 0:
                db.commit()
    client.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--units", type=int, default=10)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("addresses", nargs="+")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(f"{d}/peer.db")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE samples (device TEXT, ts REAL, ac REAL, lifetime REAL, readings TEXT)")
        counts = {"reads": 0, "polls": 0}
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        deadline = t0 + a.seconds
        await asyncio.gather(*(gateway(x, a.units, deadline, db, counts) for x in a.addresses))
        db.commit()
        secs = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        print(json.dumps({
            "polls": counts["polls"],
            "reads": counts["reads"],
            "seconds": secs,
            "reads_per_s": counts["reads"] / secs,
            "cpu_us_per_poll": cpu * 1e6 / max(counts["polls"], 1),
        }))


if __name__ == "__main__":
    asyncio.run(main())
