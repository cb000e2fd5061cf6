"""The gRPC floor's server: `python -m tests.bench.echo_server --port N` serves one unary method,
`/bench.Echo/Echo`, that answers with the request's bytes (no deserialisation, no interceptors), and
the standard health service so the harness can wait for SERVING. Stops on SIGTERM or SIGINT.

With `--forward HOST:PORT` (repeatable) it first passes the request on to each of those echo servers
in turn, as a service of the mesh calls its peers: the floor of a call shape (hops and processes)
with no work in it."""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

ECHO_METHOD = "/bench.Echo/Echo"


def echo_handler(forward: list[str]):
    peers = [aio.insecure_channel(target).unary_unary(ECHO_METHOD) for target in forward]

    async def echo(request: bytes, context: aio.ServicerContext) -> bytes:
        for peer in peers:
            await peer(request, timeout=5)
        return request

    return echo


async def serve(port: int, forward: list[str]) -> None:
    server = aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo_handler(forward))}
    )
    server.add_generic_rpc_handlers((handler,))
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--forward", action="append", default=[], help="an echo server to call first")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.forward))


if __name__ == "__main__":
    main()
