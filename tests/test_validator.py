"""The official IIIF Image API validator (PyPI iiif-validator) against a real uvicorn.

scripts/setup --test installs it in .venv-validator. Its format_webp/format_jp2 tests are
broken on Python 3; test_images.py checks those formats' magic bytes instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CONFORMANCE, ROOT, VALIDATOR_ID, LiveServer

VALIDATOR = Path(
    os.environ.get("IIIF_VALIDATOR", ROOT / ".venv-validator" / "bin" / "iiif-validate.py")
)
OPTIONAL = [
    "format_gif",
    "format_tif",
    "rot_mirror",
    "rot_mirror_180",
    "rot_full_non90",
    "rot_region_non90",
    "size_up",
    "linkheader_canonical",
    "linkheader_profile",
]


def run_validator(server: LiveServer, version: str, *args: str) -> str:
    if not (CONFORMANCE / f"{VALIDATOR_ID}.png").is_file():
        pytest.fail(
            f"the validator's test image is missing: expected {CONFORMANCE} beside the checkout"
        )
    if not VALIDATOR.exists():
        pytest.fail(f"iiif-validator not installed at {VALIDATOR}: run scripts/setup --test")
    prefix = "iiif/3" if version == "3.0" else "iiif/2"
    cmd = [
        str(VALIDATOR.parent / "python"),
        str(VALIDATOR),
        "-s",
        f"127.0.0.1:{server.port}",
        "-p",
        prefix,
        "-i",
        VALIDATOR_ID,
        f"--version={version}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.mark.parametrize(("version", "count"), [("3.0", 33), ("2.0", 30)])
def test_level2(live_server: LiveServer, version: str, count: int) -> None:
    output = run_validator(live_server, version, "--level=2")
    assert f"Done ({count} tests, 0 failures)" in output


@pytest.mark.parametrize("version", ["3.0", "2.0"])
def test_optional_features(live_server: LiveServer, version: str) -> None:
    args = [a for name in OPTIONAL for a in ("--test", name)]
    output = run_validator(live_server, version, *args)
    assert f"Done ({len(OPTIONAL)} tests, 0 failures)" in output
