"""A real Orthanc on localhost for the PACS tests, and small studies with distinctive identifiers.

The ``orthanc`` fixture starts the Debian ``orthanc`` server (with the ``orthanc-dicomweb``
plugin) once per test session on free ports with a temporary storage folder: DICOMweb at
``/dicom-web``, HTTP basic authentication, DIMSE with AE title ``ORTHANC`` that checks the called
AE title, our test SCP registered as modality ``RECONSCU`` for C-MOVE, and a Lua filter that refuses
instances whose SeriesDescription contains ``REJECT`` (the "push rejected" fault). Tests skip with
the reason when the binary or the plugin is missing or the server does not start.

``pacs`` (per test) empties the server, points ``RECON_PACS_*`` at it and sends the cache, config
and de-identification key to temporary folders.

Without the PACS libraries (pynetdicom, dicomweb-client, dicom-anonymizer) the tests here are not
collected, and the report header says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

PACS_LIBRARIES = ("pynetdicom", "dicomweb_client", "dicomanonymizer", "requests")
MISSING = [m for m in PACS_LIBRARIES if importlib.util.find_spec(m) is None]
if MISSING:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header() -> list[str]:
    if MISSING:
        return [f"tests/pacs not collected: {', '.join(MISSING)} not installed"]
    return []


REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "ct"
PLUGIN_PLACES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so")
USER, PASSWORD = "recon", "pacs-test-secret"
ORTHANC_AET, SCU_AET = "ORTHANC", "RECONSCU"

#: Identifiers of the test patient: distinctive, so a scan of outputs finds any leak.
IDENTITY = {
    "PatientName": "Zyxwvutsky^Quentinella",
    "PatientID": "PID-7731-XQZ",
    "PatientBirthDate": "19230417",
    "AccessionNumber": "ACC99812QZ",
}
LEAK_STRINGS = ("Zyxwvutsky", "Quentinella", "PID-7731-XQZ", "19230417", "1923-04-17", "ACC99812QZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: where it listens and how to reach it."""

    http_port: int
    dicom_port: int
    scu_port: int
    root: Path
    tls: bool = False
    ca_file: Path | None = None

    @property
    def rest(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"127.0.0.1:{self.dicom_port}:{ORTHANC_AET}"

    @property
    def verify(self) -> str | bool:
        """What its REST API is verified against: the test CA over HTTPS."""
        return str(self.ca_file) if self.tls and self.ca_file else True

    def get(self, path: str) -> object:
        import requests

        r = requests.get(self.rest + path, auth=(USER, PASSWORD), timeout=10, verify=self.verify)
        r.raise_for_status()
        return r.json()

    def upload(self, files: list[Path]) -> None:
        import requests

        for f in files:
            r = requests.post(self.rest + "/instances", data=f.read_bytes(), auth=(USER, PASSWORD), timeout=10,
                              verify=self.verify)
            r.raise_for_status()

    def clear(self) -> None:
        import requests

        for pid in self.get("/patients"):  # type: ignore[union-attr]
            requests.delete(f"{self.rest}/patients/{pid}", auth=(USER, PASSWORD), timeout=10,
                            verify=self.verify).raise_for_status()

    def count_instances(self) -> int:
        return len(self.get("/instances"))  # type: ignore[arg-type]


def _plugin() -> str | None:
    return next((p for p in PLUGIN_PLACES if Path(p).is_file()), None)


@contextlib.contextmanager
def run_orthanc(root: Path, server: Orthanc, **extra: object) -> Iterator[Orthanc]:
    """Start Orthanc for ``server`` with storage under ``root`` (``extra``: more configuration), wait
    until its REST API answers, and stop it afterwards; skips the test with a reason when it cannot."""
    import requests

    binary, plugin = shutil.which("Orthanc"), _plugin()
    if binary is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    if plugin is None:
        pytest.skip("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    (root / "filter.lua").write_text(
        "function ReceivedInstanceFilter(dicom, origin, info)\n"
        "  local d = dicom.SeriesDescription\n"
        "  if d ~= nil and string.find(d, 'REJECT') then return false end\n"
        "  return true\n"
        "end\n"
    )
    config = {
        "Name": "recon-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "HttpPort": server.http_port, "DicomPort": server.dicom_port, "DicomAet": ORTHANC_AET,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {"recon": [SCU_AET, "127.0.0.1", server.scu_port]},
        "DicomCheckCalledAet": True, "LuaScripts": [str(root / "filter.lua")], "StorageCompression": False,
        "HttpTimeout": 10, "DicomScuTimeout": 10, "ConcurrentJobs": 1, **extra,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    verify = server.verify
    with open(root / "orthanc.log", "wb") as log:
        proc = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    pytest.skip(f"Orthanc exited at start (status {proc.returncode}); see {root / 'orthanc.log'}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(server.rest + "/system", auth=(USER, PASSWORD), timeout=1, verify=verify).ok:
                        break
                if time.monotonic() > deadline:
                    pytest.skip(f"Orthanc did not answer within 30 s; see {root / 'orthanc.log'}")
                time.sleep(0.1)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _die_with_parent() -> None:
    """In the child: be killed when the test process dies, so no server outlives a killed run (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    root = tmp_path_factory.mktemp("orthanc")
    with run_orthanc(root, Orthanc(http_port=free_port(), dicom_port=free_port(), scu_port=free_port(), root=root)) as s:
        yield s


@pytest.fixture(scope="session")
def https_orthanc(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """The server behind a TLS-terminating reverse proxy with a self-signed certificate for 127.0.0.1
    (how Orthanc is usually deployed; Debian's Orthanc 1.10 crashes serving HTTPS itself)."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate for the TLS server")
    root = tmp_path_factory.mktemp("tls")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(root / "key.pem"), "-out",
                    str(root / "cert.pem")], check=True, capture_output=True)

    class Forward(BaseHTTPRequestHandler):
        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            r = requests.request(self.command, orthanc.rest + self.path, data=body, headers=headers, timeout=10)
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        do_GET = do_POST = _relay

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(root / "cert.pem", root / "key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Orthanc(http_port=int(httpd.server_address[1]), dicom_port=orthanc.dicom_port, scu_port=orthanc.scu_port,
                      root=root, tls=True, ca_file=root / "cert.pem")
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Certificates:
    """A private CA and a server certificate it signed for 127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that did not sign the server's certificate

    @property
    def cert_and_key(self) -> Path:
        """Certificate and key in one file (Orthanc's ``SslCertificate``)."""
        both = self.cert.with_name("server-and-key.pem")
        if not both.is_file():
            both.write_text(self.cert.read_text() + self.key.read_text())
        return both


def make_certificates(root: Path) -> Certificates:
    """Generate the CA, the server certificate and another CA with ``openssl`` under ``root``; skips
    the test when ``openssl`` is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificates for the TLS server")
    root.mkdir(parents=True, exist_ok=True)

    def run(*argv: str) -> None:
        subprocess.run([openssl, *argv], check=True, capture_output=True, cwd=root)

    for name in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN=recon test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-extfile", "san.cnf", "-out", "server.pem")
    return Certificates(ca=root / "ca.pem", cert=root / "server.pem", key=root / "server.key",
                        other_ca=root / "other-ca.pem")


def orthanc_version() -> str:
    """``Orthanc --version``'s first line (e.g. ``Orthanc 1.10.1``), or ``Orthanc``."""
    binary = shutil.which("Orthanc")
    if binary is None:
        return "Orthanc"
    run = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    return (run.stdout.splitlines() or ["Orthanc"])[0].strip()


@pytest.fixture(scope="session")
def dicom_tls_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Certificates]]:
    """A second Orthanc whose DIMSE port speaks only DICOM TLS (``DicomTlsEnabled``), with a server
    certificate from a private CA; no client certificate is required. Its REST API stays plain HTTP."""
    root = tmp_path_factory.mktemp("orthanc-dicom-tls")
    certs = make_certificates(root / "pki")
    server = Orthanc(http_port=free_port(), dicom_port=free_port(), scu_port=free_port(), root=root, ca_file=certs.ca)
    with run_orthanc(root, server, DicomTlsEnabled=True, DicomTlsCertificate=str(certs.cert),
                     DicomTlsPrivateKey=str(certs.key), DicomTlsTrustedCertificates=str(certs.ca),
                     DicomTlsRemoteCertificateRequired=False) as s:
        yield s, certs


@pytest.fixture(scope="session")
def native_https_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Certificates]]:
    """A third Orthanc serving HTTPS itself (``SslEnabled``) with a certificate from a private CA;
    skips where the installed Orthanc cannot (Debian's 1.10.1 exits on its first HTTPS request)."""
    root = tmp_path_factory.mktemp("orthanc-https")
    certs = make_certificates(root / "pki")
    server = Orthanc(http_port=free_port(), dicom_port=free_port(), scu_port=free_port(), root=root, tls=True,
                     ca_file=certs.ca)
    try:
        context = run_orthanc(root, server, SslEnabled=True, SslCertificate=str(certs.cert_and_key))
        s = context.__enter__()
    except pytest.skip.Exception as e:
        pytest.skip(f"{orthanc_version()} cannot serve HTTPS itself (SslEnabled): {e.msg}; HTTPS is tested behind a "
                    "TLS proxy (https_orthanc)")
    try:
        yield s, certs
    finally:
        context.__exit__(None, None, None)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No PACS settings from the machine: config, cache and key in temporary folders."""
    for var in ("RECON_PACS_URL", "RECON_PACS_DIMSE", "RECON_PACS_CONFIG", "RECON_PACS_USERNAME",
                "RECON_PACS_PASSWORD", "RECON_PACS_CALLING_AET", "RECON_PACS_RETRIEVE", "RECON_PACS_MOVE_PORT",
                "RECON_PACS_CA_BUNDLE", "RECON_PACS_TLS", "RECON_PACS_TIMEOUT", "RECON_PACS_CACHE", "RECON_DEID_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def pacs(orthanc: Orthanc, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Orthanc:
    """The server, emptied, as the DICOMweb PACS of the environment (DIMSE tests set their own)."""
    orthanc.clear()
    monkeypatch.setenv("RECON_PACS_URL", orthanc.dicomweb)
    monkeypatch.setenv("RECON_PACS_USERNAME", USER)
    monkeypatch.setenv("RECON_PACS_PASSWORD", PASSWORD)
    monkeypatch.setenv("RECON_PACS_CALLING_AET", SCU_AET)
    monkeypatch.setenv("RECON_PACS_TIMEOUT", "10")
    return orthanc


def use_dimse(monkeypatch: pytest.MonkeyPatch, server: Orthanc, *, retrieve: str = "get", dimse: str | None = None) -> None:
    """Make the environment's PACS the server's DIMSE service (C-GET, or C-MOVE to our SCP port)."""
    monkeypatch.delenv("RECON_PACS_URL", raising=False)
    monkeypatch.setenv("RECON_PACS_DIMSE", dimse or server.dimse)
    monkeypatch.setenv("RECON_PACS_RETRIEVE", retrieve)
    if retrieve == "move":
        monkeypatch.setenv("RECON_PACS_MOVE_PORT", str(server.scu_port))


def make_study(folder: Path, *, n: int = 4, size: int = 128, identity: dict[str, str] | None = None,
               series_description: str = "Test chest CT") -> list[Path]:
    """A small CT series from the bundled sample (downsampled to ``size``), with fresh UIDs, the
    given identity, an institution, a private element and a study date; returns its files."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for i, src in enumerate(sorted(SAMPLE.glob("*.dcm"))[:n]):
        ds = pydicom.dcmread(src)
        step = ds.Rows // size
        pixels = ds.pixel_array[::step, ::step].astype(np.int16)
        ds.PixelData = pixels.tobytes()
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelSpacing = [float(v) * step for v in ds.PixelSpacing]
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for kw, value in (identity or IDENTITY).items():
            setattr(ds, kw, value)
        ds.StudyDate, ds.StudyTime = "20240312", "101500"
        ds.SeriesDescription = series_description
        ds.InstitutionName = "Quentinella Memorial Hospital"
        block = ds.private_block(0x0009, "RECON TEST", create=True)
        block.add_new(0x01, "LO", IDENTITY["PatientID"])
        path = folder / f"IM{i + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


