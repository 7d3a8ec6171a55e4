"""The floor under the service's REST side: an aiohttp server on the Open Inference Protocol's infer route
that reads each request as any server must (the JSON, or the JSON header before binary tensors, parsed by
orjson as the service parses it, so that the floor's parse costs no more than the service's), takes the
number of images from it, and answers a prebuilt response of that many rows shaped like the service's
(outputs `digit` and `p_three`), in the request's encoding. No tensor is decoded and no model runs: what
is left is HTTP, aiohttp and JSON, the cost every REST server on this machine pays before its own.

Run: `python -m bench.http_floor --port N` (until SIGTERM or SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import numpy as np
import orjson
from aiohttp import web

HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUTS = {"digit": ("INT32", np.int32, 3), "p_three": ("FP32", np.float32, 1.0)}


class FixedAnswers:
    """One prebuilt body per (rows, binary), built on first use and then only sent."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[int, bool], tuple[bytes, int | None]] = {}

    def body(self, rows: int, binary: bool) -> tuple[bytes, int | None]:
        key = (rows, binary)
        if key not in self._bodies:
            self._bodies[key] = self._build(rows, binary)
        return self._bodies[key]

    @staticmethod
    def _build(rows: int, binary: bool) -> tuple[bytes, int | None]:
        outputs, raw = [], b""
        for name, (datatype, dtype, value) in OUTPUTS.items():
            data = np.full(rows, value, dtype)
            output: dict[str, object] = {"name": name, "datatype": datatype, "shape": [rows]}
            if binary:
                output["parameters"] = {"binary_data_size": data.nbytes}
                raw += data.tobytes()
            else:
                output["data"] = data.tolist()
            outputs.append(output)
        header = json.dumps({"model_name": "floor", "model_version": "1", "outputs": outputs}).encode()
        return (header + raw, len(header)) if binary else (header, None)


def build_app() -> web.Application:
    answers = FixedAnswers()

    async def metadata(request: web.Request) -> web.Response:
        outputs = [{"name": name, "datatype": t, "shape": [-1]} for name, (t, _, _) in OUTPUTS.items()]
        inputs = [{"name": "image", "datatype": "FP32", "shape": [-1, 784]}]
        return web.json_response({"name": request.match_info["model"], "inputs": inputs, "outputs": outputs})

    async def infer(request: web.Request) -> web.Response:
        body = await request.read()
        length = request.headers.get(HEADER_LENGTH)
        parsed = orjson.loads(body[: int(length)] if length else body)
        rows = int(parsed["inputs"][0]["shape"][0])
        payload, header = answers.body(rows, binary=length is not None)
        if header is None:
            return web.Response(body=payload, content_type="application/json")
        headers = {HEADER_LENGTH: str(header)}
        return web.Response(body=payload, content_type="application/octet-stream", headers=headers)

    # A message of 1024 images as JSON outgrows aiohttp's default body limit.
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/infer", infer)
    return app


async def serve(port: int) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"REST floor on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    asyncio.run(serve(p.parse_args().port))


if __name__ == "__main__":
    main()
