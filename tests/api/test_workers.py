"""Several worker processes behind one port: /metrics still speaks for the whole service."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import multiprocess
from api.observability import Tally
from api.schemas import FIRST_TRACT
from tests.conftest import running_api


def samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of /metrics by sample name, with its labels."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in found.get(name, [])
        if all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


@pytest.mark.e2e
def test_two_workers_count_every_request_once(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = 400
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the server's temp dir, where its workers meet
    monkeypatch.delenv(multiprocess.ENV, raising=False)  # nothing set: the app finds its folder
    with running_api(model_dir, tmp_path / "log.jsonl", uvicorn_args=("--workers", "2")) as url:
        for _ in range(requests):
            # a new connection each time, so the kernel spreads them over both workers
            response = httpx.post(f"{url}/predict", json=FIRST_TRACT)
            assert response.status_code == 200
        time.sleep(1.5)  # each worker counts its buffered input rows within a second
        for _ in range(20):
            # which worker answers a scrape is up to the kernel: every one must give the totals
            found = samples(url)
            assert total(found, "model_input_value_count", feature="RM") == requests
            assert total(found, "http_requests_total", route="/predict", status="200") == requests
            assert total(found, "model_prediction_medv_count") == requests
            assert len(found["model_info"]) == 1
            assert total(found, "model_loaded") == 1
        # both workers served a share: each wrote its own tally of predictions
        (folder,) = temp.glob("boston-api-metrics-*")
        shares = [
            np.fromfile(path)[:-1].sum() for path in folder.glob("model_prediction_medv_*.tally")
        ]
        assert len(shares) == 2 and all(share > 0 for share in shares)
        assert sum(shares) == requests


def _prepare_in_a_worker(queue: multiprocessing.Queue[str | None]) -> None:
    folder = multiprocess.shared_directory()
    queue.put(str(folder) if folder else None)


def test_spawned_workers_of_one_supervisor_share_one_new_folder(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    # another server's folder, its supervisor gone: not this server's to touch
    other = tmp_path / "boston-api-metrics-999999999-1"
    other.mkdir()
    context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    folders = []
    previous = {name: os.environ.get(name) for name in [*env, multiprocess.ENV]}
    os.environ.update(env)
    os.environ.pop(multiprocess.ENV, None)
    try:
        for _ in range(2):
            queue: multiprocessing.Queue[str | None] = context.Queue()
            worker = context.Process(target=_prepare_in_a_worker, args=(queue,))
            worker.start()
            folders.append(queue.get(timeout=60))
            worker.join(timeout=60)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert folders[0] is not None and folders[0] == folders[1]
    assert Path(folders[0]).parent == tmp_path
    assert Path(folders[0]).name.startswith(f"boston-api-metrics-{os.getpid()}-")
    assert Path(folders[0]).is_dir()
    assert other.exists()


def test_a_tally_sums_every_workers_file_of_its_size(tmp_path: Path) -> None:
    tally = Tally("medv", 3, tmp_path)
    tally.counts[:] = [1.0, 2.0, 3.0]
    np.array([10.0, 20.0, 30.0]).tofile(tmp_path / "medv_1.tally")  # another worker's
    np.array([5.0, 5.0]).tofile(tmp_path / "medv_2.tally")  # one serving another model
    np.array([7.0, 7.0, 7.0]).tofile(tmp_path / "other_3.tally")  # another collector's
    assert tally.total().tolist() == [11.0, 22.0, 33.0]
    assert Tally("medv", 3, None).total().tolist() == [0.0, 0.0, 0.0]