@pytest.fixture
def study_files(tmp_path: Path) -> list[Path]:
    return make_study(tmp_path / "source")


@pytest.fixture
def uploaded(pacs: Orthanc, study_files: list[Path]) -> tuple[str, list[Path]]:
    """The test study stored on the server: ``(StudyInstanceUID, files)``."""
    pacs.upload(study_files)
    return str(pydicom.dcmread(study_files[0], stop_before_pixels=True).StudyInstanceUID), study_files


class DroppingProxy:
    """A TCP relay to ``127.0.0.1:upstream`` that cuts every connection once ``limit`` bytes have
    come back from the server in all (then refuses new ones): a connection dropped mid-transfer."""

    def __init__(self, upstream: int, limit: int):
        self.upstream, self.limit, self.sent = upstream, limit, 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> DroppingProxy:
        self._listener.settimeout(0.2)
        t = threading.Thread(target=self._serve, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.sent >= self.limit:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            for src, dst, count in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, count, client, server), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool, *both: socket.socket) -> None:
        src.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(16384)
                except TimeoutError:
                    continue
                if not data:
                    break
                if count:
                    with self._lock:
                        room = self.limit - self.sent
                        self.sent += len(data)
                    if room <= 0:
                        break
                    data = data[:room]
                dst.sendall(data)
                if count and self.sent >= self.limit:
                    break
        except OSError:
            pass
        finally:
            for s in both:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
