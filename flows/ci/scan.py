"""The image scan gate: nothing is deployed while ECR's scan of the digest reports findings at
or above a severity.

The repository scans on push; the gate waits for that scan of this digest to complete (it may
not have started yet), then judges the severity counts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ScanError(RuntimeError):
    """The scan failed, or did not complete in time."""


class InvalidScanRequest(ValueError):
    """Nothing to judge as asked: a severity or digest that is none, a negative wait, or a
    repository or image that does not exist. Bad input (exit code 2), where a `ScanError` and
    blocking findings are the gate failing (exit code 1)."""


@dataclass(frozen=True)
class ScanVerdict:
    digest: str
    counts: dict[str, int]
    blocking: dict[str, int]
    fail_on: str

    @property
    def passed(self) -> bool:
        return not self.blocking

    def describe(self) -> str:
        found = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "no findings"
        if self.passed:
            return f"scan of {self.digest}: {found}; nothing at or above {self.fail_on}"
        blocking = ", ".join(f"{n} {s}" for s, n in sorted(self.blocking.items()))
        return f"scan of {self.digest} blocks the release: {blocking} (at or above {self.fail_on})"


def scan_gate(
    ecr: Any,
    repository: str,
    digest: str,
    fail_on: str = "CRITICAL",
    timeout_s: float = 900,
    poll_s: float = 10,
) -> ScanVerdict:
    """Waits for the scan of `digest` and judges it.

    Raises:
        ScanError: the scan failed or did not complete within `timeout_s`.
        InvalidScanRequest: `fail_on` is not a severity, `digest` not a digest, `timeout_s`
            negative, or the repository or the image does not exist.
    """
    fail_on = fail_on.upper()
    if fail_on not in SEVERITIES:
        raise InvalidScanRequest(f"fail_on must be one of {', '.join(SEVERITIES)}, got {fail_on!r}")
    if not _DIGEST.match(digest):
        raise InvalidScanRequest(f"digest {digest!r} is not a digest: sha256:<64 hex digits>")
    if timeout_s < 0:
        raise InvalidScanRequest(f"the timeout must be 0 s or more, got {timeout_s}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = ecr.describe_image_scan_findings(
                repositoryName=repository, imageId={"imageDigest": digest}
            )
        except ecr.exceptions.ScanNotFoundException:
            response = {"imageScanStatus": {"status": "PENDING"}}
        except (
            ecr.exceptions.RepositoryNotFoundException,
            ecr.exceptions.ImageNotFoundException,
        ) as exc:
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            raise InvalidScanRequest(f"nothing to scan: {message}") from None
        status = response.get("imageScanStatus", {})
        if status.get("status") == "COMPLETE":
            break
        if status.get("status") in ("FAILED", "UNSUPPORTED_IMAGE"):
            raise ScanError(f"scan of {digest}: {status.get('status')} {status.get('description')}")
        if time.monotonic() >= deadline:
            raise ScanError(f"scan of {digest} did not complete in {timeout_s:.0f} s")
        time.sleep(poll_s)
    counts = dict(response.get("imageScanFindings", {}).get("findingSeverityCounts") or {})
    threshold = SEVERITIES.index(fail_on)
    blocking = {
        s: n for s, n in counts.items() if s in SEVERITIES and SEVERITIES.index(s) >= threshold
    }
    return ScanVerdict(digest=digest, counts=counts, blocking=blocking, fail_on=fail_on)
