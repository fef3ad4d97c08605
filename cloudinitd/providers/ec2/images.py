"""EC2 image calls: list the user's images, find one by name, save an instance, register a file.

Also makes the S3 client of a cloud's store, from the same credential
references as its EC2 client (the keys go straight from the environment or
profile to boto3, never through our objects or messages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudinitd.errors import ProviderError
from cloudinitd.host.waiting import wait_until
from cloudinitd.providers.base import Say, say_nothing
from cloudinitd.providers.ec2.client import _env, translate
from cloudinitd.providers.ec2.options import DEFAULT_REGION, Ec2Options

TAG_RUN = "cloudinitd:run"
TAG_SOURCE = "cloudinitd:source"
TAG_SIZE = "cloudinitd:size"
TAG_LOCATION = "cloudinitd:location"



def make_s3_client(opts: Ec2Options) -> Any:
    """A boto3 S3 client for the cloud's store (path-style: Cumulus and moto need it)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    creds, kwargs = opts.credentials, {}
    if creds.profile:
        try:
            session = boto3.session.Session(profile_name=creds.profile)
        except ProfileNotFound:
            raise ProviderError(f"cloud {opts.cloud!r}: AWS profile {creds.profile!r} not "
                                "found (~/.aws/config, ~/.aws/credentials)") from None
    else:
        if creds.access_key_env:
            kwargs["aws_access_key_id"] = _env(opts, creds.access_key_env, "access_key_env")
            kwargs["aws_secret_access_key"] = _env(opts, creds.secret_key_env, "secret_key_env")
            if creds.session_token_env:
                kwargs["aws_session_token"] = _env(opts, creds.session_token_env,
                                                   "session_token_env")
        session = boto3.session.Session()
    config = Config(
        retries={"mode": "standard", "total_max_attempts": opts.max_attempts},
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        s3={"addressing_style": "path"},
        # Checksums only when the API requires them: older S3-compatible stores
        # (Cumulus, Walrus) reject the newer trailing-checksum uploads.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="cloudinitd",
    )
    region = opts.region or session.region_name or DEFAULT_REGION
    return session.client("s3", region_name=region, endpoint_url=opts.storage.endpoint,
                           config=config, **kwargs)


def image_row(image: dict) -> dict[str, Any]:
    """What `image list` shows of one DescribeImages entry."""
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    size = tags.get(TAG_SIZE)
    if size is None:
        gib = sum((b.get("Ebs") or {}).get("VolumeSize") or 0
                  for b in image.get("BlockDeviceMappings", []))
        size = gib * 1024**3 if gib else None
    return {
        "name": image.get("Name"),
        "image_id": image["ImageId"],
        "state": image.get("State"),
        "size": int(size) if size is not None else None,
        "created": image.get("CreationDate"),
        "run": tags.get(TAG_RUN),
        "source": tags.get(TAG_SOURCE),
        "location": tags.get(TAG_LOCATION) or image.get("ImageLocation"),
    }


