"""Run in its own process (tritonclient registers the `inference` proto package too): N ModelInfer calls
over one tritonclient channel; prints how many each replica answered, from the responses' parameters."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import tritonclient.grpc as triton


def main(target: str, calls: int) -> None:
    client = triton.InferenceServerClient(url=target)
    image = triton.InferInput("image", [1, 784], "UINT8")
    image.set_data_from_numpy(np.zeros((1, 784), np.uint8))
    seen: Counter[str] = Counter()
    for _ in range(calls):
        response = client.infer("mnist-3v7", [image]).get_response()
        seen[response.parameters["replica"].string_param] += 1
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
