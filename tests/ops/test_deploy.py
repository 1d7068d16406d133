"""deploy/: the Compose file and the Kubernetes manifests parse, have the expected parts, use
only settings the registry knows, with values iiifsrv accepts — and refuse to start while the
secrets are still the shipped placeholders. (No Docker here: nothing is run.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iiifsrv.settings import ENV_PREFIX, REGISTRY, SettingsError, load
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
KNOWN = {ENV_PREFIX + spec.name.upper() for spec in REGISTRY}
STRONG = {
    "IIIFSRV_TOKENS": "Zq8vN2kLx4Rw7TyPm3Hc-x=editor:editor",
    "IIIFSRV_SESSION_SECRET": "Jd5sQ9fWb2Ge6UoXn8Kt-Jd5sQ9fWb2Ge6UoXn8Kt",
}


def _yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _settings_names(env: dict[str, str]) -> set[str]:
    return {k for k in env if k.startswith(ENV_PREFIX)}


# -- Compose ------------------------------------------------------------------------------

COMPOSE = DEPLOY / "compose"
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message}, from ``env``."""

    def one(m: re.Match[str]) -> str:
        name, kind, rest = m.group(1), m.group(2), m.group(3)
        if name in env:
            return env[name]
        if kind == "-":
            return rest
        raise AssertionError(f"${{{name}}} is not in example.env")

    return _VAR.sub(one, value)


def _example_env() -> dict[str, str]:
    lines = (COMPOSE / "example.env").read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


def _compose() -> dict[str, Any]:
    docs = _yaml(COMPOSE / "compose.yaml")
    assert len(docs) == 1
    return docs[0]


def test_compose_has_replicas_a_balancer_a_cache_and_the_state_services() -> None:
    services = _compose()["services"]
    assert {"iiifsrv", "haproxy", "varnish", "postgres", "redis", "minio"} <= set(services)
    assert services["iiifsrv"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["iiifsrv"]  # reached through the balancer only
    assert services["varnish"]["ports"] == ["8080:80"]
    for service in services.values():  # files it mounts exist
        for volume in service.get("volumes", ()):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).resolve().is_file(), source


def test_compose_settings_exist_and_load() -> None:
    env = {
        k: _interpolate(str(v), _example_env())
        for k, v in _compose()["services"]["iiifsrv"]["environment"].items()
    }
    names = _settings_names(env)
    assert names and names <= KNOWN, names - KNOWN
    with pytest.raises(SettingsError, match="tokens"):  # the placeholders: refused
        load(environ=env)
    settings = load(environ={**env, **STRONG})
    assert settings.images == "s3://images" and settings.database_url.startswith("postgresql://")
    assert settings.access_log == "json" and settings.workers == 2
    assert settings.cache_url == "redis://redis:6379/0"  # the redis service
    grace = int(_compose()["services"]["iiifsrv"]["stop_grace_period"].rstrip("s"))
    assert grace > settings.shutdown_drain + settings.shutdown_timeout


def test_compose_haproxy_config_is_valid() -> None:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed: run scripts/setup --test")
    check = subprocess.run(
        [binary, "-c", "-f", str(COMPOSE / "haproxy.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "option httpchk GET /health" in (COMPOSE / "haproxy.cfg").read_text()


def test_compose_varnish_reaches_the_compose_haproxy(tmp_path: Path) -> None:
    """The Varnish service runs config/varnish.vcl through a sed in its entrypoint: that sed
    must move the backend to the haproxy service, on the port the Compose HAProxy listens on."""
    entry = _compose()["services"]["varnish"]["entrypoint"][-1]
    sed = entry.split("&&")[0].replace("/etc/iiifsrv/varnish.vcl", str(ROOT / "config/varnish.vcl"))
    sed = sed.replace("/tmp/iiifsrv.vcl", str(tmp_path / "iiifsrv.vcl"))
    subprocess.run(["sh", "-c", sed], check=True)
    vcl = (tmp_path / "iiifsrv.vcl").read_text()
    backend = re.search(r'backend iiifsrv \{\s*\.host = "([^"]+)";\s*\.port = "(\d+)";', vcl)
    assert backend is not None and backend.group(1) == "haproxy", vcl[:600]
    assert '"127.0.0.1"' not in vcl  # no backend left on loopback
    assert f"bind :{backend.group(2)}\n" in (COMPOSE / "haproxy.cfg").read_text()


# -- Kubernetes ---------------------------------------------------------------------------

K8S = DEPLOY / "kubernetes"


def _manifests() -> dict[str, dict[str, Any]]:
    files = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(files) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")
    by_kind: dict[str, dict[str, Any]] = {}
    for name in files:
        for doc in _yaml(K8S / name):
            assert doc["apiVersion"] and doc["metadata"]["name"] == "iiifsrv"
            by_kind[doc["kind"]] = doc
    return by_kind


def test_kubernetes_manifests_have_the_expected_kinds() -> None:
    kinds = _manifests()
    assert set(kinds) == {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler"}
    deployment, service, hpa = (
        kinds["Deployment"],
        kinds["Service"],
        kinds["HorizontalPodAutoscaler"],
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {kinds["ConfigMap"]["metadata"]["name"], kinds["Secret"]["metadata"]["name"]}


def _k8s_env(kinds: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What a pod's environment gets from the ConfigMap and the Secret (envFrom)."""
    env = {**kinds["ConfigMap"]["data"], **kinds["Secret"]["stringData"]}
    return {k: str(v) for k, v in env.items()}


def test_kubernetes_settings_exist_and_load() -> None:
    kinds = _manifests()
    env = _k8s_env(kinds)
    names = _settings_names(env)
    assert names and names <= KNOWN, names - KNOWN
    assert {"IIIFSRV_TOKENS", "IIIFSRV_SESSION_SECRET", "IIIFSRV_DATABASE_URL"} <= set(
        kinds["Secret"]["stringData"]
    )  # credentials in the Secret, not the ConfigMap
    assert not {"IIIFSRV_TOKENS", "IIIFSRV_SESSION_SECRET"} & set(kinds["ConfigMap"]["data"])
    with pytest.raises(SettingsError, match="tokens"):
        load(environ=env)
    settings = load(environ={**env, **STRONG})
    assert settings.host == "0.0.0.0" and settings.port == 8182
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["ports"][0]["containerPort"] == settings.port
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > settings.shutdown_drain + settings.shutdown_timeout
    readiness = spec["containers"][0]["readinessProbe"]
    # the drain lasts long enough for the readiness probe to fail and the pod to leave
    assert settings.shutdown_drain > readiness["periodSeconds"] * readiness["failureThreshold"]


async def test_the_probed_paths_answer(client: Any) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/health/live")).json() == {"status": "alive"}
