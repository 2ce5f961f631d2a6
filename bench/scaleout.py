"""Benchmark: scale-out, measured on this machine against the one-machine baseline.

    .venv/bin/python bench/scaleout.py [--part all|ray|finetune] [--images 800] [--repeat 3]

Parts (one function each; ``--part all`` runs every one):

- ``ray``: ``graft features`` on EfficientNet-Lite0 through the ray engine (an in-process Ray
  cluster, TFLite actors with one interpreter thread each, Pillow decoding) with 1 and 2
  actors, against the local engine (``FeatureExtractor``, TFLite with one interpreter on every
  core, TensorFlow decoding overlapped) in the same run, on synthetic photos (crops of
  scikit-learn's two sample photos, 80% JPEG and 20% PNG). Every configuration starts from an
  empty feature cache; the TFLite conversion is done once beforehand and timed apart.

- ``finetune``: the per-step time of fine-tuning EfficientNet-Lite0's top two blocks with
  graft's distributed step (``MultiWorkerMirroredStrategy``, TF_CONFIG on loopback) on one and
  two worker processes, against Keras ``fit`` in one process, the same global batch
  (``_scaleout_finetune.py`` is one process).

Each part writes its own block into bench/RESULTS.md (``scaleout-<part>`` markers).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, machine, write_section  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "scaleout"
BACKBONE = "efficientnet_lite0.imagenet"


def _photos(n: int) -> Path:
    """``n`` photos of 200-640 px (random crops of the sample photos, resized)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    folder = WORK / f"photos-{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sources = load_sample_images().images
    for i in range(n):
        image = sources[i % len(sources)]
        h, w = image.shape[:2]
        ch, cw = rng.integers(h // 3, h), rng.integers(w // 3, w)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(image[y : y + ch, x : x + cw])
        side = int(rng.integers(200, 641))
        crop = crop.resize((side, max(1, side * ch // cw)), Image.BILINEAR)
        if i % 5 == 4:
            crop.save(folder / f"{i:05d}.png")
        else:
            crop.save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def part_ray(images: int, repeat: int) -> None:
    """Ray extraction throughput, 1 and 2 actors, against the local engine (best of
    ``repeat`` interleaved rounds)."""
    import numpy as np

    from graft.batch.features import extract_features, image_inputs
    from graft.batch.session import import_ray
    from graft.handles import resolve
    from graft.training.features import FeatureExtractor

    module_dir = resolve(BACKBONE)  # the user's cache: converted once from the checkpoint
    photos = _photos(images)
    files, _ = image_inputs([photos])
    encoded = np.mean([Path(f).stat().st_size for f in files])
    home = WORK / "home"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["GRAFT_HOME"] = str(home)  # engines and features here, nothing cached
    start = time.perf_counter()
    fx = FeatureExtractor(module_dir, runtime="tflite")
    tflite = fx.tflite_path()
    convert_s = time.perf_counter() - start
    dim = fx.output_shape[0]

    def fresh() -> None:
        shutil.rmtree(home / "features", ignore_errors=True)

    load_before = os.getloadavg()[0]
    ray = import_ray()
    start = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        object_store_memory=1 << 30,
        logging_level="ERROR",
        log_to_driver=False,
    )
    ray_start_s = time.perf_counter() - start
    names = {
        0: "local: FeatureExtractor, TFLite, 2 threads",
        1: "ray: 1 actor, 1 thread",
        2: "ray: 2 actors, 1 thread each",
    }
    best: dict[int, object] = {}
    diffs: dict[int, float] = {}
    reference = None
    try:
        for _ in range(repeat):  # interleaved, so other load on the machine hits each alike
            for actors in names:
                fresh()
                engine = "ray" if actors else "local"
                summary = extract_features(
                    module_dir, [photos], engine=engine, actors=actors or None
                )
                got = FeatureExtractor(module_dir)(files)  # read back from the cache
                if reference is None:
                    reference = got
                diffs[actors] = float(np.abs(got - reference).max() / np.abs(reference).max())
                if actors not in best or summary.seconds < best[actors].seconds:
                    best[actors] = summary
    finally:
        ray.shutdown()
    load_after = os.getloadavg()[0]
    rows = [(names[k], best[k], *([diffs[k]] if k else [])) for k in names]
    local = best[0]

    base = local.per_second
    table = [
        "| engine | images | wall (s) | images/s | vs local | max feature difference |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, summary, *diff in rows:
        table.append(
            f"| {name} | {summary.computed} | {summary.seconds:.1f} | {summary.per_second:.1f} | "
            f"{summary.per_second / base:.2f}x | "
            + (f"{diff[0]:.1e} of the largest |" if diff else "(reference) |")
        )
    one = best[1].per_second
    section = "\n".join(
        [
            f"## Scale-out: Ray feature extraction (`bench/scaleout.py --part ray`, "
            f"{datetime.date.today()})",
            "",
            f"Machine: {machine(('tensorflow', 'ai-edge-litert', 'ray', 'pillow'))}; "
            f"CPU flags: {cpu_flags()}.",
            "",
            f"`graft features {BACKBONE}` on {len(files)} synthetic photos (200-640 px crops of "
            f"scikit-learn's sample photos, 80% JPEG q90, 20% PNG), every engine from an empty "
            f"feature cache. The TFLite conversion ({tflite.stat().st_size / 2**20:.1f} MB) ran "
            f"once before, in {convert_s:.1f} s; the in-process Ray cluster started in "
            f"{ray_start_s:.1f} s, not counted. Ray wall times include reading and hashing the "
            f"files on the driver, the actors' start (each fetches the model bytes and builds "
            f"its interpreter) and writing the cache. Best of {repeat} interleaved rounds; the "
            f"machine was shared (1-minute load average {load_before:.1f} before, "
            f"{load_after:.1f} after, on {os.cpu_count()} cores), so figures are noisy.",
            "",
            *table,
            "",
            "What it means for a cluster:",
            "",
            f"- Per worker: one actor with one interpreter thread ran {one:.1f} images/s here "
            f"(Pillow decoding and inference in the same process); a node with c cores runs "
            f"about c actors (`--actors` = cluster CPUs by default, each reserving 0.5 CPU so "
            f"Ray Data's own tasks keep room), so expect roughly {one:.0f} x cores images/s per "
            f"node of this CPU, until the driver or the network limits.",
            f"- Network: the driver ships each image's encoded bytes to an actor (here "
            f"{encoded / 1024:.0f} KiB on average) and receives {dim} float32s back "
            f"({dim * 4 / 1024:.0f} KiB): {encoded / (dim * 4):.0f}x more in than out. At "
            f"1 Gbit/s (~110 MB/s) the driver can feed about {110e6 / encoded:.0f} images/s, "
            f"so a driver link saturates at about {110e6 / encoded / max(one, 1e-9):.0f} "
            f"workers of this speed; the model itself ({tflite.stat().st_size / 2**20:.1f} MB) "
            f"goes once per actor through the object store.",
            "- On this 2-core machine the actors share the cores with the driver, so 2 actors "
            "cannot beat the local engine, which already uses both cores with TFLite's own "
            "threads; the table shows the overhead of Ray's path (actor start, Pillow "
            "decoding in series with inference, serialisation) against that baseline. The "
            "gain comes from adding machines: each new node adds its own cores.",
        ]
    )
    print(section)
    write_section("scaleout-ray", section)


FINETUNE_WORKER = Path(__file__).resolve().parent / "_scaleout_finetune.py"


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _finetune_run(mode: str, workers: int, batch: int, steps: int) -> list[dict]:
    """Runs ``workers`` processes of _scaleout_finetune.py (one thread each, TF_CONFIG on
    loopback for ``dist``) and returns their JSON lines."""
    import json
    import subprocess

    ports = _free_ports(workers)
    procs = []
    for rank in range(workers):
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
        if mode == "dist":
            hosts = [f"127.0.0.1:{p}" for p in ports]
            task = {"type": "worker", "index": rank}
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": hosts}, "task": task})
        command = [sys.executable, str(FINETUNE_WORKER), mode, str(batch), str(steps)]
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    for p in procs:
        out, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            sys.exit(f"{mode} x{workers} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def part_finetune(images: int, repeat: int) -> None:
    """Per-step time of fine-tuning Lite0's top two blocks on cached activations: Keras fit in
    one process, graft's distributed step on one worker and on two workers over loopback (one
    thread per process, the same global batch)."""
    batch, steps = 32, 12
    rounds = []
    for _ in range(repeat):  # interleaved, best of each
        fit = _finetune_run("fit", 1, batch, steps)[0]
        one = _finetune_run("dist", 1, batch, steps)[0]
        half = _finetune_run("dist", 1, batch // 2, steps)[0]
        two = _finetune_run("dist", 2, batch, steps)
        rounds.append((fit["step_s"], one["step_s"], half["step_s"], max(r["step_s"] for r in two)))
    t_fit, t_one, t_half, t_two = (min(r[i] for r in rounds) for i in range(4))
    params = one["trainable"]
    grad_mb = params * 4 / 1e6
    overhead = t_two - t_half
    section = "\n".join(
        [
            f"## Scale-out: distributed fine-tuning (`bench/scaleout.py --part finetune`, "
            f"{datetime.date.today()})",
            "",
            f"Machine: {machine()}; CPU flags: {cpu_flags()}.",
            "",
            f"EfficientNet-Lite0's top two blocks and a 10-class head trained on cached "
            f"activations (boundary {one['boundary']}), as `graft train --fine-tune-blocks 2 "
            f"--no-augment` trains them: {params:,} trainable parameters, global batch {batch}, "
            f"one TensorFlow thread per process, synthetic activations. Time per step: median "
            f"of 3 epochs of {steps} steps after a warm-up epoch, best of {repeat} interleaved "
            "rounds.",
            "",
            "| run | ms per step | examples/s |",
            "|---|--:|--:|",
            f"| Keras `model.fit`, one process (the one-machine path) | {t_fit * 1e3:.1f} | "
            f"{batch / t_fit:.0f} |",
            f"| graft's distributed step, 1 worker | {t_one * 1e3:.1f} | {batch / t_one:.0f} |",
            f"| graft's distributed step, 1 worker, half the batch ({batch // 2}: each "
            f"worker's share below) | {t_half * 1e3:.1f} | {batch // 2 / t_half:.0f} |",
            f"| graft's distributed step, 2 workers on loopback ({batch // 2} examples each) | "
            f"{t_two * 1e3:.1f} | {batch / t_two:.0f} |",
            "",
            "What it means for a cluster:",
            "",
            f"- Two workers ran a step {t_one / t_two:.2f}x as fast as one. Ideal would be "
            f"{t_one / t_half:.2f}x, not 2x: half a batch takes more than half the time "
            f"(the weight gradients and Adam's update of every trainable weight do not shrink "
            f"with the batch). The per-step overhead of the second worker over a one-worker "
            f"step on its share is {overhead * 1e3:.1f} ms: the all-reduce of {grad_mb:.1f} MB "
            f"of float32 gradients (in a ring each worker sends and receives 2(W-1)/W of it), "
            f"the step's synchronisation, and here two processes plus their gRPC threads "
            f"sharing this machine's {os.cpu_count()} cores.",
            f"- On a network the all-reduce costs about {grad_mb * 2 / 125:.3f} s per step at "
            f"1 Gbit/s and {grad_mb * 2 / 1250:.4f} s at 10 Gbit/s for any number of workers "
            f"(ring), against {t_half * 1e3:.0f} ms of compute per worker at "
            f"{batch // 2} examples per worker on one core of this CPU. Give each worker "
            f"enough examples per step (and cores) that its compute stays well above the "
            f"all-reduce time; with more trainable blocks the gradient, and so the traffic, "
            f"grows.",
            f"- On one worker graft's custom step took {t_one / t_fit:.2f}x the time of Keras "
            f"`fit`'s step on the same batch.",
        ]
    )
    print(section)
    write_section("scaleout-finetune", section)


PARTS = {"ray": part_ray, "finetune": part_finetune}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["all", *PARTS])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each is kept")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    for name, run in PARTS.items():
        if args.part in ("all", name):
            run(args.images, args.repeat)


if __name__ == "__main__":
    main()
