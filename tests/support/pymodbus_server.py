#!/usr/bin/env python3
"""An independent Modbus TCP server (pymodbus) serving the registers a test writes.

Usage: pymodbus_server.py REGISTERS.json PORT_FILE

REGISTERS.json: {"units": {"1": {"holding": {"32080": [0, 1234]}, "input": {"5000": [1]}}}}
Binds 127.0.0.1 on a free port and writes the port number to PORT_FILE once it is listening.

An optional "advance" member makes values move while the server runs, as an inverter's do:
  "advance": {"every_ms": 400, "registers": [
      {"unit": 1, "table": "holding", "address": 32106, "words": 2, "step": 1}]}
Every `every_ms` each listed value (`words` registers, high word first) grows by `step` (it wraps
at the width of its registers), so a lifetime counter rises and a power reading changes.
"""
import asyncio
import json
import os
import socket
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

# The read function of each table: writes go through the same address mapping as reads.
FUNCTION = {"holding": 3, "input": 4}


def block(spec):
    # The block starts at wire address 0 (pymodbus keeps device addresses one above the wire).
    values = [0] * 65534
    for address, words in spec.items():
        for i, w in enumerate(words):
            values[int(address) + i] = int(w)
    return ModbusSequentialDataBlock(1, values)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_words(value, words):
    return [(value >> (16 * (words - 1 - i))) & 0xFFFF for i in range(words)]


async def store(context, unit, function, address, words):
    # pymodbus 3.10+ serves from its own runtime copy (async); older releases from the context.
    if hasattr(context, "async_setValues") and not isinstance(context, ModbusServerContext):
        await context.async_setValues(unit, function, address, words)
    else:
        context[unit].setValues(function, address, words)


async def advance(context, spec, values):
    every = spec["every_ms"] / 1000.0
    loop = asyncio.get_running_loop()
    next_at = loop.time() + every
    while True:
        # A fixed grid: a late wake-up does not shift the next step.
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        next_at += every
        for i, r in enumerate(spec["registers"]):
            words = int(r.get("words", 1))
            values[i] = (values[i] + int(r.get("step", 1))) % (1 << (16 * words))
            await store(
                context,
                int(r["unit"]),
                FUNCTION[r.get("table", "holding")],
                int(r["address"]),
                to_words(values[i], words),
            )


def initial(spec, r):
    # The value the registers start with, from the units' tables.
    table = spec["units"][str(r["unit"])].get(r.get("table", "holding"), {})
    address, words = int(r["address"]), int(r.get("words", 1))
    value = 0
    for i in range(words):
        word = 0
        for start, ws in table.items():
            j = address + i - int(start)
            if 0 <= j < len(ws):
                word = int(ws[j])
        value = (value << 16) | word
    return value


async def main():
    spec = json.load(open(sys.argv[1]))
    port_file = sys.argv[2]
    devices = {}
    for unit, regs in spec["units"].items():
        devices[int(unit)] = ModbusDeviceContext(
            hr=block(regs.get("holding", {})), ir=block(regs.get("input", {}))
        )
    context = ModbusServerContext(devices=devices, single=False)
    port = free_port()
    server = ModbusTcpServer(context=context, address=("127.0.0.1", port))

    async def announce():
        # Written only once the listener accepts connections.
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(port_file + ".tmp", port_file)

    loop = asyncio.get_running_loop()
    loop.create_task(announce())
    if "advance" in spec:
        values = [initial(spec, r) for r in spec["advance"]["registers"]]
        loop.create_task(advance(server.context, spec["advance"], values))
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
