"""`ferry release promote` and `ferry release scan` as the workflow runs them: a separate
process talking to ECR, here a moto server on 127.0.0.1 reached through AWS_ENDPOINT_URL.

Promotion must copy the manifest byte for byte under the new tag (same media type, same digest),
be a no-op when repeated, and refuse - changing nothing - a missing source, a source that is not
the digest staging tested, and a target tag that already names other bytes.

Exit codes: 2 for bad input (a malformed digest or tag, a repository, tag or image that does not
exist, no AWS region), 1 when the work fails (other bytes than staging tested, a tag already
taken, a scan that blocks or never completes, ECR unreachable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from flows.exit_codes import ExitCode
from flows.prefect.server import free_port

pytestmark = pytest.mark.integration

FERRY = str(Path(sys.executable).parent / "ferry")
OCI = "application/vnd.oci.image.manifest.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"


def manifest(layer: str, media_type: str = OCI) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": 7,
                "digest": "sha256:" + "c" * 64,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "size": 9,
                    "digest": "sha256:" + layer * 64,
                }
            ],
        },
        indent=3,  # an unusual layout: a re-serialised manifest would change the digest
    )


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def ecr(moto_url):
    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    client = boto3.client("ecr", endpoint_url=moto_url, region_name="us-east-1")
    client.create_repository(repositoryName="ferry", imageTagMutability="IMMUTABLE")
    return client


def ferry(
    moto_url: str, command: str, **env_changes: str | None
) -> subprocess.CompletedProcess[str]:
    """`ferry release <command>` in its own process, its AWS calls going to the moto server."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_MAX_ATTEMPTS": "1",  # an unreachable ECR fails at once
    }
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [FERRY, "release", *command.split()], capture_output=True, text=True, env=env, timeout=120
    )


def refused(result: subprocess.CompletedProcess[str], verb: str, message: str) -> None:
    """Exit code 2, the reason on stderr in one `ferry release <verb>: ` line, no traceback."""
    assert result.returncode == ExitCode.INVALID, result.stdout + result.stderr
    assert result.stderr.startswith(f"ferry release {verb}: "), result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def failed(result: subprocess.CompletedProcess[str], verb: str, message: str) -> None:
    """Exit code 1, the reason on stderr as `ferry release <verb>: ...`, no traceback."""
    assert result.returncode == ExitCode.FAILED, result.stdout + result.stderr
    assert f"ferry release {verb}: " in result.stderr, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def push(ecr, tag: str, layer: str = "a", media_type: str = OCI) -> str:
    """What `docker push` leaves in ECR: a manifest under a tag. Returns its digest."""
    pushed = ecr.put_image(
        repositoryName="ferry",
        imageManifest=manifest(layer, media_type),
        imageManifestMediaType=media_type,
        imageTag=tag,
    )
    return pushed["image"]["imageId"]["imageDigest"]


def image(ecr, tag: str) -> dict:
    images = ecr.batch_get_image(
        repositoryName="ferry", imageIds=[{"imageTag": tag}], acceptedMediaTypes=[OCI, DOCKER]
    )["images"]
    return images[0] if images else {}


def test_promotion_copies_the_manifest_and_is_idempotent(ecr, moto_url):
    pushed = push(ecr, "sha-1")
    promote = "promote --repository ferry --from-tag sha-1 --to-tag prod-1"

    first = ferry(moto_url, f"{promote} --expect-digest {pushed}")
    assert first.returncode == ExitCode.OK, first.stderr
    assert f"ferry:prod-1 tagged {pushed}" in first.stdout
    promoted = image(ecr, "prod-1")
    assert promoted["imageId"]["imageDigest"] == pushed
    assert promoted["imageManifest"] == manifest("a")  # byte for byte
    assert promoted["imageManifestMediaType"] == OCI
    details = ecr.describe_images(repositoryName="ferry")["imageDetails"]
    assert len(details) == 1 and set(details[0]["imageTags"]) == {"sha-1", "prod-1"}

    again = ferry(moto_url, promote)
    assert again.returncode == ExitCode.OK, again.stderr
    assert "already tagged" in again.stdout
    assert len(ecr.describe_images(repositoryName="ferry")["imageDetails"]) == 1


