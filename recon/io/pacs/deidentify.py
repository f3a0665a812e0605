"""De-identification for research export: the DICOM PS3.15 Basic Application Level Confidentiality
Profile with the Retain Longitudinal Temporal Information with Modified Dates Option.

The attribute actions (D replace, Z empty, X remove, U new UID, and the combined ones) are the
profile's Table E.1-1 as shipped by ``dicom-anonymizer`` (Kitware; the table of the 2026c edition
of the standard), applied to the dataset and to every nested sequence item; private attributes are
removed. (``dicognito`` pseudonymises names, IDs, UIDs and dates but does not follow the table;
``deid`` needs a recipe written to the table by hand; pydicom has no profile of its own.)
Three actions are replaced so that the result stays useful:

* **UIDs** (U) are remapped with a keyed hash, ``2.25.<HMAC-SHA-256(key, UID) as a UUID>``: the
  same source UID always gets the same new UID, so the instances of a study keep their study, series, frame of
  reference and source-image references to each other, and a rerun (or a resumed pull) writes the
  same files;
* **dates** (DA, DT) are shifted back by a per-patient offset of 1 to 10 years in whole days,
  derived from the key and the PatientID, so intervals between a patient's studies are kept; the
  birth date is removed;
* **PatientName / PatientID** become one pseudonym per patient (``ANON<hash>``).

The key comes from ``RECON_DEID_KEY`` or the key file ``$XDG_CONFIG_HOME/recon/deid.key`` (created
with mode 600 on first use). Without the key, the new values cannot be linked back to the old ones;
a mapping from old to new identifiers is kept only when the caller asks for it
(:meth:`Deidentifier.write_mapping`). Pixel data are not examined: burned-in annotations (Burned In
Annotation ``YES``) are refused rather than exported.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dicomanonymizer.simpledicomanonymizer import delete_or_empty_or_replace_UID, initialize_actions
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from recon.errors import InputError
from recon.io.atomic import atomic_write_json
from recon.io.pacs.config import user_config_dir

__all__ = ["Deidentifier", "load_key", "ENV_KEY", "PROFILE_DATABASE"]

ENV_KEY = "RECON_DEID_KEY"
KEY_FILE = "deid.key"
#: The edition of PS3.15 Table E.1-1 used (a table shipped by dicom-anonymizer).
PROFILE_DATABASE = "dicomfields_2026c"
_MIN_SHIFT_DAYS, _MAX_SHIFT_DAYS = 365, 3650
_METHOD = "PS3.15 Basic Profile, Retain Longitudinal Modified Dates"
# (code value, meaning) of the profile and option applied, CID 7050 (coding scheme DCM)
_CODES = (("113100", "Basic Application Confidentiality Profile"),
          ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
_PATIENT_NAME, _PATIENT_ID, _BIRTH_DATE = (0x0010, 0x0010), (0x0010, 0x0020), (0x0010, 0x0030)

Action = Callable[[Dataset, Any], None]


def load_key(env: Mapping[str, str] | None = None) -> bytes:
    """The de-identification key: ``RECON_DEID_KEY``, else the key file (created on first use)."""
    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        return env[ENV_KEY].encode("utf-8")
    path = user_config_dir(env) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if len(key) < 16:
        raise InputError(path, "de-identification key is too short (expected at least 16 characters)")
    return key.encode("utf-8")


class Deidentifier:
    """Applies the profile to datasets in place; one object for a whole export, so it can record
    the mapping of what it changed when asked to."""

    def __init__(self, key: bytes, *, record: bool = False):
        self._key = key
        self._record = record
        self._uids: dict[str, str] = {}
        self._patients: dict[str, dict[str, Any]] = {}
        self._rules = self._build_rules()

    @property
    def records(self) -> bool:
        """Whether a mapping of what changed is being kept."""
        return self._record

    # ------------------------------------------------------------------ the keyed maps
    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).digest()

    def uid(self, old: str) -> str:
        """The new UID of ``old`` (the same for the same key, always)."""
        old = str(old)
        if not old:
            return old
        # a name-based UUID (RFC 4122 layout) of the keyed digest, as a 2.25 UID (PS3.5 B.2)
        new = f"2.25.{uuid.UUID(bytes=self._digest('uid', old)[:16], version=5).int}"
        if self._record:
            self._uids[old] = new
        return new

    def date_offset_days(self, patient_id: str) -> int:
        """Days the patient's dates move (negative: into the past)."""
        n = int.from_bytes(self._digest("date", patient_id)[:8], "big")
        return -(_MIN_SHIFT_DAYS + n % (_MAX_SHIFT_DAYS - _MIN_SHIFT_DAYS))

    def pseudonym(self, patient_id: str) -> str:
        """The patient's new PatientID and PatientName."""
        return "ANON" + self._digest("patient", patient_id).hex()[:12].upper()

    # ------------------------------------------------------------------ apply
    def apply(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` (and its file meta) in place; returns it."""
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            raise InputError(None, "an instance has burned-in annotation (BurnedInAnnotation YES); it cannot be "
                                   "de-identified by its header and is not exported")
        patient_id = str(ds.get("PatientID", "") or "")
        offset = self.date_offset_days(patient_id)
        pseudonym = self.pseudonym(patient_id)
        if self._record:
            self._patients[patient_id] = {"pseudonym": pseudonym, "date_offset_days": offset}
        self._apply_rules(ds, offset)
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientBirthDate = ""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = _METHOD
        ds.DeidentificationMethodCodeSequence = DicomSequence([_code(v, m) for v, m in _CODES])
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return ds

    def _apply_rules(self, ds: Dataset, offset: int) -> None:
        for tag, action in self._rules.items():
            if tag in ds:
                try:
                    action(ds, tag)
                except NotImplementedError:
                    del ds[tag]  # a VR the table's replacement does not cover: removing is always safe
        ds.remove_private_tags()
        self._shift_dates(ds, offset)
        for elem in list(ds):
            if elem.VR == "SQ" and elem.tag in ds:
                for item in elem.value:
                    self._apply_rules(item, offset)

    def _build_rules(self) -> dict[Any, Action]:
        """Table E.1-1 (individual tags; repeating groups are retired curve/overlay data, removed
        below as private-like), with UIDs, dates, times and the patient's name and ID overridden."""
        rules: dict[Any, Action] = {}
        for tag, action in initialize_actions(PROFILE_DATABASE).items():
            if len(tag) != 2:
                continue
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = ""
            if vr == "UI":
                rules[tag] = self._remap_uid
            elif vr == "SQ" and action is delete_or_empty_or_replace_UID:
                rules[tag] = _keep  # X/Z/U*: the sequence stays, the UIDs in its items are remapped below
            elif vr in ("DA", "DT", "TM"):
                rules[tag] = _mark_date  # shifted in _shift_dates
            else:
                rules[tag] = action
        for tag in (_PATIENT_NAME, _PATIENT_ID):
            rules[tag] = _keep
        rules[_BIRTH_DATE] = _empty
        self._dated = {tag for tag, action in rules.items() if action is _mark_date}
        return rules

    def _remap_uid(self, ds: Dataset, tag: Any) -> None:
        elem = ds[tag]
        if elem.VM > 1:
            elem.value = [self.uid(v) for v in elem.value]
        elif elem.value:
            elem.value = self.uid(elem.value)

    def _shift_dates(self, ds: Dataset, offset: int) -> None:
        for tag in self._dated:
            if tag not in ds or tag == _BIRTH_DATE:
                continue
            elem = ds[tag]
            if elem.VR not in ("DA", "DT") or not elem.value:
                continue  # times of day are kept: whole-day shifts leave them meaningful
            values = elem.value if elem.VM > 1 else [elem.value]
            out = []
            for v in values:
                text = str(v)
                try:
                    day = _dt.datetime.strptime(text[:8], "%Y%m%d").date() + _dt.timedelta(days=offset)
                except ValueError:
                    out.append("")  # a date that cannot be parsed cannot be shifted: emptied
                    continue
                out.append(day.strftime("%Y%m%d") + (text[8:] if elem.VR == "DT" else ""))
            elem.value = out if elem.VM > 1 else out[0]

    # ------------------------------------------------------------------ mapping
    def mapping(self) -> dict[str, Any]:
        """What was changed (only when constructed with ``record=True``): patients and UIDs."""
        return {"profile": _METHOD, "table": PROFILE_DATABASE, "patients": dict(self._patients), "uids": dict(self._uids)}

    def write_mapping(self, path: str | Path) -> Path:
        """Write :meth:`mapping` as JSON (mode 600); it re-identifies the export, keep it safe."""
        if not self._record:
            raise ValueError("this Deidentifier does not record a mapping (construct it with record=True)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.mapping())
        path.chmod(0o600)
        return path


def _keep(ds: Dataset, tag: Any) -> None:
    """Left to a later step (the pseudonym, the items of a reference sequence)."""


def _mark_date(ds: Dataset, tag: Any) -> None:
    """Dates are shifted and times kept, after the table's other actions."""


def _empty(ds: Dataset, tag: Any) -> None:
    ds[tag].value = ""


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
