"""Shared by the benchmarks: the machine's description, the RESULTS.md sections and child
processes."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def digits_module() -> Path:
    """The digits classifier from ``make demo`` (EfficientNet-Lite0 + head), trained here with
    the demo's settings if ``runs/digits-demo`` is missing."""
    import graft
    from graft.data.samples import write_digits_folder

    module = ROOT / "runs" / "digits-demo" / "module"
    if not module.is_dir():
        data = ROOT / "data" / "digits"
        if not data.is_dir():
            write_digits_folder(data)
        graft.train(data, "efficientnet_lite0.imagenet", epochs=10, out=module.parent)
    return module


def machine(packages: tuple[str, ...] = ("tensorflow", "keras", "ai-edge-litert")) -> str:
    """CPU, cores, memory, OS, Python and the versions of ``packages``."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(f"{p} {md.version(p)}" for p in packages)
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, {versions}"
    )


def write_section(name: str, section: str) -> None:
    """Replaces (or appends) the block between ``<!-- name:start -->`` and ``<!-- name:end -->``
    in bench/RESULTS.md."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def run_child(script: str, *args: str, env: dict | None = None, label: str = "") -> dict:
    """Runs ``python script --child *args`` in a fresh process with ``env`` added to this
    one's environment; the child's last line of output is JSON. Exits with its stderr tail
    if it fails."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{label or args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_flags() -> str:
    """The CPU's vector-instruction flags that matter for these benchmarks."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return ", ".join(f for f in wanted if f in flags) or "none of avx2/avx512"