def test_a_missing_source_is_named_and_nothing_changes(ecr, moto_url):
    result = ferry(moto_url, "promote --repository ferry --from-tag sha-nope --to-tag prod-nope")
    refused(result, "promote", "source image ferry:sha-nope does not exist")
    assert ecr.describe_images(repositoryName="ferry")["imageDetails"] == []
    result = ferry(moto_url, "promote --repository nope --from-tag sha-1 --to-tag prod-1")
    refused(result, "promote", "ECR repository 'nope' does not exist")


def test_a_malformed_request_is_refused_before_ecr_is_asked(ecr, moto_url):
    pushed = push(ecr, "sha-1")
    promote = "promote --repository ferry --from-tag sha-1 --to-tag prod-1"
    for digest in ("latest", pushed[:-1], pushed.upper().replace("SHA256", "sha256")):
        refused(ferry(moto_url, f"{promote} --expect-digest {digest}"), "promote", "not a digest")
    refused(
        ferry(moto_url, "promote --repository ferry --from-tag sha-1 --to-tag prod:1"),
        "promote",
        "to tag 'prod:1' is not an image tag",
    )
    refused(ferry(moto_url, promote, AWS_DEFAULT_REGION=None), "promote", "AWS_REGION")
    assert image(ecr, "prod-1") == {}


def test_an_unreachable_ecr_is_a_failure(ecr, moto_url):
    closed = f"http://127.0.0.1:{free_port()}"
    result = ferry(closed, "promote --repository ferry --from-tag sha-1 --to-tag prod-1")
    failed(result, "promote", "Could not connect to the endpoint URL")
    result = ferry(closed, f"scan --repository ferry --digest sha256:{'a' * 64} --timeout 0")
    failed(result, "scan", "Could not connect to the endpoint URL")


def test_other_bytes_are_never_promoted(ecr, moto_url):
    tested = push(ecr, "sha-1")
    other = push(ecr, "sha-2", layer="b", media_type=DOCKER)
    assert tested != other

    wrong_source = ferry(
        moto_url,
        f"promote --repository ferry --from-tag sha-2 --to-tag prod-2 --expect-digest {tested}",
    )
    failed(wrong_source, "promote", "refusing to promote other bytes")
    assert image(ecr, "prod-2") == {}

    push(ecr, "prod-1", layer="b", media_type=DOCKER)
    taken = ferry(moto_url, "promote --repository ferry --from-tag sha-1 --to-tag prod-1")
    failed(taken, "promote", "immutable")
    assert "already names" in taken.stderr
    assert image(ecr, "prod-1")["imageId"]["imageDigest"] == other


def test_the_scan_gate_blocks_at_the_chosen_severity(ecr, moto_url):
    digest = push(ecr, "sha-1")
    ecr.start_image_scan(repositoryName="ferry", imageId={"imageDigest": digest})
    scan = f"scan --repository ferry --digest {digest} --timeout 30"
    # moto's scan reports a HIGH finding unless told otherwise
    passes = ferry(moto_url, f"{scan} --fail-on CRITICAL")
    assert passes.returncode == ExitCode.OK, passes.stderr
    assert "nothing at or above CRITICAL" in passes.stdout
    blocks = ferry(moto_url, f"{scan} --fail-on high")
    failed(blocks, "scan", "blocks the release")
    assert "blocks the release" in blocks.stdout and "HIGH" in blocks.stdout


def test_the_scan_gate_gives_up_on_a_scan_that_never_completes(ecr, moto_url):
    digest = push(ecr, "sha-1")
    result = ferry(moto_url, f"scan --repository ferry --digest {digest} --timeout 0")
    failed(result, "scan", "did not complete in 0 s")


def test_the_scan_gate_refuses_what_it_cannot_judge(ecr, moto_url):
    digest = push(ecr, "sha-1")
    scan = f"scan --repository ferry --digest {digest} --timeout 0"
    refused(ferry(moto_url, f"{scan} --fail-on SEVERE"), "scan", "fail_on must be one of")
    refused(
        ferry(moto_url, "scan --repository ferry --digest sha-1 --timeout 0"),
        "scan",
        "'sha-1' is not a digest",
    )
    refused(ferry(moto_url, f"{scan.replace('ferry', 'nope', 1)}"), "scan", "'nope' does not exist")
    other = f"sha256:{'0' * 64}"
    refused(
        ferry(moto_url, f"scan --repository ferry --digest {other} --timeout 0"),
        "scan",
        "does not exist within the repository",
    )
