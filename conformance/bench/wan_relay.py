#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An emulated wide-area link in front of the test network's registries, for registry-bench.sh.

This machine's kernel has no netem, so the link is emulated in user space: every connection accepted
on PORT (where an nftables DNAT in the test network's namespace sends what came for ADDRESS:443) is
relayed to the same local address on port 443, and every chunk in either direction is held for DELAY_MS
before it is written on, through a token bucket of MBIT megabits per second shared by all connections in
that direction. Connection setup waits DELAY_MS too (the SYN's one-way trip). Bounded: a connection ends
when either side does; the relay runs until it is killed (the benchmark kills it by PID).

usage: wan_relay.py PORT DELAY_MS MBIT
"""
import asyncio
import socket
import sys
import time


class Bucket:
    """Bytes per second, shared by the connections of one direction."""

    def __init__(self, rate):
        self.rate = rate
        self.next_free = time.monotonic()

    def reserve(self, n):
        """Returns when the n bytes may leave: the link sends them after what is already on it."""
        now = time.monotonic()
        self.next_free = max(self.next_free, now) + n / self.rate
        return self.next_free


async def pump(reader, writer, delay, bucket):
    queue = asyncio.Queue()

    async def send():
        while True:
            item = await queue.get()
            if item is None:
                break
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((bucket.reserve(len(data)) + delay, data))
            # Back-pressure: a slow link holds at most about one second of data in flight.
            while queue.qsize() > 256:
                await asyncio.sleep(delay or 0.001)
    except (ConnectionError, OSError):
        pass
    queue.put_nowait(None)
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def main():
    port, delay_ms, mbit = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    delay = delay_ms / 1000.0
    up, down = Bucket(mbit * 1e6 / 8), Bucket(mbit * 1e6 / 8)

    async def handle(creader, cwriter):
        local = cwriter.get_extra_info("sockname")[0]
        await asyncio.sleep(delay)
        try:
            ureader, uwriter = await asyncio.open_connection(local, 443)
        except OSError:
            cwriter.close()
            return
        for w in (cwriter, uwriter):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(creader, uwriter, delay, up), pump(ureader, cwriter, delay, down))
        cwriter.close()
        uwriter.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=256)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