class Ec2Images:
    """Image calls against one EC2-compatible cloud (an Ec2Provider's client)."""

    def __init__(self, provider: Any):
        self.provider = provider
        self.opts: Ec2Options = provider.opts

    def _call(self, action: str, **params: Any) -> dict:
        return self.provider._call(action, **params)

    def owned(self, name: str | None = None) -> list[dict]:
        """DescribeImages Owners=self (optionally one name), newest first."""
        params: dict[str, Any] = {"Owners": ["self"]}
        if name is not None:
            params["Filters"] = [{"Name": "name", "Values": [name]}]
        images = self._call("DescribeImages", **params).get("Images", [])
        return sorted(images, key=lambda i: i.get("CreationDate") or "", reverse=True)

    def list(self) -> list[dict[str, Any]]:
        return [image_row(i) for i in self.owned()]

    def find(self, name: str) -> dict | None:
        found = [i for i in self.owned(name) if i.get("State") != "deregistered"]
        return found[0] if found else None

    def resolve(self, name: str) -> str:
        """An image NAME of the user's own images -> its AMI id."""
        image = self.find(name)
        if image is None:
            raise ProviderError(f"cloud {self.opts.cloud!r}: no image named {name!r} owned by "
                                "you (see `cloudinitd image list`)")
        return image["ImageId"]

    def _refuse_taken(self, name: str) -> None:
        if self.find(name) is not None:
            raise ProviderError(f"cloud {self.opts.cloud!r}: an image named {name!r} exists "
                                "already (`cloudinitd image delete` it first)")

    def save(self, instance_id: str, name: str, tags: dict[str, str], timeout: float = 1800,
             say: Say = say_nothing) -> str:
        """CreateImage of a running instance (NoReboot: it keeps running), wait available."""
        self._refuse_taken(name)
        answer = self._call(
            "CreateImage", InstanceId=instance_id, Name=name, NoReboot=True,
            Description=f"saved by cloudinitd from {instance_id}",
            TagSpecifications=[{"ResourceType": "image",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        image_id = answer["ImageId"]
        say(f"CreateImage {instance_id} -> {image_id}; waiting until available")
        self.wait_available(image_id, timeout, say)
        return image_id

    def register(self, name: str, location: str, tags: dict[str, str]) -> str:
        """RegisterImage of a staged object (moto and EC2-compatible clouds accept this)."""
        self._refuse_taken(name)
        answer = self._call("RegisterImage", Name=name, ImageLocation=location,
                            Description=f"staged by cloudinitd at {location}")
        image_id = answer["ImageId"]
        self._call("CreateTags", Resources=[image_id],
                   Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        return image_id

    def wait_available(self, image_id: str, timeout: float, say: Say = say_nothing) -> None:
        """Poll DescribeImages with a growing interval, bounded by `timeout`."""
        seen: list[str] = []  # the states so far: each new one is said once

        def available() -> bool:
            images = self._call("DescribeImages", ImageIds=[image_id]).get("Images", [])
            state = images[0].get("State") if images else "missing"
            if not seen or state != seen[-1]:
                say(f"image {image_id}: {state}")
                seen.append(state)
            if state in ("failed", "error", "invalid", "deregistered"):
                raise ProviderError(f"cloud {self.opts.cloud!r}: image {image_id} is {state}")
            return state == "available"

        if not wait_until(available, timeout, 0.5, backoff=1.5,
                          max_interval=max(self.opts.poll_interval, 0.5) * 5):
            raise ProviderError(f"cloud {self.opts.cloud!r}: image {image_id} not available "
                                f"after {timeout:.0f}s (state {seen[-1]})")

    def deregister(self, image_id: str) -> None:
        try:
            self._call("DeregisterImage", ImageId=image_id)
        except ProviderError as exc:
            if "NotFound" not in str(exc) and "Unavailable" not in str(exc):
                raise


def s3_error(exc: Exception, opts: Ec2Options, action: str) -> ProviderError:
    """A botocore failure talking to the store -> one clear ProviderError (no secrets)."""
    error = translate(exc, opts, action)
    return ProviderError(str(error).replace("the EC2 endpoint", "the S3 store")
                         .replace(f"({opts.endpoint or 'AWS'})",
                                  f"(store {opts.storage.endpoint or 'AWS S3'})"))


class Ec2ImageHooks:
    """The provider's image hooks (providers/base.py) on an EC2-compatible cloud.

    list: DescribeImages owned by the user; save: CreateImage (NoReboot) tagged with
    the run; stage: the resumable multipart upload to the cloud's store, then
    RegisterImage; delete: deregister and delete the staged object.
    """

    def check_image_name(self, name: str) -> str:
        from cloudinitd.images.naming import check_name

        return check_name(name)

    def list_images(self) -> list[dict[str, Any]]:
        return Ec2Images(self).list()

    def has_image(self, name: str) -> bool:
        return Ec2Images(self).find(name) is not None

    def save_image(self, request: Any, say: Say = say_nothing) -> dict[str, Any]:
        tags = {TAG_RUN: request.run, TAG_SOURCE: request.source, "Name": request.name}
        image_id = Ec2Images(self).save(request.instance_id, request.name, tags,
                                        timeout=request.timeout, say=say)
        return {"name": request.name, "image_id": image_id}

    def import_image(self, path: Any, name: str, sent: Callable[[int], None],
                     say: Say = say_nothing) -> dict[str, Any]:
        from cloudinitd.images.staging import Stager

        return Stager(self).stage(path, name, sent).as_dict()

    def delete_image(self, name: str, force: bool = False) -> dict[str, Any]:
        from cloudinitd.images.naming import name_from_url
        from cloudinitd.images.staging import Stager

        return Stager(self).unstage(name_from_url(name))
