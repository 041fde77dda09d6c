"""Dosimetry results as DICOM objects that file under the source study.

A PACS groups objects by patient and study, so a result made by igikit (the RTDOSE of
``igikit dose --rtdose``, the report) copies the patient, study and (for the dose) frame of
reference of the images it was computed from: :func:`source_dataset` finds that header.
The report travels as Encapsulated PDF Storage (PS3.3 A.45.1, :func:`encapsulated_pdf`), which every
PACS viewer opens: :func:`dosimetry_report_pdf` lays out the statistics of ``igikit dose --json``
and the figures of ``igikit dose --report`` with matplotlib's PDF backend (no browser needed).
``igikit pacs push-results`` sends both (:mod:`igikit.io.pacs`).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igikit.errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from igikit.core.image import Image

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def source_dataset(image: Image) -> Dataset | None:
    """The header of a DICOM file an image was read from (patient, study, frame of reference).

    Derived objects (an RTDOSE, a report) copy it so that the PACS files them under the source
    study. None for images that were not read from DICOM (NIfTI, MHA).
    """
    from igikit.io.dicom import read_dataset

    source = image.meta.get("source")
    series = image.meta.get("SeriesInstanceUID")
    if not source or not image.meta.get("StudyInstanceUID"):
        return None
    path = Path(source)
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        return None
    for file in candidates:
        try:
            ds = read_dataset(file, stop_before_pixels=True)
        except InputError:
            continue
        if series is None or str(ds.get("SeriesInstanceUID", "")) == series:
            return ds
    return None


def encapsulated_pdf(
    pdf: bytes,
    reference: Dataset,
    *,
    title: str = "Dosimetry report",
    series_description: str = "igikit dosimetry report",
) -> Dataset:
    """Wrap a PDF as an Encapsulated PDF Storage instance under ``reference``'s patient and study.

    Parameters
    ----------
    pdf
        The document (must start with ``%PDF``).
    reference
        A dataset of the study (the RTDOSE, a slice of the source series): its patient and study
        identifiers are copied, and it is listed in ``SourceInstanceSequence``.
    title
        ``DocumentTitle``.
    series_description
        ``SeriesDescription`` of the new series (modality ``DOC``).

    Returns
    -------
    pydicom.dataset.Dataset
        Ready to store or write (PS3.3 A.45.1: Encapsulated PDF IOD).
    """
    from pydicom.dataset import Dataset as PydicomDataset

    from igikit.io.dicom import new_dataset

    if not pdf.startswith(b"%PDF"):
        raise InputError("the report is not a PDF document")
    ds = new_dataset(ENCAPSULATED_PDF_STORAGE, "DOC", reference)
    for kw in ("FrameOfReferenceUID", "PositionReferenceIndicator"):  # not in the Encapsulated PDF IOD
        if kw in ds:
            delattr(ds, kw)
    ds.SeriesDescription = series_description
    ds.SeriesNumber = 901
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"  # the report names the patient
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    ds.AcquisitionDateTime = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    if reference.get("SOPInstanceUID"):
        src = PydicomDataset()
        src.ReferencedSOPClassUID = reference.SOPClassUID
        src.ReferencedSOPInstanceUID = reference.SOPInstanceUID
        ds.SourceInstanceSequence = [src]
    return ds


_IMG = re.compile(r"<img\b[^>]*?src=['\"]data:image/png;base64,([A-Za-z0-9+/=\s]+)['\"][^>]*>", re.I)
_ALT = re.compile(r"\balt=['\"]([^'\"]*)['\"]", re.I)


def report_figures(report_html: str) -> list[tuple[str, bytes]]:
    """The PNG figures embedded in an ``igikit dose --report`` page, as (caption, PNG bytes)."""
    out = []
    for m in _IMG.finditer(report_html):
        alt = _ALT.search(m.group(0))
        caption = html.unescape(alt.group(1)) if alt else ""
        out.append((caption, base64.b64decode(re.sub(r"\s", "", m.group(1)))))
    return out


def dosimetry_report_pdf(
    dosimetry: Mapping[str, Any] | None,
    figures: Sequence[tuple[str, bytes]] = (),
    *,
    title: str = "Radionuclide therapy dosimetry",
    identity: Mapping[str, str] | None = None,
) -> bytes:
    """A PDF of the dose statistics (the ``igikit dose --json`` payload) and the report's figures.

    Page 1 lists the patient and study (``identity``), the nuclide and method, and a table per VOI
    (volume, TIA, mean / D98 / D50 / D2 / max dose); each figure (PNG) follows on its own page.
    Made with matplotlib's PDF backend, so no browser or HTML renderer is needed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    def num(v: Any, digits: int = 4) -> str:
        return f"{v:.{digits}g}" if isinstance(v, int | float) else "-"

    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": title, "Creator": "igikit"}) as pdf:
        fig = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
        fig.text(0.07, 0.95, title, fontsize=16, weight="bold")
        lines = [f"{k}: {v}" for k, v in (identity or {}).items() if v]
        if dosimetry:
            lines.append(
                f"nuclide {dosimetry.get('nuclide', '?')}, method {dosimetry.get('method', '?')}, "
                f"maximum dose {num(dosimetry.get('dose_max_gy'))} Gy"
            )
            times = dosimetry.get("times_h") or []
            lines.append("time points (h after administration): " +
                         (", ".join(num(t) if t is not None else "at administration" for t in times) or "-"))
            lines.extend(f"note: {n}" for n in dosimetry.get("notes", []))
        y = 0.91
        for line in lines:
            fig.text(0.07, y, line[:110], fontsize=9)
            y -= 0.022
        vois = (dosimetry or {}).get("vois") or {}
        if vois:
            columns = ["VOI", "volume\n(mL)", "TIA\n(MBq h)", "mean\n(Gy)", "D98\n(Gy)", "D50\n(Gy)", "D2\n(Gy)",
                       "max\n(Gy)", "fit"]
            rows = [[str(label), num(v.get("volume_ml")), num(v.get("tia_mbq_h")), num(v.get("mean_gy")),
                     num(v.get("d98_gy")), num(v.get("d50_gy")), num(v.get("d2_gy")), num(v.get("max_gy")),
                     str((v.get("fit") or {}).get("model", "-"))] for label, v in vois.items()]
            height = min(0.04 * (len(rows) + 1.5), y - 0.05)
            ax = fig.add_axes((0.07, y - 0.02 - height, 0.86, height))
            ax.axis("off")
            table = ax.table(cellText=rows, colLabels=columns, loc="upper center", cellLoc="right")
            table.auto_set_font_size(False)
            table.set_fontsize(8)
            table.scale(1.0, 1.6)
            for (row, _col), cell in table.get_celld().items():
                if row == 0:  # two-line headers (name, unit)
                    cell.set_height(cell.get_height() * 1.7)
        pdf.savefig(fig)
        plt.close(fig)
        for caption, png in figures:
            image = mpimg.imread(io.BytesIO(png), format="png")
            h, w = image.shape[:2]
            fig = plt.figure(figsize=(11.69, 8.27) if w >= h else (8.27, 11.69))
            ax = fig.add_axes((0.03, 0.03, 0.94, 0.88))
            ax.imshow(image)
            ax.axis("off")
            fig.text(0.03, 0.95, caption or "figure", fontsize=13, weight="bold")
            pdf.savefig(fig)
            plt.close(fig)
    return buf.getvalue()


