"""The database URL and secrets.test against a real local PostgreSQL.

The server is started once per session with SSL on (a self-signed
certificate made here) and a role whose password holds `@ # ! / ? %` and a
space. Tests run as root in CI, and PostgreSQL refuses to run as root, so
the server runs as the `postgres` OS user that the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tasks import probes, values
from tasks.settings import Secret

pytestmark = pytest.mark.postgres

ROLE = "octo_app"
PASSWORD = "p@ss #!/?% w0rd"


@dataclass(frozen=True)
class Server:
    port: int
    socket_dir: Path

    def url(
        self, *, user: str = ROLE, password: str = PASSWORD, sslmode: str = "require"
    ) -> str:
        return values.build_db_url(
            user=user,
            password=password,
            host="127.0.0.1",
            port=self.port,
            sslmode=sslmode,
        )


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (apt-get install postgresql; .ci/run does)")
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the server's test certificate")
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0

    def run(*cmd: str) -> None:
        argv = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)

    # Not under pytest's tmp folder: that one is root-only, and the server's
    # user must reach its files.
    root = Path(tempfile.mkdtemp(prefix="octo-pg-"))
    root.chmod(0o755)
    data, port = root / "data", _free_port()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(root / "server.key"),
         "-out", str(root / "server.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (root / "server.key").chmod(0o600)
    if as_root:
        shutil.chown(root, "postgres")
        for name in ("server.key", "server.crt"):
            shutil.chown(root / name, "postgres")

    run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust"
    )
    # Only TLS connections from 127.0.0.1 may log in, as on Supabase with
    # SSL enforcement on; a plain one finds no pg_hba.conf entry.
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        encoding="utf-8",
    )
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
        f"-c ssl=on -c ssl_cert_file={root / 'server.crt'} "
        f"-c ssl_key_file={root / 'server.key'}"
    )
    pg_ctl = str(bin_dir / "pg_ctl")
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        run(
            str(bin_dir / "psql"), "-h", str(root), "-p", str(port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1",
            "-c", f"create role {ROLE} login password '{PASSWORD}'",
        )  # fmt: skip
        yield Server(port=port, socket_dir=root)
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_built_url_connects_over_tls(postgres):
    with psycopg.connect(postgres.url(), connect_timeout=10) as conn:
        row = conn.execute(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()

    assert row == (True,)


def test_probe_accepts_the_built_url(postgres):
    outcome = probes.probe_database(Secret(postgres.url()), timeout=10)

    assert outcome.verdict == probes.OK, outcome.evidence
    assert "select 1 answered by PostgreSQL" in outcome.evidence


@pytest.mark.parametrize(
    ("url_args", "expected"),
    [
        pytest.param(
            {"password": "wrong pw #1"}, "db-password-failed", id="wrong-password"
        ),
        pytest.param({"user": "nobody"}, "db-password-failed", id="wrong-user"),
        pytest.param({"sslmode": "disable"}, "db-ssl-required", id="no-ssl"),
    ],
)
def test_probe_classifies_refusals(postgres, url_args, expected):
    outcome = probes.probe_database(Secret(postgres.url(**url_args)), timeout=10)

    assert outcome.verdict == probes.FAILED
    assert [d.id for d in outcome.diagnoses] == [expected]
    assert PASSWORD not in outcome.evidence
    assert url_args.get("password", PASSWORD) not in outcome.evidence


def test_db_url_task_builds_a_url_secrets_test_connects_with(inv, project, postgres):
    built = inv(
        "db.url", "--host", "127.0.0.1", "--port", str(postgres.port), "--role", ROLE,
        stdin=PASSWORD + "\n",
    )  # fmt: skip

    tested = inv("secrets.test")

    assert built.code == 0, built.output
    assert "sslmode=require" in (project / ".env").read_text(encoding="utf-8")
    assert tested.code == 0, tested.output
    assert (
        "✓ database (SUPABASE_DB_URL): select 1 answered by PostgreSQL" in tested.stderr
    )
    assert "w0rd" not in built.output + tested.output


def test_secrets_test_diagnoses_a_wrong_password(inv, project, postgres):
    url = postgres.url(password="Wrong-Sentinel-pw")
    (project / ".env").write_text(f"SUPABASE_DB_URL='{url}'\n", encoding="utf-8")

    result = inv("secrets.test")

    assert result.code == 1
    assert "password authentication failed" in result.stderr
    assert "diagnosis: The server refused the password" in result.stderr
    assert "Wrong-Sentinel-pw" not in result.output
