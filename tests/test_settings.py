"""Settings: precedence, coercion, and the example config documenting every key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from iiifsrv.settings import REGISTRY, Settings, SettingsError, load, to_environ

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "iiifsrv.example.toml"


def test_defaults_match_the_registry() -> None:
    s = Settings()
    for spec in REGISTRY:
        assert getattr(s, spec.name) == spec.default, spec.name


def test_precedence_file_env_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 9000\nmax_width = 100\nhost = "0.0.0.0"\n')
    s = load(
        config_file=cfg,
        environ={"IIIFSRV_PORT": "9001", "IIIFSRV_MAX_WIDTH": "200"},
        overrides={"port": 9002},
    )
    assert (s.port, s.max_width, s.host) == (9002, 200, "0.0.0.0")
    assert s.sources["port"] == "command line" and s.sources["host"] == str(cfg)


def test_bool_and_int_coercion() -> None:
    s = load(environ={"IIIFSRV_DEBUG": "yes", "IIIFSRV_CACHE_BYTES": "1_000"})
    assert s.debug is True and s.cache_bytes == 1000


@pytest.mark.parametrize(("key", "value"), [("IIIFSRV_PORT", "eighty"), ("IIIFSRV_DEBUG", "maybe")])
def test_bad_values_are_named(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load(environ={key: value})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 1\n")
    with pytest.raises(SettingsError, match="colour"):
        load(config_file=cfg)


def test_environ_round_trip() -> None:
    s = load(overrides={"port": 1234, "debug": True, "public_url": "https://x.org/iiif/"})
    again = load(environ=to_environ(s))
    assert again.as_dict() | {"images": "", "data": ""} == s.as_dict() | {"images": "", "data": ""}
    assert again.public_url == "https://x.org/iiif"


def test_example_config_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    names = {spec.name for spec in REGISTRY}
    # Every key appears, commented out with its default, after a comment explaining it.
    for name in names:
        assert f"# {name} = " in text, name
    uncommented = tomllib.loads(
        "\n".join(ln[2:] for ln in text.splitlines() if ln.startswith("# ") and " = " in ln)
    )
    assert set(uncommented) == names
    for spec in REGISTRY:
        assert uncommented[spec.name] == spec.default, spec.name


def test_malformed_token_entry_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="tokens"):
        load(environ={"IIIFSRV_TOKENS": "Zq8vN2kLx4Rw7TyPm3Hc=alice,oops"})
    spec = "Zq8vN2kLx4Rw7TyPm3Hc=alice, Jd5sQ9fWb2Ge6UoXn8Kt=bob:editor"
    assert load(environ={"IIIFSRV_TOKENS": spec}).tokens
