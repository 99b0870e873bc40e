"""A local Prometheus for the workers of one machine, with the project's configuration and alert
rules (`deploy/prometheus`), for `make run` and the observability tests.

The configuration is derived from `deploy/prometheus/prometheus.yml`, so there is one source:
only the paths (rules, targets) become absolute and the scrape interval can be shortened. The
workers to scrape are written to a file-discovery target file, which Prometheus re-reads by
itself when a run adds workers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from streams.config import ROOT

DEPLOY = ROOT / "deploy" / "prometheus"


def available() -> bool:
    return shutil.which("prometheus") is not None


def write_config(directory: Path, scrape_interval: str | None = None) -> Path:
    """The project's Prometheus configuration, with absolute paths, in `directory`."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["rule_files"] = [str(DEPLOY / pattern) for pattern in config.get("rule_files", [])]
    (directory / "targets").mkdir(parents=True, exist_ok=True)
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", []):
            discovery["files"] = [str(directory / "targets" / "*.json")]
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_targets(directory: Path, name: str, ports: Iterable[int], labels: dict[str, str]) -> None:
    """Announce workers to Prometheus: `<directory>/targets/<name>.json`."""
    targets = [{"targets": [f"127.0.0.1:{port}" for port in ports], "labels": labels}]
    path = directory / "targets" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(targets))
    temporary.replace(path)  # Prometheus must never read half a file


class LocalPrometheus:
    def __init__(self, directory: Path, port: int = 9090, scrape_interval: str | None = None):
        self.directory = directory
        self.port = port
        self.scrape_interval = scrape_interval
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> LocalPrometheus:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = write_config(self.directory, self.scrape_interval)
        log = (self.directory / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start; see {self.directory}/prometheus.log")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def query(self, expression: str) -> dict[str, Any]:
        """The answer of the instant query API: `{"status": ..., "data": {"result": [...]}}`,
        or the error Prometheus gave for an expression that does not parse."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return dict(json.loads(answer.read()))
        except urllib.error.HTTPError as error:
            return dict(json.loads(error.read()))
