#!/usr/bin/env python3
"""An independent Modbus TCP server (pymodbus) serving the registers a test writes.

Usage: pymodbus_server.py REGISTERS.json PORT_FILE

REGISTERS.json: {"units": {"1": {"holding": {"32080": [0, 1234]}, "input": {"5000": [1]}}}}
Binds 127.0.0.1 on a free port and writes the port number to PORT_FILE once it is listening.
"""
import asyncio
import json
import socket
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import StartAsyncTcpServer


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
        import os

        os.replace(port_file + ".tmp", port_file)

    asyncio.get_running_loop().create_task(announce())
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    asyncio.run(main())
