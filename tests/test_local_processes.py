"""Real start/ready/stop of the three local emulators, plus the safety rules of ``stop``.

These start the actual emulator processes on loopback (about 1-1.5 s each); nothing is mocked
except where a test checks the error for a missing binary.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from batchline.local import emulators as E
from batchline.local import processes as P


def _gone(handle: P.ServiceHandle) -> bool:
    """The process no longer exists (reaped, not just a zombie) and its port is closed."""
    with socket.socket() as s:
        s.settimeout(0.5)
        port_closed = s.connect_ex((P.LOOPBACK, handle.port)) != 0
    return not Path(f"/proc/{handle.pid}").exists() and port_closed and not P.is_alive(handle)


def _stop_and_check(handle: P.ServiceHandle) -> None:
    assert P.stop(handle) is True
    assert _gone(handle)
    assert P.stop(handle) is False  # idempotent: second stop is a no-op
    assert P.stop(handle.to_dict()) is False


def test_pubsub_start_ready_stop(tmp_path, monkeypatch):
    from google.cloud import pubsub_v1

    h = E.start_pubsub(tmp_path, project="p-test")
    try:
        assert P.is_alive(h) and h.host == f"127.0.0.1:{h.port}"
        assert Path(h.log_path).is_file() and Path(h.log_path).parent == tmp_path / "logs"
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", h.host)
        pub = pubsub_v1.PublisherClient()
        topic = pub.topic_path("p-test", "topic-1")
        pub.create_topic(name=topic)
        assert [t.name for t in pub.list_topics(project="projects/p-test")] == [topic]
    finally:
        _stop_and_check(h)


def test_firestore_start_ready_stop(tmp_path, monkeypatch):
    from google.cloud import firestore

    h = E.start_firestore(tmp_path)
    try:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", h.host)
        db = firestore.Client(project="p-test")
        db.collection("c").document("d").set({"a": 1})
        assert db.collection("c").document("d").get().to_dict() == {"a": 1}
    finally:
        _stop_and_check(h)


def test_bigquery_start_ready_stop_and_json_load(tmp_path):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    h = E.start_bigquery(tmp_path, project="p-test")
    try:
        assert set(h.extra_ports) == {"grpc"} and h.extra_ports["grpc"] != h.port
        client = bigquery.Client(
            project="p-test",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=f"http://{h.host}"),
        )
        client.create_dataset("ds")
        schema = [bigquery.SchemaField("k", "STRING"), bigquery.SchemaField("v", "INT64")]
        # load_table_from_json sends a `*/*` media part: accepted thanks to bq_launcher's patch.
        job = client.load_table_from_json(
            [{"k": "a", "v": 1}, {"k": "b", "v": 2}],
            "p-test.ds.t",
            job_config=bigquery.LoadJobConfig(schema=schema),
        )
        job.result()
        rows = client.query("SELECT SUM(v) AS s FROM `p-test.ds.t`").result()
        assert [r.s for r in rows] == [3]
    finally:
        _stop_and_check(h)


def _sleeper(tmp_path, name: str) -> P.ServiceHandle:
    """A harmless long-running child, started the way the emulators are."""
    return P.start_process(name, [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, {},
                           ready=lambda: True, timeout_s=5, port=P.free_port())


def test_handle_round_trips_through_pid_file_and_stops_from_another_reader(tmp_path):
    h = _sleeper(tmp_path, "sleeper")
    try:
        saved = json.loads(P.pid_file(tmp_path, "sleeper").read_text())
        again = P.ServiceHandle.from_dict(json.loads(json.dumps(saved)))
        assert again == h and P.is_alive(again)
    finally:
        assert P.stop(again, timeout_s=5) is True
    assert not P.is_alive(h) and not Path(f"/proc/{h.pid}").exists()
    assert P.stop(h) is False


def test_stop_refuses_a_recycled_pid(tmp_path):
    h = _sleeper(tmp_path, "victim")
    try:
        stale = P.ServiceHandle.from_dict({**h.to_dict(), "start_ticks": h.start_ticks - 1})
        assert P.is_alive(stale) is False
        assert P.stop(stale) is False
        assert P.is_alive(h)  # the "other" process with that pid was left alone
    finally:
        P.stop(h, timeout_s=5)


def test_start_process_reports_early_exit_with_log_tail(tmp_path):
    with pytest.raises(P.StartupError, match=r"exited with code 3(.|\n)*boom-marker"):
        P.start_process(
            "crasher",
            [sys.executable, "-c", "print('boom-marker', flush=True); raise SystemExit(3)"],
            tmp_path,
            {},
            ready=lambda: False,
            timeout_s=10,
            port=P.free_port(),
        )


def test_start_process_times_out_and_cleans_up(tmp_path):
    with pytest.raises(P.StartupError, match="not ready after"):
        P.start_process(
            "never-ready",
            [sys.executable, "-c", "import time; time.sleep(60)"],
            tmp_path,
            {},
            ready=lambda: False,
            timeout_s=0.5,
            port=P.free_port(),
        )
    assert P.read_pid_file(tmp_path, "never-ready") is None


def test_missing_emulator_binaries_name_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "PUBSUB_LAUNCHER", "platform/no-such/cloud-pubsub-emulator")
    with pytest.raises(E.EmulatorNotInstalled, match="google-cloud-cli-pubsub-emulator"):
        E.start_pubsub(tmp_path)
    monkeypatch.setattr(E, "FIRESTORE_JAR", "platform/no-such/cloud-firestore-emulator.jar")
    with pytest.raises(E.EmulatorNotInstalled, match="google-cloud-cli-firestore-emulator"):
        E.start_firestore(tmp_path)


def test_missing_sdk_and_java_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("CLOUDSDK_ROOT_DIR", raising=False)
    monkeypatch.setattr(E, "KNOWN_SDK_ROOTS", (str(tmp_path / "nowhere"),))
    monkeypatch.setattr(E.shutil, "which", lambda name: None)
    with pytest.raises(E.EmulatorNotInstalled, match="google-cloud-cli-pubsub-emulator"):
        E.start_pubsub(tmp_path)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(E.EmulatorNotInstalled, match="default-jre-headless"):
        E.java_binary()


def test_env_for_clients():
    def fake(name: str, port: int) -> P.ServiceHandle:
        return P.ServiceHandle(name, 1, 1, 1, port, f"127.0.0.1:{port}", "/dev/null")

    env = E.env_for_clients(fake("pubsub", 1), fake("firestore", 2), fake("bigquery", 3))
    assert env == {
        "PUBSUB_EMULATOR_HOST": "127.0.0.1:1",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:2",
        "BIGQUERY_EMULATOR_HOST": "127.0.0.1:3",
    }
    assert E.env_for_clients() == {}
