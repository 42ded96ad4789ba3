"""MLflow tracking against a real SQLite store: start-up checks, runs found again instead of
duplicated, params and stepped metrics."""

from __future__ import annotations

import base64
import http.server
import math
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy.engine import make_url

from ot_ray.config import flatten, load_config
from ot_ray.errors import ConfigError
from ot_ray.launch import connect_ray
from ot_ray.search.tracking import (
    PARENT_TAG,
    TRIAL_TAG,
    TrackingError,
    check_tracking,
    get_or_create_run,
    log_config,
    log_metrics,
    log_params,
    redacted,
    tracking_uri,
)
from ot_ray.uris import credentials_in, redacted_text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_fast_in_one_line():
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match="not reachable") as caught:
        check_tracking(uri, "x", timeout=2)
    assert "\n" not in str(caught.value) and uri in str(caught.value)


def test_store_in_a_missing_or_blocked_folder_fails_fast(tmp_path):
    with pytest.raises(TrackingError, match="no folder"):
        check_tracking(f"sqlite:///{tmp_path}/missing/mlflow.db", "x")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TrackingError, match="no folder"):
        check_tracking(f"sqlite:///{blocker}/mlflow.db", "x")


def test_relative_sqlite_path_is_made_absolute_and_env_overrides(tmp_path, monkeypatch):
    config = load_config(None, ["tracking.uri=sqlite:///runs/mlflow.db"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(config, base=tmp_path) == f"sqlite:///{tmp_path}/runs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5005")
    assert tracking_uri(config, base=tmp_path) == "http://127.0.0.1:5005"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "HTTP://127.0.0.1:5005")
    assert tracking_uri(config) == "http://127.0.0.1:5005"  # then the server check applies
    monkeypatch.setenv("MLFLOW_TRACKING_URI", " http://u:pw@127.0.0.1:5005")  # used to hang
    with pytest.raises(TrackingError, match=r"MLFLOW_TRACKING_URI has spaces around it") as c:
        tracking_uri(config)
    assert "pw" not in str(c.value)
    # an in-memory store: each Ray worker would write to its own, and nothing is kept
    for memory in ("sqlite://", "sqlite:///:memory:", "SQLite://", "sqlite:///"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", memory)
        with pytest.raises(TrackingError, match=r"not a SQLite file \(an in-memory store"):
            tracking_uri(config)


def test_the_start_up_check_writes_nothing_to_the_store(tmp_path):
    """A start stopped by a later check (a missing model, say) left a new mlflow.db with the
    experiment in it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert check_tracking(uri, "sweeps", create=False) == ""
    assert not (tmp_path / "mlflow.db").exists()
    check_tracking(uri, "other")  # the store exists now, without the experiment
    assert check_tracking(uri, "sweeps", create=False) == ""
    assert MlflowClient(uri).get_experiment_by_name("sweeps") is None
    made = check_tracking(uri, "sweeps")
    assert check_tracking(uri, "sweeps", create=False) == made


def test_passwords_never_appear_in_messages():
    assert redacted("postgresql://me:secret@db:5432/mlflow") == "postgresql://me:***@db:5432/mlflow"
    assert redacted("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redacted("https://TOKEN@host/x") == "https://***@host/x"
    assert redacted("http://bob:pw@[::1]:5000") == "http://bob:***@[::1]:5000"
    assert redacted("https://h/x?access_token=abc&a=1") == "https://h/x?access_token=***&a=1"
    assert redacted("https://h/x#access_token=abc") == "https://h/x#access_token=***"
    signed = "https://b.s3.amazonaws.com/x?X-Amz-Credential=AK&X-Amz-Signature=ab&X-Amz-Date=1"
    assert redacted(signed).endswith("?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1")
    # a quote in the password (unencoded) hid the password from the text's redaction
    assert redacted_text("uri=http://bob:pa'ss@host/x") == "uri=http://bob:***@host/x"
    listed = "uris=['http://h:5000','ops@example.org']"  # no user info: nothing to hide
    assert redacted_text(listed) == listed


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://me:Zq9pa/ss@db/mlflow", "postgresql://me:***@db/mlflow"),
        ("mysql+pymysql://me:Zq9p?w@db:3306/mlflow", "mysql+pymysql://me:***@db:3306/mlflow"),
        (
            "postgresql://me:Zq9p#w@db/mlflow?sslmode=require",
            "postgresql://me:***@db/mlflow?sslmode=require",
        ),
        ("postgresql://me@corp:Zq9/pw@db/mlflow", "postgresql://me@corp:***@db/mlflow"),
        ("postgresql://me:Zq9p@ss@db/mlflow", "postgresql://me:***@db/mlflow"),  # all of p@ss
    ],
)
def test_a_database_password_with_a_slash_or_query_mark_is_refused_and_hidden(uri, shown):
    """SQLAlchemy reads the password up to its ``@``, ``/ ? #`` included, where urlsplit ends it:
    such a URI passed the check and was logged as an MLflow param as it was."""
    assert make_url(uri).password.startswith("Zq9")  # MLflow's store would use it
    with pytest.raises(ConfigError, match="carries a password or token in its user info") as c:
        load_config(None, [f"tracking.uri={uri}"])
    assert "Zq9" not in str(c.value)
    assert redacted(uri) == shown
    assert redacted_text(f"cannot reach {uri}.") == f"cannot reach {shown}."


def test_only_database_uris_are_read_the_database_way():
    """A port and an ``@`` further on are no password outside a database URI."""
    assert credentials_in("hdfs://nn:8020/data@v2") is None
    assert redacted("hdfs://nn:8020/data@v2") == "hdfs://nn:8020/data@v2"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("error at http://user:p,w@host:5000 failed", "error at http://user:***@host:5000 failed"),
        ("at http://u:Zq9!$&'()*+,;=w@h, then", "at http://u:***@h, then"),
        ("uri: 'http://u:Zq9'a,b@h'.", "uri: 'http://u:***@h'."),  # a quote and a comma
        ("--set tracking={uri: http://u:Zq9,w@h}", "--set tracking={uri: http://u:***@h}"),
        ("see http://h:5000/x, or ops@example.org.", "see http://h:5000/x, or ops@example.org."),
        ('uris=["http://h:5000","ops@example.org"]', 'uris=["http://h:5000","ops@example.org"]'),
    ],
)
def test_text_hides_a_password_with_a_comma_and_keeps_the_text_around(text, shown):
    """RFC 3986 lets user info carry the sub-delims ``!$&'()*+,;=``: a comma ended the URI
    and the password, which was then shown whole."""
    assert redacted_text(text) == shown


@pytest.mark.parametrize(
    ("uri", "what"),
    [
        ("postgresql://me:Zq9secret@db:5432/mlflow", "a password or token in its user info"),
        ("https://Zq9token@mlflow.example.org", "a password or token in its user info"),
        ("https://mlflow.example.org/?token=Zq9abc", "the query parameter 'token'"),
        ("https://mlflow.example.org/?X-Api-Token=Zq9abc", "the query parameter 'X-Api-Token'"),
        ("https://h/x?X-Goog-Signature=Zq9", "the query parameter 'X-Goog-Signature'"),
        ("https://h/x?api-key=Zq9", "the query parameter 'api-key'"),
        ("https://h/x?key=Zq9", "the query parameter 'key'"),
        ("https://h/x#access_token=Zq9", "the fragment's parameter 'access_token'"),
    ],
)
def test_a_config_cannot_carry_tracking_credentials(uri, what):
    """Configs are logged (MLflow params, best.yaml, show_config): secrets go in the env. The
    error quotes the override without the secret."""
    pattern = rf"tracking\.uri: the URI carries {what}.*MLFLOW_TRACKING_URI"
    with pytest.raises(ConfigError, match=pattern) as caught:
        load_config(None, [f"tracking.uri={uri}"])
    assert "Zq9" not in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://mlflow@db/mlflow",  # password in ~/.pgpass or IAM
        "postgresql://db/mlflow?sslkey=/etc/ssl/client.key&sslmode=verify-full",
        "databricks://profile",
        "https://mlflow.example.org/prefix/?author=x",
        # SQLAlchemy's MySQL TLS options name files, not secrets
        "mysql+pymysql://mlflow@db:3306/mlflow?ssl_key=/etc/mysql/client-key.pem",
    ],
)
def test_uris_without_secrets_are_accepted(uri):
    assert load_config(None, [f"tracking.uri={uri}"]).tracking.uri == uri


class AuthServer(http.server.BaseHTTPRequestHandler):
    """/health answers 200 only with the right Basic credentials; the MLflow API says 403."""

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(b"bob:s3cret").decode()
        if self.path == "/health":
            ok = self.headers.get("Authorization") == expected
            self.send_response(200 if ok else 401)
        else:
            self.send_response(403)
        self.end_headers()
        self.wfile.write(b"denied")

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


def test_a_server_uri_with_credentials_is_checked_with_them_and_never_shown(monkeypatch):
    """urllib would take ``user:pw@host`` for the host; the check sends them as a header."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AuthServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        with pytest.raises(TrackingError) as caught:
            check_tracking(f"http://bob:s3cret@127.0.0.1:{port}", "x", timeout=5)
        message = str(caught.value)
        assert "not reachable" not in message  # /health accepted the credentials
        assert f"cannot use the MLflow store http://bob:***@127.0.0.1:{port}" in message
        assert "s3cret" not in message
        with pytest.raises(TrackingError, match=r"not reachable \(HTTP 401") as caught:
            check_tracking(f"http://bob:wrong@127.0.0.1:{port}", "x", timeout=5)
        assert "wrong" not in str(caught.value)
    finally:
        server.shutdown()


class HealthServer(http.server.BaseHTTPRequestHandler):
    """/health answers 200; the MLflow API says 403 (not an MLflow server)."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 403)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


def test_a_server_behind_a_private_ca_is_checked_with_mlflows_tls_settings(tmp_path, monkeypatch):
    """The check used urllib, which knows none of MLflow's TLS variables: a server that MLflow
    itself used through MLFLOW_TRACKING_SERVER_CERT_PATH was refused as not reachable."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HealthServer)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(TrackingError, match=r"not reachable \(.*CERTIFICATE_VERIFY_FAILED"):
            check_tracking(uri, "x", timeout=5)  # an unknown CA: refused, as MLflow would
        for name, value in [
            ("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert)),
            ("MLFLOW_TRACKING_INSECURE_TLS", "true"),
        ]:
            with monkeypatch.context() as patched:
                patched.setenv(name, value)
                with pytest.raises(TrackingError) as caught:
                    check_tracking(uri, "x", timeout=5)
                assert "not reachable" not in str(caught.value)  # /health answered
                assert f"cannot use the MLflow store {uri}" in str(caught.value)
    finally:
        server.shutdown()


def test_an_unknown_store_scheme_is_one_line():
    with pytest.raises(TrackingError, match="cannot use the MLflow store bogus://x") as caught:
        check_tracking("bogus://x", "x")
    assert "\n" not in str(caught.value)


def test_runs_are_found_again_not_duplicated(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment = check_tracking(uri, "sweeps")
    assert check_tracking(uri, "sweeps") == experiment
    client = MlflowClient(uri)
    key = {"ot_ray.sweep": "s", "ot_ray.trial_id": "t1"}
    parent = get_or_create_run(
        client, experiment, key_tags={"ot_ray.sweep": "s"}, name="s", tags={}
    )
    child = get_or_create_run(
        client, experiment, key_tags=key, name="t1", tags={PARENT_TAG: parent}
    )
    again = get_or_create_run(
        client, experiment, key_tags=key, name="t1", tags={PARENT_TAG: parent}
    )
    assert again == child != parent
    assert client.get_run(child).data.tags[PARENT_TAG] == parent
    params = flatten({"alignment": {"ot": {"epsilon": 0.01}, "layers": [-1]}, "seed": 0})
    assert params == {"alignment.ot.epsilon": 0.01, "alignment.layers": [-1], "seed": 0}
    log_params(client, child, params)
    log_params(client, child, params)  # a restarted trial logs the same params again
    assert client.get_run(child).data.params["alignment.ot.epsilon"] == "0.01"
    log_metrics(client, child, {"objective": math.nan, "stage": "align", "global_step": 3}, 3)
    log_metrics(client, child, {"objective": 51.5, "milestone": 1}, 40)
    history = client.get_metric_history(child, "objective")
    assert [(m.step, m.value) for m in history][1] == (40, 51.5)
    assert math.isnan(history[0].value)
    assert "stage" not in client.get_run(child).data.metrics
    # where a run writes differs per trial and machine: tags, not params to compare
    log_config(client, child, {"train.output_dir": "/srv/x/trials/t1", "train.lr": 0.1})
    run = client.get_run(child).data
    assert run.tags["where.train.output_dir"] == "/srv/x/trials/t1"
    assert "train.output_dir" not in run.params and run.params["train.lr"] == "0.1"


def test_the_job_stops_before_ray_when_the_server_is_unreachable(tmp_path):
    """One line, exit status 2, no Ray cluster started, nothing trained."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import tiny_trial_overrides

    repo = Path(__file__).resolve().parent.parent
    sets = [
        *tiny_trial_overrides(str(tmp_path / "cache"), str(tmp_path / "out")),
        f"tracking.uri=http://127.0.0.1:{free_port()}",
        f"tune.storage_path={tmp_path / 'sweeps'}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    done = subprocess.run(
        [sys.executable, "jobs/tune.py", "--config", "configs/demo.yaml",
         *(a for s in sets for a in ("--set", s))],
        cwd=repo, capture_output=True, text=True, timeout=600,
        env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: MLflow tracking server http://127.0.0.1:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr and "ray" not in done.stdout.lower()
    assert not (tmp_path / "out").exists() and not (tmp_path / "sweeps").exists()


def test_a_sqlite_store_keeps_its_artifacts_next_to_the_database(tmp_path, monkeypatch):
    """Not in ./mlruns of wherever the sweep ran: the store and its artifacts move together
    (the laptop image keeps both in its volume)."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    experiment = check_tracking(uri, "artifacts")
    client = MlflowClient(uri)
    assert client.get_experiment(experiment).artifact_location == (store / "mlartifacts").as_uri()
    run = client.create_run(experiment)
    (tmp_path / "note.txt").write_text("kept", encoding="utf-8")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    assert list(store.glob("mlartifacts/*/artifacts/note.txt"))
    assert not (tmp_path / "mlruns").exists()


def test_resuming_against_a_store_without_the_sweeps_run_is_one_line(tmp_path):
    """A new shell without MLFLOW_TRACKING_URI resumed against another store: the run named
    in sweep.json is not there (an MlflowException traceback before)."""
    from ot_ray.search.sweep import SweepError, _parent_run

    (tmp_path / "sweep.json").write_text('{"parent_run_id": "0123456789abcdef"}', encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    config = load_config(None, [f"tracking.uri={uri}"])
    with pytest.raises(SweepError, match=r"sweep\.json names the MLflow run 0123456789abcdef, wh"):
        _parent_run(config, tmp_path, uri, "0", tmp_path, resume=True)


def test_a_new_sweep_gets_its_own_run_even_where_one_of_its_name_exists(tmp_path):
    """A sweep started again under the same name (its folder deleted, or its first start
    failed before Tune recorded anything) used to reattach to the old MLflow run, whose params
    and settings were another sweep's."""
    import json

    from ot_ray.search.sweep import _parent_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    config = load_config(None, [f"tracking.uri={uri}"])
    first = _parent_run(config, tmp_path / "a", uri, experiment, tmp_path, resume=False)
    second = _parent_run(config, tmp_path / "b", uri, experiment, tmp_path, resume=False)
    assert first != second
    state = json.loads((tmp_path / "b" / "sweep.json").read_text(encoding="utf-8"))
    assert state["parent_run_id"] == second
    assert "alignment.lr" not in state["settings"]  # at its default: not recorded
    assert _parent_run(config, tmp_path / "b", uri, experiment, tmp_path, resume=True) == second
    # a start that left sweep.json but no Tune state: the next start is a new sweep
    other = load_config(None, [f"tracking.uri={uri}", "alignment.lr=1e-3"])
    third = _parent_run(other, tmp_path / "b", uri, experiment, tmp_path, resume=False)
    state = json.loads((tmp_path / "b" / "sweep.json").read_text(encoding="utf-8"))
    assert third not in (first, second) and state["parent_run_id"] == third
    assert state["settings"]["alignment.lr"] == "0.001"
    assert MlflowClient(uri).get_run(third).data.params["alignment.lr"] == "0.001"


def sweep_config(tmp_path):
    """A tracking store and a sweep config with a one-parameter search, under ``tmp_path``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(
        None,
        [f"tracking.uri={uri}", f"tune.storage_path={tmp_path / 'sweeps'}", "data.languages=[de]",
         "tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3, log: true}}"],
    )  # fmt: skip
    return uri, config


@pytest.fixture
def no_cluster(monkeypatch) -> str:
    """``RAY_ADDRESS`` where no Ray cluster answers (a port nothing listens on): the real
    ``connect_ray`` refuses it in one line."""
    from clusters import free_port

    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    return address


def test_a_failed_start_leaves_no_run_and_no_sweep_record(tmp_path, no_cluster):
    """Ray that cannot be joined (or a Ctrl-C while it starts) stops a new sweep before Tune
    records anything: its parent run and sweep.json are undone, so the next start is clean."""
    from ot_ray.errors import UserError
    from ot_ray.search.sweep import run_sweep

    uri, config = sweep_config(tmp_path)

    with pytest.raises(UserError, match=rf"RAY_ADDRESS={no_cluster}: no Ray cluster answers"):
        run_sweep(config, resume=False, repo=tmp_path, connect=connect_ray)
    assert not (tmp_path / "sweeps" / config.tune.name / "sweep.json").exists()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(config.tracking.experiment).experiment_id
    assert client.search_runs([experiment]) == []  # deleted runs are not listed


def test_a_resume_that_fails_to_start_leaves_the_sweeps_run_as_it_was(tmp_path, no_cluster):
    """A resumed sweep reopened its parent run (RUNNING) before joining Ray; when the cluster
    could not be joined, the run stayed RUNNING for good, a sweep that looked alive in MLflow."""
    from ot_ray.errors import UserError
    from ot_ray.search.sweep import _parent_run, run_sweep, sweep_dir

    uri, config = sweep_config(tmp_path)
    experiment = check_tracking(uri, config.tracking.experiment)
    directory = sweep_dir(config)
    parent = _parent_run(config, directory, uri, experiment, tmp_path, resume=False)
    client = MlflowClient(uri)
    client.set_terminated(parent, "KILLED")  # an interrupted sweep, as finish_sweep leaves it
    (directory / "tuner.pkl").write_bytes(b"")  # what Tune.can_restore looks for
    (directory / "experiment_state-2026-11-28.json").write_text("{}", encoding="utf-8")

    with pytest.raises(UserError, match=rf"RAY_ADDRESS={no_cluster}: no Ray cluster answers"):
        run_sweep(config, resume=True, repo=tmp_path, connect=connect_ray)
    assert client.get_run(parent).info.status == "KILLED"
    assert (directory / "sweep.json").exists()  # still resumable


def test_resuming_with_other_settings_is_refused_with_the_keys(tmp_path):
    """The restored searcher and sample count stay the sweep's own while new trials take the
    new settings: a changed config was accepted silently while MLflow kept the old params."""
    import json

    from ot_ray.search.sweep import SweepError, _parent_run, check_same_settings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    space = "tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3, log: true}}"
    given = load_config(None, ["tune.name=s1", space])
    _parent_run(given, tmp_path, uri, experiment, tmp_path, resume=False, settings=given)
    record = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))["settings"]
    assert record["tune.search_space.alignment.lr.high"] == "0.001"
    # only what differs from the defaults, at any depth: a field a newer ot-ray adds, at its
    # default, is not a change (unset fields of an entry are not recorded)
    assert "tune.search_space.alignment.lr.step" not in record and "alignment.lr" not in record
    check_same_settings(given, tmp_path)
    for same in ("tune.storage_path=./x/..", "train.log_level=INFO", "tracking.uri=sqlite:///o"):
        check_same_settings(load_config(None, ["tune.name=s1", space, same]), tmp_path)
    changed = load_config(
        None, ["tune.name=s1", space, "alignment.lr=1e-3", "alignment.pooling=mean"]
    )
    with pytest.raises(SweepError) as caught:
        check_same_settings(changed, tmp_path)
    message = str(caught.value)
    assert "alignment.lr: (default) (sweep) -> 0.001 (now); alignment.pooling: " in message
    assert "set tune.name to start another sweep" in message and "\n" not in message
    dropped = load_config(None, ["tune.name=s1"])  # the searched entry removed
    with pytest.raises(SweepError, match=r"tune\.search_space\.alignment\.lr\.high: 0\.001 \(sw"):
        check_same_settings(dropped, tmp_path)
    state = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    del state["settings"]  # a sweep started before settings were kept: nothing to compare
    (tmp_path / "sweep.json").write_text(json.dumps(state), encoding="utf-8")
    check_same_settings(changed, tmp_path)


def test_resuming_from_another_folder_where_relative_paths_lead_elsewhere_is_refused(
    tmp_path, monkeypatch
):
    """``data.root: ./data`` reads the data next to where the command runs: a sweep resumed
    from another folder passed the settings check (the text is the same) and its new trials
    read other data than its first ones."""
    import json

    from ot_ray.search.sweep import RESOLVED, SweepError, _parent_run, check_same_settings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    space = "tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3, log: true}}"
    given = load_config(None, ["tune.name=s1", space, "data.root=./data"])
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    _parent_run(given, tmp_path, uri, experiment, tmp_path, resume=False, settings=given)
    record = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    assert record["settings"][f"data.root {RESOLVED}"] == json.dumps(str(tmp_path / "first/data"))
    check_same_settings(given, tmp_path)  # from the same folder: the same sweep
    monkeypatch.chdir(tmp_path / "second")
    with pytest.raises(SweepError) as caught:
        check_same_settings(given, tmp_path)
    message = str(caught.value)
    assert f'data.root (resolved): "{tmp_path}/first/data" (sweep) -> "{tmp_path}/second/data"' in (
        message
    )
    assert "from the folder it was started in" in message
    record["settings"] = {k: v for k, v in record["settings"].items() if RESOLVED not in k}
    (tmp_path / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
    check_same_settings(given, tmp_path)  # kept by an older ot-ray: nothing to compare


def test_a_registry_that_refuses_the_model_keeps_the_sweeps_results(tmp_path, monkeypatch):
    """Registration is the sweep's last step: its failure is one line naming where the
    results are (the summary is printed before it). The registry is a real MLflow client
    pointed at a server that is down, whose REST error quotes the whole URL, password
    included; the tracking store stays the sweep's, and the process's MLflow settings are left
    as they were."""
    from clusters import free_port
    from conftest import tiny_encoder

    from ot_ray.errors import UserError
    from ot_ray.search.report import register_best
    from ot_ray.search.sweep import SweepOutcome, TrialOutcome

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"http://alice:s3cret@127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    client = MlflowClient(uri)
    parent = client.create_run(experiment).info.run_id
    trial = client.create_run(experiment, tags={PARENT_TAG: parent, "ot_ray.trial_id": "t1"})
    client.set_terminated(trial.info.run_id, "FINISHED")
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    tiny_encoder(tmp_path / "trials" / "t1" / "aligned_encoder")
    best = TrialOutcome("t1", {}, {}, "finished")
    outcome = SweepOutcome("s", tmp_path, parent, experiment, uri, [best], best)

    with pytest.raises(UserError) as refused:
        register_best(outcome, "enc")
    message = str(refused.value)
    assert message.startswith("registering the best trial's encoder as 'enc' failed (API request")
    assert message.endswith(f"the sweep's results are kept (MLflow run {parent}, {tmp_path})")
    assert "s3cret" not in message and "alice:***@127.0.0.1" in message
    assert client.get_run(trial.info.run_id).info.status == "FINISHED"  # not failed by it
    assert "MLFLOW_TRACKING_URI" not in os.environ  # mlflow.set_tracking_uri writes it there

    # a finished sweep resumed: its model is registered already, not a second time
    client.set_tag(parent, "registered_model_name", "enc")
    client.set_tag(parent, "registered_model_version", "3")
    assert register_best(outcome, "enc") == "3"
    # registered by an older ot-ray (no name tag): registered under the name it resumes with
    client.delete_tag(parent, "registered_model_name")
    assert register_best(outcome, "enc") == "3"
    # ... but under another name it is registered (the old name's version is not returned)
    client.set_tag(parent, "registered_model_name", "enc")
    with pytest.raises(UserError, match="'other' failed"):
        register_best(outcome, "other")


def test_a_deleted_experiment_is_refused_before_anything_starts(tmp_path):
    """MLflow keeps a deleted experiment's name and refuses runs in it: the sweep used to fail
    with a traceback when it opened its run, after the checks."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(check_tracking(uri, "old"))
    with pytest.raises(TrackingError, match=r"experiment 'old' in .* is deleted: restore it"):
        check_tracking(uri, "old")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["task.tasks=[]"],
            r"tune\.metric: 'objective' averages tune\.objective .* task\.tasks \[\] runs none",
        ),
        (
            ["task.tasks=[xnli]", "tune.metric=xquad/dev/f1/avg_targets"],
            r"'xquad/dev/f1/avg_targets' is measured by the task xquad, which task\.tasks",
        ),
        (["tune.objective=[]"], r"averages tune\.objective, which is empty"),
        # the paper config's XQuAD dev holds the pivot only: the average over the targets
        # was dropped from the objective without a word
        (
            ["data.xquad.dev={path: d.json, languages: [en]}"],
            r"tune\.objective: xquad/dev/f1/avg_targets is never measured: the languages scored "
            r"there are \['en'\] \(data\.eval_languages and data\.xquad\.dev\.languages\), "
            r"and avg_targets averages none of them",
        ),
        (
            [
                "data.xnli.dev={path: d.tsv, languages: [en]}",
                "tune.objective=[xquad/dev/f1/avg_targets]",
                "tune.metric=xnli/dev/acc/de",
            ],
            r"tune\.metric: xnli/dev/acc/de is never measured: .* de is not one of them",
        ),
        (
            ["tune.metric=align/retrieval_acc/en"],
            r"tune\.metric: align/retrieval_acc/en is never measured: .* data\.parallel\.dev",
        ),
    ],
)
def test_a_sweep_on_a_metric_no_trial_measures_is_refused_before_it_starts(
    tmp_path, overrides, message
):
    """Every trial's value was NaN: the sweep ran them all, then ended with no best trial."""
    from ot_ray.search.sweep import SweepError, check_sweep_request

    space = "tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3, log: true}}"
    base = [f"tune.storage_path={tmp_path}", "tune.name=s", space, "data.languages=[de]"]
    with pytest.raises(SweepError, match=message):
        check_sweep_request(load_config(None, [*base, *overrides]), resume=False)
    assert not (tmp_path / "s").exists()
    alignment_only = [*base, "task.tasks=[]", "tune.metric=align/retrieval_acc/avg_targets"]
    assert check_sweep_request(load_config(None, alignment_only), resume=False)
    # stage 1's own figures are not scored per language
    on_the_loss = [*base, "task.tasks=[]", "tune.metric=align/loss", "tune.mode=min"]
    assert check_sweep_request(load_config(None, on_the_loss), resume=False)
    xnli_only = [*base, "task.tasks=[xnli]"]  # the objective averages what is measured
    assert check_sweep_request(load_config(None, xnli_only), resume=False)
    pivot_dev = [*base, "data.xquad.dev={path: d.json, languages: [en]}"]
    on_the_pivot = [*pivot_dev, "tune.objective=[xnli/dev/acc/avg_targets, xquad/dev/f1/en]"]
    assert check_sweep_request(load_config(None, on_the_pivot), resume=False)


def test_a_failed_trials_reason_hides_the_uris_secrets():
    """MLflow's REST errors quote the whole URI; the reason goes into summary.md."""
    from ot_ray.search.sweep import error_reason

    error = RuntimeError(
        "Traceback ...\nMlflowException: API request to http://alice:s3cret@10.0.0.5:5000/api/"
        "2.0/mlflow/runs/create failed with exception HTTPConnectionPool"
    )
    reason = error_reason(error)
    assert "s3cret" not in reason and "alice:***@10.0.0.5" in reason
    wrapped = RuntimeError("...\nRuntimeError: trial t1 failed: http://bob:pw@h/x refused")
    assert error_reason(wrapped) == "trial t1 failed: http://bob:***@h/x refused"


def test_a_sweep_stopped_before_tunes_first_step_is_not_resumable(tmp_path):
    """Tune writes its Tuner when built and its experiment state at the first step of fit: a
    folder with only the first cannot be restored (a traceback inside Tune), so it neither
    blocks a new start nor is offered to --resume."""
    from ot_ray.search.sweep import SweepError, check_sweep_request

    config = load_config(
        None,
        [f"tune.storage_path={tmp_path}", "tune.name=s", "data.languages=[de]",
         "tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3, log: true}}"],
    )  # fmt: skip
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "tuner.pkl").write_bytes(b"")
    with pytest.raises(SweepError, match=r"nothing to resume at .*s \(no Tune experiment state"):
        check_sweep_request(config, resume=True)
    assert check_sweep_request(config, resume=False) == tmp_path / "s"
    (tmp_path / "s" / "experiment_state-2026-11-27_21-00-00.json").write_text("{}")
    with pytest.raises(SweepError, match=r"a sweep named 's' exists"):
        check_sweep_request(config, resume=False)


def test_closing_a_sweep_charts_the_scores_there_are_and_keeps_a_pruned_trials_outputs(tmp_path):
    """The chart kept a panel only if every evaluated language had its score: in the paper
    config QA dev is English alone, and with no XNLI score for one language either, no panel
    was left and closing the sweep crashed (runs left RUNNING, no summary). A pruned trial's
    run had no artifacts at all (its plots only in its Ray checkpoint)."""
    from ot_ray.search.report import finish_sweep
    from ot_ray.search.sweep import SweepOutcome, TrialOutcome

    config = load_config(Path(__file__).resolve().parent.parent / "configs" / "paper_mbert.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    client = MlflowClient(uri)
    parent = client.create_run(experiment).info.run_id
    run = client.create_run(experiment, tags={PARENT_TAG: parent, "ot_ray.trial_id": "t1"})
    dev = {"objective": 70.0, "xnli/dev/acc/en": 80.0, "xnli/dev/acc/de": 70.0}
    best = TrialOutcome("t1", {}, {**dev, "xquad/dev/f1/en": 75.0}, "finished")
    # a pruned trial never uploads its outputs: those of its last checkpoint are logged for it
    cut = client.create_run(experiment, tags={PARENT_TAG: parent, "ot_ray.trial_id": "t2"})
    checkpoint = tmp_path / "ray" / "checkpoint_000003"
    (checkpoint / "predictions" / "plots").mkdir(parents=True)
    (checkpoint / "predictions" / "plots" / "transport-dev-de-0.png").write_bytes(b"png")
    stopped = {"objective": 50.0, "milestone": 1, "checkpoint_path": str(checkpoint)}
    pruned = TrialOutcome("t2", {}, stopped, "pruned")
    outcome = SweepOutcome("s", tmp_path, parent, experiment, uri, [best, pruned], best)
    assert "## Best trial t1" in finish_sweep(outcome, config, config)
    plots = [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
    assert plots == ["plots/dev_scores_vs_baseline.png"]
    assert client.get_run(parent).info.status == "FINISHED"
    kept = [a.path for a in client.list_artifacts(cut.info.run_id, "predictions/plots")]
    assert kept == ["predictions/plots/transport-dev-de-0.png"]
    assert client.get_run(cut.info.run_id).info.status == "KILLED"


def test_a_failed_upload_after_training_is_a_warning_and_the_sweeps_end_retries_it(
    tmp_path, monkeypatch, caplog
):
    """The upload and closing after ``trainer.fit()`` were unguarded: an MLflow hiccup there
    failed a trained trial (ERROR in Tune: out of the best-trial choice, never rerun on
    --resume). Its run is left open, and closing the sweep uploads its files from its folder."""
    from ot_ray.search.report import finish_sweep
    from ot_ray.search.sweep import SweepOutcome, TrialOutcome
    from ot_ray.search.trial_fn import close_finished_run, trial_output_dir

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    client = MlflowClient(uri)
    parent = client.create_run(experiment).info.run_id
    run_id = client.create_run(experiment, tags={PARENT_TAG: parent, TRIAL_TAG: "t1"}).info.run_id
    out = trial_output_dir(tmp_path / "sweep", "t1")
    (out / "predictions").mkdir(parents=True)
    (out / "metrics.json").write_text('{"objective": 70.0}')
    (out / "predictions" / "xnli-test-de.tsv").write_text("0\tentailment\n")

    def refused(*args, **kwargs):
        raise RuntimeError("API request to http://mlflow:5000/api/2.0/mlflow-artifacts failed: 503")

    with monkeypatch.context() as patched:
        patched.setattr(MlflowClient, "log_artifact", refused)
        with caplog.at_level("WARNING", logger="ot_ray.search.trial_fn"):
            close_finished_run(client, run_id, out)
    warned = [r.getMessage() for r in caplog.records if r.name == "ot_ray.search.trial_fn"]
    assert len(warned) == 1 and f"MLflow did not take the files of run {run_id}" in warned[0]
    assert f"they are in {out}, and the end of the sweep uploads them again" in warned[0]
    assert client.get_run(run_id).info.status == "RUNNING"  # the sign for the retry
    config = load_config(None, ["task.tasks=[xnli]"])
    trial = TrialOutcome("t1", {}, {"objective": 70.0, "stage": "done"}, "finished")
    outcome = SweepOutcome("s", tmp_path / "sweep", parent, experiment, uri, [trial], trial)
    finish_sweep(outcome, config, config)
    uploaded = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "predictions"} <= uploaded
    kept = [a.path for a in client.list_artifacts(run_id, "predictions")]
    assert kept == ["predictions/xnli-test-de.tsv"]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_tracking_outage_mid_trial_is_a_warning_not_a_failed_trial(monkeypatch, caplog):
    """Ray Train fails a run whose callback raises: one refused log_batch killed the trial,
    and the error (which quotes the URL) could carry the password into the failure reason."""
    from ot_ray.search.tracking import MLflowMetricsCallback

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    callback = MLflowMetricsCallback(f"http://alice:s3cret@127.0.0.1:{free_port()}", "r1")
    with caplog.at_level("WARNING", logger="ot_ray.search.tracking"):
        callback.after_report(None, [{"global_step": 3, "xnli/loss": 0.5}], None)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("MLflow did not take the metrics of step 3")
    assert "s3cret" not in warned[0] and "alice:***@127.0.0.1" in warned[0]  # the URL, redacted


def test_the_fluent_tracking_uri_is_set_for_its_block_only(tmp_path, monkeypatch):
    """MLflow's fluent API pointed at a sweep's store while its best model is logged; the
    process's own setting, from the environment or none, is what it was before."""
    import mlflow

    from ot_ray.search.tracking import fluent_tracking_uri

    block, before, later = (f"sqlite:///{tmp_path / name}.db" for name in ("block", "a", "b"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", before)
    with fluent_tracking_uri(block):
        assert mlflow.get_tracking_uri() == block
    assert os.environ["MLFLOW_TRACKING_URI"] == before == mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", later)  # read from the environment still
    assert mlflow.get_tracking_uri() == later
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with fluent_tracking_uri(block):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ and not mlflow.is_tracking_uri_set()


def test_the_printed_way_to_the_runs_fits_the_tracking_uri():
    """A tracking server was printed as ``mlflow ui --backend-store-uri http://...``: no store."""
    from ot_ray.cli import mlflow_view_hint

    store = "sqlite:////runs/mlflow.db"
    assert (
        mlflow_view_hint(store)
        == f"mlflow ui --backend-store-uri {store} (then http://127.0.0.1:5000)"
    )
    server = "http://mlflow.ot-ray.svc.cluster.local:5000"
    assert mlflow_view_hint(server) == f"open {server} (a tracking server)"
