"""The command line: serve --get, settings, samples; a real uvicorn with several workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from iiifsrv.cli import example_config, main
from tests.conftest import ROOT, start_server, stop_server


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "iiifsrv", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_serve_get_prints_status_headers_and_size(image_root: Path) -> None:
    done = run(
        "serve",
        "--images",
        str(image_root),
        "--get",
        "/iiif/3/tif-rgb-3lvl-1000x700-tiled256-jpeg/full/100,/0/default.jpg",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "200"
    assert "content-type: image/jpeg" in lines
    assert lines[-1].startswith("body: ") and int(lines[-1].split()[1]) > 500


def test_serve_get_error_exit_status(image_root: Path) -> None:
    done = run("serve", "--images", str(image_root), "--get", "/iiif/3/nothing/info.json")
    assert done.returncode == 1 and done.stdout.startswith("404")


def test_settings_from_environment(tmp_path: Path) -> None:
    done = run("settings", env={"IIIFSRV_MAX_WIDTH": "1234", "IIIFSRV_PUBLIC_URL": "https://x.org"})
    assert "max_width = 1234" in done.stdout
    assert "public_url = 'https://x.org'" in done.stdout


def test_bad_setting_is_a_clear_error() -> None:
    done = run("settings", env={"IIIFSRV_PORT": "eighty"})
    assert done.returncode == 2
    assert "IIIFSRV_PORT" in done.stderr and "Traceback" not in done.stderr


def test_example_config_is_current() -> None:
    assert (ROOT / "config" / "iiifsrv.example.toml").read_text() == example_config()


def test_samples_small(tmp_path: Path) -> None:
    assert main(["samples", "--images", str(tmp_path / "img"), "--small"]) == 0
    names = {p.name for p in (tmp_path / "img").iterdir()}
    assert {"large.tif", "sixteen-bit.tif", "jpeg2000.jp2", "flat.jpg"} <= names
    assert not [n for n in names if n.endswith(".part")]


def test_two_workers_log_settings_and_serve(image_root: Path, tmp_path: Path) -> None:
    server = start_server(image_root, tmp_path / "data", "--workers", "2")
    try:
        with httpx.Client(base_url=server.url) as c:
            for _ in range(20):
                r = c.get(
                    "/iiif/3/tif-rgb-3lvl-1000x700-tiled256-jpeg/0,0,256,256/256,/0/default.jpg"
                )
                assert r.status_code == 200
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert "setting max_area = 25000000 (default)" in log
    assert f"setting images = '{image_root}' (command line)" in log
