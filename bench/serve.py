"""Serving benchmark: ``graft serve`` against a plain FastAPI handler that calls
``model.predict`` per request, same model, same load generator, one run, loopback.

    .venv/bin/python bench/serve.py           # figures into bench/RESULTS.md

Model: the digits classifier from ``make demo`` (EfficientNet-Lite0 + head, 224x224 input).
Each request is one PNG digit as ``{"instances": [{"b64": ...}]}`` (TF Serving's REST form).
The load generator keeps 32 clients busy (asyncio + httpx, one connection each) for a warm-up,
then for the measured window; each server runs in its own process with uvicorn.

Target (the issue's acceptance): graft serve's throughput at 32 concurrent clients >= 3x the
baseline's; p50/p99 latency reported for both.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HERE, digits_module, machine, write_section  # noqa: E402

WORK = HERE / ".work" / "serve"
CLIENTS = 32
WARMUP_S = 5.0
MEASURE_S = 30.0

BASELINE_APP = '''
"""The baseline: FastAPI, one model.predict call per request (the usual hand-written server)."""
import base64
import os

import tensorflow as tf
from fastapi import FastAPI

from graft.module.io import load

model = load(os.environ["BENCH_MODULE"]).model
app = FastAPI()


@app.post("/v1/models/digits:predict")
def predict(body: dict):
    images = tf.constant([base64.b64decode(i["b64"]) for i in body["instances"]])
    probabilities = model.predict(images, verbose=0)
    return {"predictions": [{"probabilities": p.tolist()} for p in probabilities]}
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, body: dict, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.post(url, json=body, timeout=60).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not answer")


async def _load(url: str, body: dict, seconds: float) -> tuple[list[float], int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def client(http):
        nonlocal errors
        while time.monotonic() < end:
            start = time.perf_counter()
            r = await http.post(url, json=body)
            if r.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
    return latencies, errors


def measure(name: str, cmd: list[str], url: str, body: dict, env: dict) -> dict:
    import numpy as np

    proc = subprocess.Popen(
        cmd, env=env, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait(url, body, proc)
        asyncio.run(_load(url, body, WARMUP_S))
        start = time.monotonic()
        latencies, errors = asyncio.run(_load(url, body, MEASURE_S))
        elapsed = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(60)
    ms = np.array(latencies) * 1000
    row = {
        "name": name,
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }
    print(f"{name}: {row['rps']:.1f} req/s, p50 {row['p50']:.0f} ms, p99 {row['p99']:.0f} ms")
    return row


def main() -> None:
    module = digits_module()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "baseline_app.py").write_text(BASELINE_APP)
    models = WORK / "models" / "digits"
    if not (models / "1").exists():
        models.mkdir(parents=True)
        (models / "1").symlink_to(module.resolve(), target_is_directory=True)
    image = sorted((HERE.parent / "data" / "digits" / "7").glob("*.png"))[0]
    body = {"instances": [{"b64": base64.b64encode(image.read_bytes()).decode()}]}
    env = {**os.environ, "BENCH_MODULE": str(module.resolve())}
    python = sys.executable
    rows = []

    port = _free_port()
    rows.append(
        measure(
            "baseline: FastAPI + model.predict per request",
            [python, "-m", "uvicorn", "baseline_app:app", "--port", str(port), "--log-level",
             "warning"],
            f"http://127.0.0.1:{port}/v1/models/digits:predict",
            body,
            env,
        )
    )  # fmt: skip
    for runtime in ("keras", "auto"):
        port = _free_port()
        rows.append(
            measure(
                f"graft serve --runtime {runtime}"
                + (" (TFLite/XNNPACK)" if runtime == "auto" else ""),
                [python, "-m", "graft.cli.main", "serve", "--model-dir", str(WORK / "models"),
                 "--host", "127.0.0.1", "--port", str(port), "--runtime", runtime],
                f"http://127.0.0.1:{port}/v1/models/digits:predict",
                body,
                env,
            )
        )  # fmt: skip

    base = rows[0]["rps"]
    lines = [
        "## Serving: graft serve vs FastAPI + model.predict",
        "",
        f"Machine: {machine(('tensorflow', 'keras', 'ai-edge-litert', 'uvicorn', 'fastapi'))}",
        "",
        f"Model: digits classifier (EfficientNet-Lite0 + head, 224x224), one PNG per request "
        f'as TF Serving\'s `{{"instances": [{{"b64": ...}}]}}`; {CLIENTS} concurrent clients '
        f"(asyncio + httpx on the same machine), {WARMUP_S:.0f} s warm-up then "
        f"{MEASURE_S:.0f} s measured per server; `bench/serve.py`.",
        "",
        "| server | requests | non-2xx | req/s | vs baseline | p50 ms | p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | "
            f"{r['rps'] / base:.2f}x | {r['p50']:.0f} | {r['p99']:.0f} |"
        )
    best = rows[-1]["rps"] / base
    lines += [
        "",
        f"- graft serve (default runtime) throughput: {best:.2f}x the baseline (target >= 3x): "
        + ("**meets the target**" if best >= 3 else "**misses the target**"),
    ]
    write_section("serve", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
