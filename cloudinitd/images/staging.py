"""Stage a disk image file: a resumable multipart upload to the cloud's S3 store, then register.

boto3's managed transfer starts over when interrupted, so the loop is ours:
an upload left open by an interrupted `image stage` (found with
ListMultipartUploads under the same key) is resumed; ListParts tells which
parts the store has, and a part is sent again only when it is missing or
its ETag (the MD5 of the part) does not match the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.images.naming import MIN_PART_SIZE, check_name
from cloudinitd.providers.ec2.images import (
    TAG_LOCATION,
    TAG_SIZE,
    TAG_SOURCE,
    Ec2Images,
    make_s3_client,
    s3_error,
)

Progress = Callable[[int], None]  # bytes just sent (boto3's Callback convention)
RAW_OR_QCOW2 = "raw or qcow2"


@dataclass
class StageResult:
    name: str
    image_id: str
    url: str
    bucket: str
    key: str
    size: int
    format: str
    parts: int
    uploaded_parts: list[int] = field(default_factory=list)
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def disk_format(path: Path) -> str:
    """qcow2 by its magic bytes; anything else is taken as a raw disk."""
    with path.open("rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Stager:
    """Upload, register and unstage images of one ec2 cloud (an Ec2Provider)."""

    def __init__(self, provider: Any):
        self.provider = provider
        self.opts = provider.opts
        self.storage = provider.opts.storage
        self.images = Ec2Images(provider)
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = make_s3_client(self.opts)
        return self._s3

    def _s3_call(self, action: str, method: str, **params: Any) -> dict:
        try:
            return getattr(self.s3, method)(**params)
        except ProviderError:
            raise
        except Exception as exc:
            raise s3_error(exc, self.opts, action) from None

    # -- upload ---------------------------------------------------------------------
    def _ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.storage.bucket)
        except Exception:
            # Cumulus users get their repository bucket made for them; a fresh store
            # (or moto) may not have it yet.
            self._s3_call("CreateBucket", "create_bucket", Bucket=self.storage.bucket)

    def _open_upload(self, key: str) -> tuple[str, bool]:
        """The upload id of an unfinished upload of `key` (resumed), else a new one."""
        answer = self._s3_call("ListMultipartUploads", "list_multipart_uploads",
                               Bucket=self.storage.bucket, Prefix=key)
        mine = [u for u in answer.get("Uploads", []) if u.get("Key") == key]
        if mine:
            mine.sort(key=lambda u: u.get("Initiated") or 0)
            return mine[-1]["UploadId"], True
        answer = self._s3_call("CreateMultipartUpload", "create_multipart_upload",
                               Bucket=self.storage.bucket, Key=key,
                               ContentType="application/octet-stream")
        return answer["UploadId"], False

    def _parts(self, key: str, upload_id: str) -> dict[int, dict]:
        found: dict[int, dict] = {}
        marker = 0
        while True:
            answer = self._s3_call("ListParts", "list_parts", Bucket=self.storage.bucket,
                                   Key=key, UploadId=upload_id, PartNumberMarker=marker)
            for part in answer.get("Parts", []):
                found[part["PartNumber"]] = part
            if not answer.get("IsTruncated"):
                return found
            marker = int(answer.get("NextPartNumberMarker") or max(found))

    def upload(self, path: Path, key: str, progress: Progress) -> tuple[int, list[int], bool]:
        """Multipart upload of `path` to `key`: (parts, part numbers sent now, resumed)."""
        size = path.stat().st_size
        self._ensure_bucket()
        upload_id, resumed = self._open_upload(key)
        have = self._parts(key, upload_id) if resumed else {}
        part_size = self.storage.part_size
        if have.get(1) and have[1]["Size"] >= MIN_PART_SIZE and len(have) > 1:
            part_size = int(have[1]["Size"])  # resume with the part size it started with
        count = max(1, -(-size // part_size))
        sent: list[int] = []
        done: list[dict] = []
        with path.open("rb") as f:
            for number in range(1, count + 1):
                f.seek((number - 1) * part_size)
                data = f.read(part_size)
                etag = f'"{_md5(data)}"'
                old = have.get(number)
                if old and old.get("ETag") == etag and old.get("Size") == len(data):
                    progress(len(data))
                    done.append({"PartNumber": number, "ETag": etag})
                    continue
                answer = self._s3_call("UploadPart", "upload_part", Bucket=self.storage.bucket,
                                       Key=key, UploadId=upload_id, PartNumber=number, Body=data)
                done.append({"PartNumber": number, "ETag": answer["ETag"]})
                sent.append(number)
                progress(len(data))
        self._s3_call("CompleteMultipartUpload", "complete_multipart_upload",
                      Bucket=self.storage.bucket, Key=key, UploadId=upload_id,
                      MultipartUpload={"Parts": done})
        return count, sent, resumed

    # -- stage / unstage ----------------------------------------------------------------
    def stage(self, path: Path, name: str, progress: Progress,
              on_uploaded: Callable[[str], None] | None = None) -> StageResult:
        check_name(name)
        if not path.is_file():
            raise UsageError(f"{path}: no such image file")
        if path.stat().st_size == 0:
            raise UsageError(f"{path}: the image file is empty")
        if self.images.find(name) is not None:
            raise UsageError(f"cloud {self.opts.cloud!r}: an image named {name!r} exists "
                             f"already (`cloudinitd image delete {name} --cloud "
                             f"{self.opts.cloud}` first)")
        key = self.storage.key(name)
        fmt = disk_format(path)
        parts, sent, resumed = self.upload(path, key, progress)
        if on_uploaded:
            on_uploaded(key)
        size = path.stat().st_size
        url = self.storage.url(name)
        image_id = self.images.register(
            name, self.storage.location(name),
            {TAG_SOURCE: f"staged {os.path.basename(path)} ({fmt})", TAG_SIZE: str(size),
             TAG_LOCATION: url, "cloudinitd:format": fmt},
        )
        return StageResult(name=name, image_id=image_id, url=url, bucket=self.storage.bucket,
                           key=key, size=size, format=fmt, parts=parts, uploaded_parts=sent,
                           resumed=resumed)

    def delete_object(self, key: str) -> bool:
        """Delete the object and abort any unfinished upload of it; True if anything went."""
        gone = False
        answer = self._s3_call("ListMultipartUploads", "list_multipart_uploads",
                               Bucket=self.storage.bucket, Prefix=key)
        for upload in answer.get("Uploads", []):
            if upload.get("Key") == key:
                self._s3_call("AbortMultipartUpload", "abort_multipart_upload",
                              Bucket=self.storage.bucket, Key=key, UploadId=upload["UploadId"])
                gone = True
        try:
            self.s3.head_object(Bucket=self.storage.bucket, Key=key)
        except Exception:
            return gone
        self._s3_call("DeleteObject", "delete_object", Bucket=self.storage.bucket, Key=key)
        return True

    def unstage(self, name: str) -> dict[str, Any]:
        """Deregister every image of ours named `name`, and delete its object."""
        images = [i for i in self.images.owned(name) if i.get("State") != "deregistered"]
        for image in images:
            self.images.deregister(image["ImageId"])
        key = self.storage.key(name)
        deleted = self.delete_object(key)
        if not images and not deleted:
            raise UsageError(f"cloud {self.opts.cloud!r}: no image named {name!r} "
                             f"(and no object {self.storage.bucket}/{key})")
        return {"name": name, "deregistered": [i["ImageId"] for i in images],
                "object": f"{self.storage.bucket}/{key}", "object_deleted": deleted}