def results_datasets(
    rtdose: str | Path,
    *,
    dosimetry_json: str | Path | None = None,
    report_html: str | Path | None = None,
) -> tuple[Dataset, Dataset]:
    """The RTDOSE of ``igikit dose --rtdose`` and an Encapsulated PDF report under its study.

    Parameters
    ----------
    rtdose
        The RTDOSE file (written with the source study's patient and UIDs).
    dosimetry_json
        The ``--json`` output of the same run: the PDF's statistics table.
    report_html
        The ``--report`` output of the same run: its figures become pages of the PDF.

    Raises
    ------
    InputError
        The RTDOSE is not an RTDOSE, the JSON or report cannot be read.
    """
    import json

    from igikit.io.dicom import read_dataset

    rtdose = Path(rtdose)
    dose = read_dataset(rtdose)
    if dose.get("Modality") != "RTDOSE":
        raise InputError(f"is not an RT Dose object (Modality {dose.get('Modality', 'missing')})", rtdose)
    payload: dict[str, Any] | None = None
    if dosimetry_json is not None:
        try:
            payload = json.loads(Path(dosimetry_json).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("file not found", dosimetry_json) from None
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable dosimetry JSON ({type(exc).__name__})", dosimetry_json) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("vois", {}), dict):
            raise InputError("is not an igikit dose --json output (no 'vois' object)", dosimetry_json)
    figures: list[tuple[str, bytes]] = []
    if report_html is not None:
        try:
            figures = report_figures(Path(report_html).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("file not found", report_html) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the report ({type(exc).__name__})", report_html) from None
    identity = {
        "patient": f"{dose.get('PatientName', '')} ({dose.get('PatientID', '')})",
        "study": f"{dose.get('StudyDescription', '') or 'ID ' + str(dose.get('StudyID', '') or '-')}, "
                 f"UID {dose.get('StudyInstanceUID', '')}",
        "dose object": f"RTDOSE {dose.get('SOPInstanceUID', '')}",
    }
    pdf = dosimetry_report_pdf(payload, figures, identity=identity)
    return dose, encapsulated_pdf(pdf, dose)
