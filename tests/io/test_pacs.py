"""igikit pacs against a real Orthanc (Debian's ``orthanc`` package), started here on loopback ports.

The Orthanc fixture writes a temporary configuration (DICOM and HTTP on free loopback ports, a
temporary storage folder, no plugins, igikit's AE title registered as a modality at the port of
its C-MOVE storage SCP, unknown AE titles refused) and runs the ``Orthanc`` binary on it directly,
so the Debian service and its default configuration play no part. Without the binary the Orthanc
tests skip, saying so; ``make test`` installs it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from igikit.cli import main
from igikit.core.image import Image
from igikit.errors import InputError
from igikit.io import dicomdoc, pacs
from igikit.io.dicom import new_dataset, patient_plane, read_dicom, set_plane, write_dicom_series
from igikit.io.dicomrt import read_rtdose
from igikit.io.image import read_image, write_image
from igikit.sim.spect import lu177_spect_phantom
from tests.conftest import assert_input_error, run_cli

ORTHANC = shutil.which("Orthanc")
needs_orthanc = pytest.mark.skipif(
    ORTHANC is None, reason="Orthanc binary not found (Debian package 'orthanc'; `make test` installs it)"
)

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"


# ------------------------------------------------------------------------------------- Orthanc
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class OrthancServer:
    node: pacs.DicomNode
    http_port: int
    store_port: int
    log: Path

    def rest(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def args(self, aet: str | None = None) -> list[str]:
        """The node options of ``igikit pacs``."""
        return ["--host", "127.0.0.1", "--port", str(self.node.port), "--aet", aet or self.node.calling_aet,
                "--called-aet", self.node.called_aet, "--timeout-s", "20"]


def _start_orthanc(folder: Path) -> tuple[subprocess.Popen[bytes], OrthancServer]:
    dicom_port, http_port, store_port = _free_ports(3)
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "igikit-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomCheckCalledAet": True,
        # Only the registered modality may associate: unknown AE titles are rejected.
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalities": {"igikit": ["IGIKIT", "127.0.0.1", store_port]},
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2), encoding="utf-8")
    log = folder / "orthanc.log"
    assert ORTHANC is not None
    with log.open("wb") as out:
        proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    server = OrthancServer(pacs.DicomNode("127.0.0.1", dicom_port, "ORTHANC", "IGIKIT", 20.0), http_port,
                           store_port, log)
    return proc, server


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A fresh Orthanc on free loopback ports, stopped after the module's tests."""
    if ORTHANC is None:
        pytest.skip("Orthanc binary not found (Debian package 'orthanc'; `make test` installs it)")
    for attempt in range(3):  # a port taken between choosing and binding: try other ports
        proc, server = _start_orthanc(tmp_path_factory.mktemp(f"orthanc{attempt}"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if server.rest("/system")["DicomPort"] == server.node.port:
                    break
            except OSError:
                time.sleep(0.2)
        if proc.poll() is None:
            try:
                pacs.echo(server.node)
                break
            except pacs.PacsError:
                _stop(proc)
        else:
            proc.wait()
    else:
        pytest.fail("Orthanc did not start: " + server.log.read_text(errors="replace")[-2000:])
    try:
        yield server
    finally:
        _stop(proc)


# ---------------------------------------------------------------------- a study from a "scanner"
def _patient(patient_id: str) -> pydicom.Dataset:
    ref = pydicom.Dataset()
    ref.PatientName = "Phantom^Lu177"
    ref.PatientID = patient_id
    ref.PatientBirthDate = "19600101"
    ref.PatientSex = "O"
    ref.StudyInstanceUID = pydicom.uid.generate_uid()
    ref.FrameOfReferenceUID = pydicom.uid.generate_uid()
    ref.StudyDate = "20250102"
    ref.StudyTime = "101500"
    ref.StudyID = "1"
    ref.AccessionNumber = "A" + patient_id[-6:]
    return ref


def write_pet_series(image: Image, folder: Path, reference: pydicom.Dataset) -> list[Path]:
    """The image as a PET Image Storage series in Bq/mL (one file per slice), as a scanner exports it."""
    files = write_dicom_series(image, folder, modality="PT", reference=reference,
                               series_description="Lu-177 SPECT/CT quantitative (as PT)")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Units = "BQML"
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.CountsSource = "EMISSION"
        ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
        ds.DecayCorrection = "NONE"
        del ds.ConversionType
        ds.save_as(f, enforce_file_format=True)
    return files


def write_nm_file(image: Image, path: Path, reference: pydicom.Dataset) -> None:
    """The image as one multi-frame NM Image Storage file (RECON TOMO, Bq/mL): reconstructed SPECT."""
    vol = patient_plane(image)
    arr = np.asarray(vol.array, dtype=np.float64)
    slope = float(arr.max()) / 65535.0
    ds = new_dataset(NM_IMAGE_STORAGE, "NM", reference)
    ds.SeriesDescription = "Lu-177 SPECT recon"
    ds.SeriesNumber = 2
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    set_plane(ds, vol, 0)
    ds.SpacingBetweenSlices = ds.SliceThickness
    ds.NumberOfFrames = arr.shape[0]
    ds.NumberOfSlices = arr.shape[0]
    ds.SliceVector = list(range(1, arr.shape[0] + 1))
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x0054, 0x0080)
    ds.Units = "BQML"
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = "0"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape[1:]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.rint(arr / float(ds.RescaleSlope)).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


@dataclass(frozen=True)
class Study:
    folder: Path
    pet: Path
    nm: Path
    labels: Path
    reference: pydicom.Dataset
    image: Image


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """A Lu-177 SPECT phantom 24 h after administration as a PT series and an NM file of one study."""
    folder = tmp_path_factory.mktemp("scanner")
    phantom = lu177_spect_phantom(times_h=(24.0,), shape_zyx=(34, 30, 44), spacing_mm=8.0, seed=3)
    ref = _patient(f"IGK-{uuid.uuid4().hex[:10]}")
    pet = folder / "pet"
    write_pet_series(phantom.images[0], pet, ref)
    (folder / "nm").mkdir()
    nm = folder / "nm" / "spect.dcm"
    write_nm_file(phantom.images[0], nm, ref)
    labels = folder / "labels.nii.gz"
    write_image(phantom.labels, labels)
    return Study(folder, pet, nm, labels, ref, phantom.images[0])


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf))


