"""Semantic search latency at a given collection size (default 100,000 annotation lines).

Builds the vector index the server builds: real embeddings of a few thousand generated
annotation lines (the packaged all-MiniLM-L6-v2, offline), replicated with a little noise up to
``--lines`` rows, stored in a SQLite ``annotation_vectors`` table and read back as the server
reads it at start; then times queries: the model encoding the query, the brute-force cosine
over the whole matrix (whole collection and one manifest's canvases), and both together.

    .venv/bin/python loadtests/semantic_bench.py [--lines 100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from iiifsrv.semantic.encoder import MiniLM
from iiifsrv.semantic.engine import MIN_SCORE
from iiifsrv.semantic.index import VectorIndex
from iiifsrv.semantic.vectors import Row, SqliteVectors

WORDS = (
    *("ink", "parchment", "scribe", "psalter", "margin", "gold", "initial", "binding", "stamp"),
    *("owner", "erased", "paint", "water", "damage", "monastery", "leaf", "folio", "rubric"),
    *("gloss", "hand", "script", "letter", "crown", "saint", "map", "chart", "page"),
)
QUERIES = (
    "erased inscription",
    "monk copying a book of psalms",
    "moisture stain at the bottom",
    "gilded capital",
    "provenance note by a previous possessor",
)


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2000, help="lines really embedded")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(1)
    t0 = time.perf_counter()
    model = MiniLM()
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(
        args.distinct)]  # fmt: skip
    t0 = time.perf_counter()
    base = model.encode(texts)
    took = time.perf_counter() - t0
    print(
        f"embedded {len(texts)} lines in {took:.1f} s ({len(texts) / took:.0f} lines/s, 1 thread)"
    )
    noise = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as folder:
        vectors = SqliteVectors(Path(folder) / "annotations.sqlite3")
        t0 = time.perf_counter()
        for start in range(0, args.lines, 5000):
            rows = []
            for i in range(start, min(args.lines, start + 5000)):
                jitter = np.asarray(noise.normal(0, 0.02, size=base.shape[1]), dtype=np.float32)
                v = base[i % len(base)] + jitter
                v /= np.linalg.norm(v)
                canvas = f"/iiif/manifests/m{i // 1000}/canvas/{i // 40 % 25 + 1}"
                rows.append(Row(f"k{i}", canvas, "", model.name, f"d{i}", v))
            await vectors.put(rows)
        print(f"stored {args.lines} vectors in {time.perf_counter() - t0:.1f} s")
        index = VectorIndex(model.dimension)
        t0 = time.perf_counter()
        while rows := await vectors.since(index.stamp):
            index.apply(rows)
        mib = args.lines * model.dimension * 4 / 2**20
        took = time.perf_counter() - t0
        print(f"index loaded from the table in {took:.1f} s ({len(index)} rows, {mib:.0f} MiB)")
        await vectors.close()
    manifest = tuple(f"/iiif/manifests/m7/canvas/{n}" for n in range(1, 26))
    encode, everything, scoped, both = [], [], [], []
    for n in range(args.queries):
        q = QUERIES[n % len(QUERIES)]
        t0 = time.perf_counter()
        vec = model.encode([q])[0]
        t1 = time.perf_counter()
        index.search(vec, limit=100, min_score=MIN_SCORE)
        t2 = time.perf_counter()
        index.search(vec, "manifest", "/iiif/manifests/m7", manifest, limit=100)
        t3 = time.perf_counter()
        encode.append(t1 - t0)
        everything.append(t2 - t1)
        scoped.append(t3 - t2)
        both.append(t2 - t0)
    print(f"encode the query:              {ms(encode)}")
    print(f"search {args.lines} lines:        {ms(everything)}")
    print(f"search one manifest's canvases: {ms(scoped)}")
    print(f"query total (encode + search):  {ms(both)}")


if __name__ == "__main__":
    asyncio.run(main())
