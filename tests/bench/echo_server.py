"""The gRPC floor's server: `python -m tests.bench.echo_server --port N` serves one unary method,
`/bench.Echo/Echo`, that answers with the request's bytes (no deserialisation, no interceptors), and
the standard health service so the harness can wait for SERVING. Stops on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio


async def echo(request: bytes, context: aio.ServicerContext) -> bytes:
    return request


async def serve(port: int) -> None:
    server = aio.server()
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
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
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
