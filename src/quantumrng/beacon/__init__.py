"""The public beacon in the NIST Randomness Beacon 2.0 format (draft NISTIR 8213).

``pulse``: the format, its signature and the chain checks (pure). ``publisher``:
the RSA key and certificate, and the thread that publishes one pulse a period.
"""

from quantumrng.beacon.publisher import (
    BeaconKey,
    Publisher,
    certificate_record,
    load_beacon_key,
    self_signed_certificate,
)
from quantumrng.beacon.pulse import (
    STATUS_NEW_CHAIN,
    STATUS_OK,
    External,
    Failure,
    ListValue,
    Pulse,
    certificate_id,
    load_certificates,
    sign,
    verify_chain,
    verify_pulse,
)

__all__ = [
    "STATUS_NEW_CHAIN",
    "STATUS_OK",
    "BeaconKey",
    "External",
    "Failure",
    "ListValue",
    "Publisher",
    "Pulse",
    "certificate_id",
    "certificate_record",
    "load_beacon_key",
    "load_certificates",
    "self_signed_certificate",
    "sign",
    "verify_chain",
    "verify_pulse",
]