def _cli_error(*argv: str) -> str:
    """Run ``igikit ARGV`` in its own process; it must fail as bad input: one stderr line, exit 2."""
    result = run_cli(*argv, timeout=120)
    assert_input_error(result)
    return result.stderr.strip()


# ----------------------------------------------------------------------------- the round trip
@needs_orthanc
def test_echo(orthanc: OrthancServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert pacs.echo(orthanc.node) > 0
    code, out, err = _run(capsys, "pacs", "echo", *orthanc.args())
    assert code == 0, err
    assert "success" in out and str(orthanc.node.port) in out


@needs_orthanc
def test_round_trip_push_find_pull_dose_push_results(
    orthanc: OrthancServer, study: Study, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = str(study.reference.StudyInstanceUID)
    nz = study.image.size[2]

    # push the scanner's study (a folder of per-slice PT files and a multi-frame NM file)
    code, out, err = _run(capsys, "pacs", "push", str(study.pet), str(study.nm), *orthanc.args())
    assert code == 0, err
    assert f"{nz + 1} of {nz + 1} instance(s) stored" in out

    # find it: by patient at study level, by study and modality at series level
    code, out, err = _run(capsys, "pacs", "find", "--patient-id", str(study.reference.PatientID),
                          "--json", str(tmp_path / "find.json"), *orthanc.args())
    assert code == 0, err
    found = json.loads((tmp_path / "find.json").read_text())["matches"]
    assert [m["StudyInstanceUID"] for m in found] == [uid]
    assert found[0]["NumberOfStudyRelatedInstances"] == str(nz + 1)
    assert set(found[0]["ModalitiesInStudy"].split("\\")) == {"PT", "NM"}
    series = pacs.find(orthanc.node, level="SERIES", study_uid=uid, modality="PT")
    assert len(series) == 1 and series[0]["NumberOfSeriesRelatedInstances"] == str(nz)
    assert pacs.find(orthanc.node, patient_id="NOBODY-*") == []
    assert [m["StudyInstanceUID"] for m in pacs.find(orthanc.node, modality="NM")] == [uid]
    assert pacs.find(orthanc.node, study_uid=uid, modality="MR") == []

    # pull it back by C-MOVE to our storage SCP, and by C-GET; both equal the files sent
    original_pet = read_dicom(study.pet)
    original_nm = read_dicom(study.nm)
    for method in ("move", "get"):
        out_dir = tmp_path / f"pulled-{method}"
        code, out, err = _run(capsys, "pacs", "pull", uid, "--out", str(out_dir), "--method", method,
                              "--store-port", str(orthanc.store_port), *orthanc.args())
        assert code == 0, err
        assert out.startswith(f"C-{method.upper()}: {nz + 1} instance(s)")
        pet_dir = out_dir / str(pydicom.dcmread(next(study.pet.iterdir())).SeriesInstanceUID)
        assert len(list(pet_dir.iterdir())) == nz
        pulled = read_dicom(pet_dir)
        np.testing.assert_array_equal(pulled.array, original_pet.array)
        assert pulled.units == "Bq/mL" and pulled.modality == "PT"
        np.testing.assert_allclose(pulled.spacing_mm, (8.0, 8.0, 8.0))
        np.testing.assert_allclose(pulled.origin_mm, study.image.origin_mm, atol=1e-6)
        np.testing.assert_allclose(pulled.direction, study.image.direction, atol=1e-9)
        # 16-bit storage: within half a quantisation step of the phantom's Bq/mL
        step = float(study.image.array.max() - study.image.array.min()) / 65535.0
        assert np.max(np.abs(pulled.array - study.image.array)) <= 0.5 * step + 1e-3 * step
        nm_files = [p for p in out_dir.rglob("*.dcm") if p.parent != pet_dir]
        assert len(nm_files) == 1
        nm = read_dicom(nm_files[0])
        np.testing.assert_array_equal(nm.array, original_nm.array)
        np.testing.assert_allclose(nm.origin_mm, original_nm.origin_mm)
        assert nm.size == study.image.size and nm.units == "Bq/mL"

    # dose on the pulled series; the RTDOSE joins the source study
    pet_dir = tmp_path / "pulled-move" / str(series[0]["SeriesInstanceUID"])
    dose_nii, rtdose, dose_json, report = (tmp_path / n for n in ("dose.nii.gz", "dose.dcm", "dose.json",
                                                                   "report.html"))
    code, out, err = _run(capsys, "dose", f"{pet_dir}@24", "--nuclide", "Lu-177", "--method", "local",
                          "--voi", str(study.labels), "--out", str(dose_nii), "--rtdose", str(rtdose),
                          "--json", str(dose_json), "--report", str(report))
    assert code == 0, err
    ds = pydicom.dcmread(rtdose)
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "AccessionNumber"):
        assert ds.get(kw) == study.reference.get(kw), kw
    np.testing.assert_allclose(read_rtdose(rtdose).array, read_image(dose_nii).array, rtol=1e-6,
                               atol=1e-9 * float(ds.DoseGridScaling) * 2**32)

    # push the results; find them under the same study; pull the study and read them back
    code, out, err = _run(capsys, "pacs", "push-results", "--rtdose", str(rtdose), "--json", str(dose_json),
                          "--report", str(report), "--pdf-out", str(tmp_path / "report.dcm"), *orthanc.args())
    assert code == 0, err
    assert "2 of 2 object(s)" in out and uid in out
    modalities = {m["Modality"]: m for m in pacs.find(orthanc.node, level="SERIES", study_uid=uid)}
    assert set(modalities) == {"PT", "NM", "RTDOSE", "DOC"}
    assert [m["StudyInstanceUID"] for m in pacs.find(orthanc.node, patient_id=str(study.reference.PatientID))] \
        == [uid]
    steps: list[tuple[int, int | None]] = []
    back = pacs.retrieve(orthanc.node, uid, tmp_path / "with-results", method="get",
                         progress=lambda done, total: steps.append((done, total)))
    assert back.method == "C-GET" and len(back.files) == nz + 3
    assert steps == [(k, nz + 3) for k in range(1, nz + 4)]
    doc_dir = back.folder / modalities["DOC"]["SeriesInstanceUID"]
    doc = pydicom.dcmread(next(doc_dir.iterdir()))
    assert doc.SOPClassUID == dicomdoc.ENCAPSULATED_PDF_STORAGE
    assert doc.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert doc.PatientID == study.reference.PatientID
    pdf = bytes(doc.EncapsulatedDocument)[: int(doc.EncapsulatedDocumentLength)]
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    figures = dicomdoc.report_figures(report.read_text())
    assert len(figures) >= 2 and _pages(pdf) == 1 + len(figures)
    assert doc.SourceInstanceSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    stored_dose = read_rtdose(next((back.folder / modalities["RTDOSE"]["SeriesInstanceUID"]).iterdir()))
    np.testing.assert_array_equal(stored_dose.array, read_rtdose(rtdose).array)


@needs_orthanc
def test_one_sop_class_in_several_transfer_syntaxes(orthanc: OrthancServer, tmp_path: Path) -> None:
    """RLE-compressed, explicit and implicit VR files of one SOP class go on one association."""
    from pydicom.data import get_testdata_file

    names = ("MR_small_RLE.dcm", "MR_small.dcm", "MR_small_implicit.dcm")  # one instance, three syntaxes
    files = [Path(str(get_testdata_file(n))) for n in names]
    result = pacs.store(orthanc.node, files)
    assert (result.stored, result.failures) == (3, ())
    original = pydicom.dcmread(files[1])
    back = pacs.retrieve(orthanc.node, str(original.StudyInstanceUID), tmp_path / "mr", method="get")
    (file,) = back.files
    received = pydicom.dcmread(file)
    assert received.SOPInstanceUID == original.SOPInstanceUID
    np.testing.assert_array_equal(received.pixel_array, original.pixel_array)


# ------------------------------------------------------------------------------- error paths
@needs_orthanc
def test_unknown_study_fails_cleanly(orthanc: OrthancServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "nothing"
    line = _cli_error("pacs", "pull", "1.2.826.0.1.3680043.9.9999.1", "--out", str(out_dir), *orthanc.args())
    assert "no study 1.2.826.0.1.3680043.9.9999.1" in line
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []
    line = _cli_error("pacs", "pull", "not-a-uid", "--out", str(out_dir), *orthanc.args())
    assert "digits and dots" in line


@needs_orthanc
def test_refused_associations(orthanc: OrthancServer) -> None:
    line = _cli_error("pacs", "echo", *orthanc.args(aet="STRANGER"))
    assert "calling AE title not recognised" in line
    args = orthanc.args()
    args[args.index("--called-aet") + 1] = "NOTORTHANC"
    line = _cli_error("pacs", "find", *args)
    assert "called AE title not recognised" in line


def test_wrong_port() -> None:
    (port,) = _free_ports(1)  # nothing listens there
    line = _cli_error("pacs", "echo", "--port", str(port), "--timeout-s", "5")
    assert f"127.0.0.1:{port}" in line and "connection refused" in line


def test_silent_node_times_out() -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        line = _cli_error("pacs", "echo", "--port", str(port), "--timeout-s", "1")
    assert f"127.0.0.1:{port}" in line and "no DICOM answer within 1 s" in line


@needs_orthanc
def test_move_to_unknown_destination(orthanc: OrthancServer, study: Study, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pacs.store(orthanc.node, [study.nm])
    uid = str(study.reference.StudyInstanceUID)
    line = _cli_error("pacs", "pull", uid, "--out", str(tmp_path / "a"), "--method", "move",
                      "--move-aet", "NOWHERE", "--store-port", str(orthanc.store_port), *orthanc.args())
    assert "C-MOVE" in line
    assert not (tmp_path / "a").exists()
    # auto: the refused move falls back to C-GET, and says so
    code, out, err = _run(capsys, "pacs", "pull", uid, "--out", str(tmp_path / "b"), "--move-aet", "NOWHERE",
                          "--store-port", str(orthanc.store_port), *orthanc.args())
    assert code == 0, err
    assert out.startswith("C-GET:") and "C-MOVE refused" in out


@needs_orthanc
def test_push_refuses_non_dicom(orthanc: OrthancServer, tmp_path: Path) -> None:
    junk = tmp_path / "notes.dcm"
    junk.write_text("not a DICOM file at all\n" * 20)
    line = _cli_error("pacs", "push", str(junk), *orthanc.args())
    assert str(junk) in line and "not a DICOM file" in line
    (tmp_path / "empty").mkdir()
    line = _cli_error("pacs", "push", str(tmp_path / "empty"), *orthanc.args())
    assert "no DICOM files" in line


# --------------------------------------------------------------------------- without a node
def test_node_and_uid_checks() -> None:
    with pytest.raises(InputError, match="1-16"):
        pacs.DicomNode(calling_aet="A" * 17)
    with pytest.raises(InputError, match="port"):
        pacs.DicomNode(port=70000)
    with pytest.raises(InputError, match="digits and dots"):
        pacs.check_uid("1.2.abc")
    with pytest.raises(InputError, match="query level"):
        pacs.find(pacs.DicomNode(), level="PATIENTS")


def test_encapsulated_pdf_files_under_the_reference_study(tmp_path: Path) -> None:
    ref = _patient("IGK-PDF")
    ref.SOPClassUID = PET_IMAGE_STORAGE
    ref.SOPInstanceUID = pydicom.uid.generate_uid()
    payload = {"nuclide": "Lu-177", "method": "kernel", "dose_max_gy": 12.5, "times_h": [24.0],
               "vois": {"1": {"volume_ml": 120.0, "tia_mbq_h": 5000.0, "mean_gy": 3.2, "d98_gy": 1.0,
                              "d50_gy": 3.0, "d2_gy": 6.0, "max_gy": 8.0, "fit": {"model": "physical"}}}}
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    import base64

    png = base64.b64encode(buf.getvalue()).decode()
    page = f"<h2>DVH</h2><img alt='Dose-volume &amp; more' src='data:image/png;base64,{png}'>"
    figures = dicomdoc.report_figures(page)
    assert [c for c, _ in figures] == ["Dose-volume & more"] and figures[0][1] == buf.getvalue()
    pdf = dicomdoc.dosimetry_report_pdf(payload, figures, identity={"patient": "Phantom"})
    assert _pages(pdf) == 2  # the statistics, then the figure
    ds = dicomdoc.encapsulated_pdf(pdf, ref)
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        assert ds.get(kw) == ref.get(kw)
    assert ds.Modality == "DOC" and "FrameOfReferenceUID" not in ds
    assert len(ds.EncapsulatedDocument) % 2 == 0 and ds.EncapsulatedDocumentLength == len(pdf)
    assert ds.SourceInstanceSequence[0].ReferencedSOPInstanceUID == ref.SOPInstanceUID
    path = tmp_path / "doc.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert bytes(pydicom.dcmread(path).EncapsulatedDocument).startswith(b"%PDF")
    with pytest.raises(InputError, match="not a PDF"):
        dicomdoc.encapsulated_pdf(b"<html>", ref)


def test_source_dataset_finds_the_series_file(tmp_path: Path) -> None:
    ref = _patient("IGK-SRC")
    image = Image(np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5), spacing_mm=(1.0, 1.0, 2.0))
    write_pet_series(image, tmp_path / "pet", ref)
    (tmp_path / "pet" / "README.txt").write_text("not DICOM")
    src = dicomdoc.source_dataset(read_image(tmp_path / "pet"))
    assert src is not None and src.StudyInstanceUID == ref.StudyInstanceUID and src.PatientID == "IGK-SRC"
    assert dicomdoc.source_dataset(image) is None  # not read from DICOM


# ------------------------------------------------------------------ a dose with no DICOM source
@pytest.fixture(scope="module")
def unlinked_dose(study: Study, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``igikit dose --rtdose`` on a NIfTI export of the study: (the RTDOSE, its --json)."""
    folder = tmp_path_factory.mktemp("nifti")
    write_image(study.image, folder / "spect.nii.gz")
    rtdose, dose_json = folder / "dose.dcm", folder / "dose.json"
    result = run_cli("dose", f"{folder / 'spect.nii.gz'}@24", "--nuclide", "Lu-177", "--method", "local",
                     "--voi", study.labels, "--out", folder / "dose.nii.gz", "--rtdose", rtdose, "--json", dose_json,
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"warning: {rtdose}: the source images carry no DICOM patient" in result.stderr
    assert pydicom.dcmread(rtdose).PatientID == ""
    return rtdose, dose_json


def test_push_results_refuses_a_dose_that_names_no_patient(unlinked_dose: tuple[Path, Path]) -> None:
    rtdose, dose_json = unlinked_dose
    # nothing listens on this port: the refusal must come before any association is tried
    port = _free_ports(1)[0]
    line = _cli_error("pacs", "push-results", "--rtdose", str(rtdose), "--json", str(dose_json),
                      "--port", str(port), "--timeout-s", "2")
    assert line.startswith(f"igikit pacs: error: {rtdose}: the RTDOSE names no patient"), line
    assert "--allow-unlinked" in line and "new study of an unknown patient" in line


@needs_orthanc
def test_push_results_stores_an_unlinked_dose_when_allowed(
    orthanc: OrthancServer, unlinked_dose: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rtdose, dose_json = unlinked_dose
    uid = str(pydicom.dcmread(rtdose).StudyInstanceUID)
    code, out, err = _run(capsys, "pacs", "push-results", "--rtdose", str(rtdose), "--json", str(dose_json),
                          "--allow-unlinked", *orthanc.args())
    assert code == 0, err
    assert "2 of 2 object(s)" in out and uid in out
    (warning,) = err.strip().splitlines()
    assert warning.startswith(f"warning: {rtdose}: the RTDOSE names no patient") and uid in warning
    assert {m["Modality"] for m in pacs.find(orthanc.node, level="SERIES", study_uid=uid)} == {"RTDOSE", "DOC"}
