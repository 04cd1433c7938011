"""A chat backend that is not Node: Python `websockets` (Debian's python3-websockets, 10.x legacy API).

Started by test/support/python-backend.ts. Prints one JSON line per event on stdout:
  {"event": "listening", "port": N}
  {"event": "connected", "manager": ..., "user": ..., "path": ...}
  {"event": "closed", "manager": ..., "code": N, "reason": "...", "sent": bytes_sent_by_flood}

Paths (on the upstream URL the proxy is given):
  /chat      greets with a JSON `hello` (the headers it saw), then echoes text as text and binary as binary;
             text commands: `close CODE REASON` closes with that code, `flood N SIZE` sends N binary frames of SIZE bytes,
             `ping` pings the proxy and says `pong-received` when the pong comes back, `drop` kills the TCP connection
  /sink      greets, then never reads (a slow upstream)
  /refuse    refuses the handshake with 403
  /busy      refuses with 503 and Retry-After: 7
  /hang      never answers the handshake
"""
import asyncio
import http
import json
import signal
import sys

import websockets

SUBPROTOCOLS = ["chat.v2"]


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def process_request(path, headers):
    if path.startswith("/refuse"):
        return (http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"forbidden\n")
    if path.startswith("/busy"):
        return (http.HTTPStatus.SERVICE_UNAVAILABLE, [("Content-Type", "text/plain"), ("Retry-After", "7")], b"busy\n")
    if path.startswith("/hang"):
        await asyncio.sleep(3600)
    return None


async def handler(ws, path):
    h = ws.request_headers
    manager = h.get("X-Reclaim-Manager")
    sent = 0
    emit(event="connected", manager=manager, user=h.get("X-Reclaim-User"), path=path)
    hello = {
        "type": "hello",
        "path": path,
        "user": h.get("X-Reclaim-User"),
        "manager": manager,
        "admission": h.get("X-Reclaim-Admission"),
        "authorization": h.get("Authorization"),
        "cookie": h.get("Cookie"),
        "forwardedFor": h.get("X-Forwarded-For"),
        "origin": h.get("Origin"),
        "subprotocol": ws.subprotocol,
        "headerNames": sorted({k.lower() for k in h.keys()}),
    }
    try:
        await ws.send(json.dumps(hello))
        if path.startswith("/sink"):
            await ws.wait_closed()
            return
        async for message in ws:
            if isinstance(message, bytes):
                await ws.send(message)
                continue
            if message.startswith("close "):
                _, code, reason = message.split(" ", 2)
                await ws.close(int(code), reason)
                break
            if message.startswith("flood "):
                _, n, size = message.split(" ")
                chunk = b"x" * int(size)
                for _ in range(int(n)):
                    await ws.send(chunk)
                    sent += len(chunk)
                await ws.send("flood-done")
                continue
            if message == "ping":
                waiter = await ws.ping()
                await asyncio.wait_for(waiter, 10)
                await ws.send("pong-received")
                continue
            if message == "drop":
                ws.transport.abort()
                break
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        emit(event="closed", manager=manager, code=ws.close_code, reason=ws.close_reason, sent=sent)


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    async with websockets.serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        subprotocols=SUBPROTOCOLS,
        max_queue=4,
        ping_interval=None,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        emit(event="listening", port=bound)
        # SIGTERM: leave the `serve` block, which closes every connection with 1001 (a restart, as a deployment does it).
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await stop


asyncio.run(main())
