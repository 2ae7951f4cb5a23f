"""Bodies crafted to break the service, and clients too slow to finish one: each gets a 4xx that
says what was wrong, never a 5xx, a crash or a worker held for good. (Duplicate keys and deeply
nested JSON: tests/api/test_parsing.py.)"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.schemas import FIRST_TRACT
from tests.conftest import running_api

BODY = json.dumps(FIRST_TRACT).encode()
ROUTES = ["/predict", "/predict/batch", "/invocations"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "media_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv", "application/xml"]
)
def test_a_body_that_is_not_json_by_its_media_type_gets_415(
    client: TestClient, route: str, media_type: str
) -> None:
    response = client.post(route, content=BODY, headers={"content-type": media_type})
    assert response.status_code == 415
    assert response.json()["detail"] == (
        f"Content-Type '{media_type}' is not accepted; send application/json"
    )


@pytest.mark.parametrize(
    "media_type", [None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_json_with_or_without_its_media_type_is_read(
    client: TestClient, media_type: str | None
) -> None:
    headers = {"content-type": media_type} if media_type else {}
    response = client.post("/predict", content=BODY, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("route", ROUTES)
def test_a_compressed_body_is_refused_without_being_inflated(
    client: TestClient, route: str
) -> None:
    # 100 MB of zeros in about 100 kB: a compression bomb if anything inflated it
    bomb = gzip.compress(b"0" * 100_000_000, compresslevel=9)
    assert len(bomb) < 200_000
    response = client.post(
        route,
        content=bomb,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 415
    assert "Content-Encoding 'gzip' is not accepted" in response.json()["detail"]


def ten_megabyte_string() -> bytes:
    return json.dumps({**FIRST_TRACT, "CRIM": "x" * 10_000_000}).encode()


@pytest.mark.parametrize("route", ROUTES)
def test_a_ten_megabyte_json_string_gets_413(client: TestClient, route: str) -> None:
    response = client.post(route, content=ten_megabyte_string())
    assert response.status_code == 413
    assert response.json()["detail"] == "request body exceeds 2000000 bytes"
    assert response.headers["connection"] == "close"


def test_a_ten_megabyte_string_sent_in_chunks_gets_413(client: TestClient) -> None:
    body = ten_megabyte_string()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    response = client.post("/predict", content=chunks())
    assert response.status_code == 413


def raw_request(port: int, body: bytes, declared: int, pause: float, count: int) -> bytes:
    """Send the headers, then `count` bytes of `body` one at a time, `pause` s apart, stopping as
    soon as the server answers, as an HTTP client reading while it sends does; return the answer
    (b"" when the server closed without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % declared
        )
        connection.settimeout(pause)
        for byte in body[:count]:
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break  # the server closed the connection
            try:
                if answer := connection.recv(65_536):
                    return rest_of(connection, answer)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
        return rest_of(connection, b"")


def rest_of(connection: socket.socket, start: bytes) -> bytes:
    """The whole answer that begins with `start`: its head, then as many body bytes as its
    Content-Length says. A client reads a response by its length, not up to the connection's
    end: a server that closes while bytes of ours are still arriving makes its kernel end the
    connection with a reset, which may come before the close would have."""
    connection.settimeout(30)
    answer = start
    while True:
        head, separator, content = answer.partition(b"\r\n\r\n")
        if separator:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None or len(content) >= int(length.group(1)):
                return answer
        try:
            chunk = connection.recv(65_536)
        except ConnectionResetError:
            return answer
        if not chunk:
            return answer
        answer += chunk


@pytest.mark.e2e
def test_a_body_sent_a_byte_at_a_time_is_cut_off(model_dir: Path, tmp_path: Path) -> None:
    with running_api(model_dir, tmp_path / "log.jsonl", body_timeout="2") as url:
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        answer = raw_request(port, BODY, declared=len(BODY), pause=0.25, count=len(BODY))
        waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"request body not received within 2 s" in answer
        assert b"connection: close" in answer.lower()
        assert waited < 20  # cut off near the 2 s deadline, long before the body would finish
        # the worker was not held: it answers at once
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/predict", json=FIRST_TRACT).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'route="/predict",status="408"} 1.0' in metrics
