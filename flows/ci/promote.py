"""Promotion by retag: production gets the very image staging tested, byte for byte.

The image manifest staging ran is read from ECR and written back under a new tag
(`BatchGetImage` + `PutImage`): same manifest, same media type, so the same digest. Nothing is
pulled, pushed or rebuilt. Tags are immutable in ferry's repository, so promotion writes a new
tag (`prod-<sha>`) rather than moving one; deployments pin the digest either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# What ECR may store for a build: Docker v2 and OCI manifests and indexes (multi-arch).
MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]

# What a digest and a tag look like (the OCI distribution spec's grammar of a tag).
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class PromotionError(RuntimeError):
    """The promotion cannot happen as asked; nothing was changed."""


class InvalidPromotion(PromotionError):
    """The request itself is wrong: a malformed tag or digest, or a repository or source tag
    that does not exist. Bad input (exit code 2), where other `PromotionError`s are the release
    refused: the source is not the digest staging tested, or the new tag names other bytes."""


@dataclass(frozen=True)
class Promotion:
    repository: str
    from_tag: str
    to_tag: str
    digest: str
    changed: bool

    def describe(self) -> str:
        action = "tagged" if self.changed else "already tagged"
        return f"{self.repository}:{self.to_tag} {action} {self.digest} (from {self.from_tag})"


def promote(
    ecr: Any, repository: str, from_tag: str, to_tag: str, expect_digest: str | None = None
) -> Promotion:
    """Gives the image tagged `from_tag` the tag `to_tag` as well, by its manifest.

    Idempotent: when `to_tag` already names that digest, nothing changes and it succeeds.

    Raises:
        InvalidPromotion: a tag or `expect_digest` is malformed, or the repository or
            `from_tag` does not exist.
        PromotionError: `from_tag` does not name `expect_digest`, or `to_tag` already names
            another image.
    """
    for flag, tag in (("from", from_tag), ("to", to_tag)):
        if not TAG.match(tag):
            raise InvalidPromotion(
                f"{flag} tag {tag!r} is not an image tag (letters, digits, '_', '.', '-'; at "
                "most 128)"
            )
    if expect_digest is not None and not DIGEST.match(expect_digest):
        raise InvalidPromotion(
            f"expected digest {expect_digest!r} is not a digest: sha256:<64 hex digits>"
        )
    source = _image(ecr, repository, from_tag)
    if source is None:
        raise InvalidPromotion(
            f"source image {repository}:{from_tag} does not exist; was it built and pushed "
            "(the tag is sha-<git sha> of the commit staging ran)?"
        )
    digest = source["imageId"]["imageDigest"]
    if expect_digest is not None and digest != expect_digest:
        raise PromotionError(
            f"{repository}:{from_tag} names {digest}, not {expect_digest} (what staging "
            "tested); refusing to promote other bytes"
        )
    current = _image(ecr, repository, to_tag)
    if current is not None:
        if current["imageId"]["imageDigest"] == digest:
            return Promotion(repository, from_tag, to_tag, digest, changed=False)
        raise PromotionError(
            f"{repository}:{to_tag} already names {current['imageId']['imageDigest']}, not "
            f"{digest}; tags are immutable: promote under a new tag"
        )
    try:
        ecr.put_image(
            repositoryName=repository,
            imageManifest=source["imageManifest"],
            imageManifestMediaType=source["imageManifestMediaType"],
            imageTag=to_tag,
            imageDigest=digest,
        )
    except ecr.exceptions.ImageAlreadyExistsException:  # a concurrent promotion won the race
        return Promotion(repository, from_tag, to_tag, digest, changed=False)
    written = _image(ecr, repository, to_tag)
    if written is None or written["imageId"]["imageDigest"] != digest:
        raise PromotionError(f"{repository}:{to_tag} does not name {digest} after promotion")
    return Promotion(repository, from_tag, to_tag, digest, changed=True)


def _image(ecr: Any, repository: str, tag: str) -> dict[str, Any] | None:
    try:
        response = ecr.batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=MEDIA_TYPES,
        )
    except ecr.exceptions.RepositoryNotFoundException:
        raise InvalidPromotion(f"ECR repository {repository!r} does not exist") from None
    images = response.get("images") or []
    return images[0] if images else None
