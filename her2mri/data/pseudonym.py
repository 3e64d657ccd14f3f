"""Pseudonymous case ids for DICOM imports: a salted, stable hash of the Patient ID and its key file.

The case id is ``"anon-"`` + the first 16 hex digits of HMAC-SHA256(salt, Patient ID): the same salt always
gives the same id, and without the salt the id cannot be traced back by hashing candidate Patient IDs. The key
file (JSON: the salt and case id -> Patient ID) is written outside the cohort folder, mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

from her2mri.data.errors import DataError


def pseudonym(patient_id: str, salt: str) -> str:
    """The stable pseudonymous case id of a Patient ID: ``anon-`` + 16 hex digits of HMAC-SHA256."""
    digest = hmac.new(salt.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"anon-{digest[:16]}"


def default_key_file(out: Path) -> Path:
    """Where :func:`import_cohort` keeps the pseudonym key by default: beside ``out``, never inside it."""
    out = Path(out).resolve()
    return out.parent / f"{out.name}_pseudonym_key.json"


def load_key(key_file: Path, salt: str | None) -> tuple[str, dict[str, str]]:
    """``(salt, case id -> Patient ID)`` of an existing key file, else ``(salt or a new random salt, {})``.

    Raises:
        DataError: the file is not a key file, or was written with another salt than ``salt``.
    """
    if key_file.is_file():
        try:
            data = json.loads(key_file.read_text())
            old_salt, mapping = str(data["salt"]), dict(data["cases"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{key_file}: not a her2mri pseudonym key file ({exc})") from exc
        if salt and salt != old_salt:
            raise DataError(
                f"{key_file}: was written with another salt; pass the same salt or another key_file"
            )
        return old_salt, mapping
    return (salt or secrets.token_hex(16)), {}
