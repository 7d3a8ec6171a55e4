"""deploy/prometheus/: the alert rules pass `promtool check rules`, and `promtool test rules` shows
each one firing on the series it is for and staying quiet on those beside them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import start_http_server

from service.client.mnist import load_test_split
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.conftest import REPO, DefaultRun, free_port, wait_until
from tests.service.conftest import config_for, health_status, running

RULES = REPO / "deploy" / "prometheus" / "rules.yml"
CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("no promtool (apt-get install prometheus; .ci/run installs it)")
    return found


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _rule(name: str) -> dict[str, Any]:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return next(rule for rule in rules if rule["alert"] == name)


def _alerts(name: str, at: str, *fired: tuple[dict[str, str], str]) -> dict[str, Any]:
    """`name` at `at` fires once for each of `fired`: its labels (beside severity) and its summary, with
    the figure the series give; and for nothing else."""
    rule = _rule(name)
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {
                "exp_labels": {**labels, **rule["labels"]},
                "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
            }
            for labels, summary in fired
        ],
    }


ANSWERS = "mnist37_answers_total"
COMPARED = "mnist37_shadow_comparisons_total"
DROPPED = "mnist37_shadow_dropped_images_total"
# Each case: the series (one a minute), then what each alert says at a time; a case lists every alert
# that fires, for promtool fails a test on a missing alert and on an unexpected one alike.
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]]]] = {
    "no model served": (
        [
            _series("mnist37_served_model_version", "0x10", model="mnist-3v7", alias="champion", replica="a"),
            _series("mnist37_served_model_version", "1x10", model="mnist-3v7", alias="champion", replica="b"),
            _series("mnist37_served_model_version", "0x10", model="mnist-3v7", alias="challenger", replica="b"),
        ],
        [
            _alerts("Mnist37NoModelServed", "4m"),  # not for 5 minutes yet
            _alerts(
                "Mnist37NoModelServed",
                "6m",
                (
                    {"model": "mnist-3v7", "alias": "champion", "replica": "a"},
                    "a has served no model of mnist-3v7@champion for 5 minutes",
                ),
            ),
        ],
    ),
    "neither far above the expected share": (
        [
            # Version 4: 1 image in 101 neither against an expected 0.5% (5x: 2.5%): quiet.
            _series(ANSWERS, "0+50x20", role="champion", version="4", answer="3", replica="a"),
            _series(ANSWERS, "0+50x20", role="champion", version="4", answer="7", replica="a"),
            _series(ANSWERS, "0+1x20", role="champion", version="4", answer="neither", replica="a"),
            _series("mnist37_expected_neither_share", "0.005x20", role="champion", version="4", replica="a"),
            # Version 5, in shadow: 40 in 90 neither, over two replicas: fires.
            _series(ANSWERS, "0+25x20", role="shadow", version="5", answer="3", replica="a"),
            _series(ANSWERS, "0+25x20", role="shadow", version="5", answer="7", replica="b"),
            _series(ANSWERS, "0+20x20", role="shadow", version="5", answer="neither", replica="a"),
            _series(ANSWERS, "0+20x20", role="shadow", version="5", answer="neither", replica="b"),
            _series("mnist37_expected_neither_share", "0.005x20", role="shadow", version="5", replica="a"),
            _series("mnist37_expected_neither_share", "0.005x20", role="shadow", version="5", replica="b"),
            # Version 6: a third neither, but 3 images a minute (15 in 5 minutes): too few to page anyone.
            _series(ANSWERS, "0+1x20", role="champion", version="6", answer="3", replica="a"),
            _series(ANSWERS, "0+1x20", role="champion", version="6", answer="7", replica="a"),
            _series(ANSWERS, "0+1x20", role="champion", version="6", answer="neither", replica="a"),
            _series("mnist37_expected_neither_share", "0.005x20", role="champion", version="6", replica="a"),
        ],
        [
            _alerts("Mnist37NeitherShareHigh", "3m"),
            _alerts(
                "Mnist37NeitherShareHigh",
                "10m",
                (
                    {"role": "shadow", "version": "5"},
                    'Version 5 (shadow) answers "neither" 44.44% of the time, over 5x its expected share',
                ),
            ),
        ],
    ),
    "the shadow disagreeing": (
        [
            # Shadow 5 answers another digit for 5 images in 105 (4.8%); shadow 6 for 1 in 101: quiet.
            _series(COMPARED, "0+100x30", champion="4", shadow="5", outcome="same_digit", replica="a"),
            _series(COMPARED, "0+5x30", champion="4", shadow="5", outcome="other_digit", replica="a"),
            _series(COMPARED, "0+100x30", champion="4", shadow="6", outcome="same_digit", replica="a"),
            _series(COMPARED, "0+1x30", champion="4", shadow="6", outcome="other_digit", replica="a"),
        ],
        [
            _alerts("Mnist37ShadowDisagrees", "8m"),
            _alerts(
                "Mnist37ShadowDisagrees",
                "25m",
                (
                    {"champion": "4", "shadow": "5"},
                    "Shadow version 5 disagrees with champion 4 on 4.762% of live images",
                ),
            ),
        ],
    ),
    "the shadow dropping work": (
        [
            # Replica a drops 20 images a minute beside 100 compared (17%); replica b 1 beside 100.
            _series(COMPARED, "0+100x20", champion="4", shadow="5", outcome="same_digit", replica="a"),
            _series(DROPPED, "0+20x20", reason="queue_full", replica="a"),
            _series(COMPARED, "0+100x20", champion="4", shadow="5", outcome="same_digit", replica="b"),
            _series(DROPPED, "0+1x20", reason="failed", replica="b"),
        ],
        [
            _alerts("Mnist37ShadowDropping", "3m"),
            _alerts("Mnist37ShadowDropping", "10m", ({"replica": "a"}, "a drops 16.67% of the shadow's work")),
        ],
    ),
}


def test_the_rules_and_the_compose_config_pass_promtools_checks() -> None:
    tool = promtool()
    for command in (["check", "rules", str(RULES)], ["check", "config", "--syntax-only", str(CONFIG)]):
        done = subprocess.run([tool, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_alert_fires_on_its_series_and_not_beside_them(case: str, tmp_path: Path) -> None:
    series, expectations = CASES[case]
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": expectations}],
    }
    file = tmp_path / "rules_test.yml"
    file.write_text(yaml.safe_dump(tests))
    done = subprocess.run([promtool(), "test", "rules", str(file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_real_prometheus_fires_the_neither_rule_on_non_digits_and_not_on_digits(
    default_run: DefaultRun, tmp_path: Path
) -> None:
    """Debian's Prometheus scraping a real service every second with deploy/'s rules, each rule's
    expression as it stands but its `for` cut to nothing (the test above holds the waits): digits
    leave the neither rule quiet; non-digits fire it."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus (apt-get install prometheus; .ci/run installs it)")
    assert default_run.returncode == 0, default_run.stderr[-2000:]
    metrics, web = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "mnist37", "static_configs": [{"targets": [f"127.0.0.1:{metrics}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    rules = yaml.safe_load(RULES.read_text())
    for rule in rules["groups"][0]["rules"]:
        rule["for"] = "0s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    digits = load_test_split(None)[0]  # $MNIST_DATA_DIR's, as the tests' own
    noise = np.random.default_rng(0).integers(0, 256, (400, 784), dtype=np.uint8)
    with running(config_for(default_run.uri)) as (service, channel):
        endpoint, _ = start_http_server(metrics, addr="127.0.0.1", registry=service.metrics.registry)
        argv = [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}"]
        prometheus = subprocess.Popen(
            [*argv, f"--web.listen-address=127.0.0.1:{web}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            api = f"http://127.0.0.1:{web}/api/v1"
            wait_until(lambda: health_status(channel) == "SERVING", 30)
            up = lambda: [t for t in _get(f"{api}/targets")["activeTargets"] if t["health"] == "up"]  # noqa: E731
            wait_until(up, 30, "Prometheus scraping the service", every=0.5)
            stub = pb_grpc.ClassifierStub(channel)

            def send(images: np.ndarray, seconds: float) -> None:
                """Over `seconds`, so that scrapes see the counters climb."""
                for part in np.array_split(images, 8):
                    stub.ClassifyBatch(pb.ClassifyBatchRequest(images=[pb.Image(uint8=i.tobytes()) for i in part]))
                    time.sleep(seconds / 8)

            send(digits[:400], 3)
            time.sleep(2)
            assert _neither_alerts(api) == [], "genuine digits fired the neither rule"
            send(noise, 3)
            wait_until(lambda: _neither_alerts(api), 20, "the neither rule firing", every=0.5)
            [alert] = _neither_alerts(api)
            assert alert["labels"]["role"] == "champion" and alert["state"] == "firing", alert
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            endpoint.shutdown()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())["data"]


def _neither_alerts(api: str) -> list[dict[str, Any]]:
    return [a for a in _get(f"{api}/alerts")["alerts"] if a["labels"]["alertname"] == "Mnist37NeitherShareHigh"]
