"""A real `iiifsrv ingest` killed with SIGKILL midway, then re-run, leaves only complete files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from tests.ingest_support import catalogue_ids

COUNT = 12


def test_sigkill_midway_then_rerun_leaves_only_complete_derivatives(tmp_path: Path) -> None:
    src, images, data = tmp_path / "src", tmp_path / "img", tmp_path / "data"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(COUNT):  # noise: slow to compress, so the kill lands mid-run
        tifffile.imwrite(src / f"noise-{i:02d}.tif", rng.integers(0, 255, (1400, 1400, 3), "uint8"))
    command = [sys.executable, "-m", "iiifsrv", "ingest", str(src), "--images", str(images),
               "--data", str(data), "--jobs", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()  # the first finished object: the run is under way
    assert first.startswith("ok"), first
    os.kill(process.pid, signal.SIGKILL)  # the ingest only: its workers must die with it
    process.wait(timeout=30)
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    done_before = len(catalogue_ids(data))
    assert done_before < COUNT  # killed midway

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{COUNT - done_before} ingested, {done_before} skipped, 0 failed" in rerun.stdout
    assert catalogue_ids(data) == [f"noise-{i:02d}" for i in range(COUNT)]
    files = sorted(images.iterdir())
    assert [f.name for f in files] == [f"noise-{i:02d}.tif" for i in range(COUNT)]  # no .part
    for path in files:  # every file opens and every level decodes
        with tifffile.TiffFile(path) as tif:
            assert [level.shape[0] for level in tif.series[0].levels] == [1400, 700, 350, 175]
            for page in tif.pages:
                assert page.asarray().shape[2] == 3
