"""The Query protocol and SigV4 check of `cloudinitd serve`, in process (no server).

Requests are signed exactly as boto3 signs them (botocore's SigV4Auth on an
AWSRequest); answers are parsed with botocore's own Query parser against the
autoscaling service model, so what passes here is what boto3 reads.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
from unittest import mock

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import QueryParser

from cloudinitd.service import query, sigv4
from cloudinitd.service.query import ApiError

HOST = "127.0.0.1:8445"
KEY, SECRET = "AKCIAAAAAAAAAAAAAAAA", "s3cret/Key+forTests0000000000000000000000"
BODY = b"Action=DescribeAutoScalingGroups&Version=2011-01-01"


def signed(body: bytes = BODY, key: str = KEY, secret: str = SECRET,
           when: datetime.datetime | None = None, service: str = "autoscaling",
           extra: dict[str, str] | None = None) -> tuple[list[tuple[str, str]], float]:
    """Headers as boto3 would send them, and the time they were signed at."""
    request = AWSRequest(method="POST", url=f"http://{HOST}/", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", **(extra or {})})
    when = when or datetime.datetime.now(datetime.UTC)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    headers = [(k, v) for k, v in request.headers.items()] + [("Host", HOST)]
    return headers, when.timestamp()


def verify(headers, body: bytes = BODY, now: float | None = None) -> str:
    return sigv4.verify("POST", "/", "", headers, body,
                        {KEY: SECRET}.get, now=now)


def code_of(exc_info: pytest.ExceptionInfo) -> tuple[str, int]:
    return exc_info.value.code, exc_info.value.status


# -- SigV4 ------------------------------------------------------------------------------

def test_a_request_signed_as_boto3_signs_it_is_accepted():
    headers, at = signed()
    assert verify(headers, now=at) == KEY


def test_wrong_secret_is_signature_does_not_match():
    headers, at = signed(secret="not-the-secret")
    with pytest.raises(ApiError) as err:
        verify(headers, now=at)
    assert code_of(err) == ("SignatureDoesNotMatch", 403)


def test_unknown_key_is_invalid_client_token_id():
    headers, at = signed(key="AKCIUNKNOWNKEY000000")
    with pytest.raises(ApiError) as err:
        verify(headers, now=at)
    assert code_of(err) == ("InvalidClientTokenId", 403)


@pytest.mark.parametrize("skew", [-16 * 60, 16 * 60])
def test_a_date_more_than_15_minutes_off_is_request_expired(skew):
    headers, at = signed()
    with pytest.raises(ApiError) as err:
        verify(headers, now=at + skew)
    assert code_of(err) == ("RequestExpired", 400)
    assert verify(headers, now=at + (14 * 60 if skew > 0 else -14 * 60)) == KEY


def test_a_changed_body_breaks_the_signature():
    headers, at = signed()
    with pytest.raises(ApiError) as err:
        verify(headers, body=BODY.replace(b"Describe", b"Delete"), now=at)
    assert code_of(err) == ("SignatureDoesNotMatch", 403)


def test_a_signed_body_hash_must_be_the_bodys_own():
    """botocore takes x-amz-content-sha256 on trust; the server must not."""
    other = b"Action=DeleteAutoScalingGroup&AutoScalingGroupName=web"
    headers, at = signed(body=BODY, extra={"X-Amz-Content-SHA256":
                                           hashlib.sha256(BODY).hexdigest()})
    assert verify(headers, body=BODY, now=at) == KEY
    with pytest.raises(ApiError) as err:
        verify(headers, body=other, now=at)
    assert code_of(err) == ("SignatureDoesNotMatch", 403)


def test_a_key_scoped_to_another_service_is_refused():
    headers, at = signed(service="ec2")
    with pytest.raises(ApiError) as err:
        verify(headers, now=at)
    assert code_of(err) == ("SignatureDoesNotMatch", 403)


def test_a_changed_host_breaks_the_signature():
    headers, at = signed()
    headers = [(k, "evil.example:80" if k == "Host" else v) for k, v in headers]
    with pytest.raises(ApiError) as err:
        verify(headers, now=at)
    assert code_of(err) == ("SignatureDoesNotMatch", 403)


@pytest.mark.parametrize(("auth", "code"), [
    (None, "MissingAuthenticationToken"),
    ("AWS AKCI:abc", "IncompleteSignature"),
    ("AWS4-HMAC-SHA256 Credential=AKCIAAAAAAAAAAAAAAAA/20250101/us-east-1/autoscaling/"
     "aws4_request, SignedHeaders=content-type;host, Signature=" + "0" * 64,
     "IncompleteSignature"),  # x-amz-date not signed
])
def test_malformed_authorization(auth, code):
    headers, at = signed()
    headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
    if auth:
        headers.append(("Authorization", auth))
    with pytest.raises(ApiError) as err:
        verify(headers, now=at)
    assert err.value.code == code
    assert SECRET not in err.value.message


def test_the_scope_date_must_be_the_requests_date():
    headers, at = signed()
    fixed = []
    for k, v in headers:
        if k.lower() == "authorization":
            date = v.split("/")[1]
            v = v.replace(f"/{date}/", "/19990101/")
        fixed.append((k, v))
    with pytest.raises(ApiError) as err:
        verify(fixed, now=at)
    assert code_of(err) == ("SignatureDoesNotMatch", 403)


# -- the form -------------------------------------------------------------------------

def test_form_members_and_tags():
    params = query.parse_form(
        b"Action=CreateAutoScalingGroup&AvailabilityZones.member.2=b&AvailabilityZones.member.1=a"
        b"&Tags.member.1.Key=clouds&Tags.member.1.Value=a%3A3%2Cb%3A-1"
        b"&Tags.member.2.Key=n_preserve&Tags.member.2.Value=5")
    assert query.members(params, "AvailabilityZones") == ["a", "b"]
    assert query.tags(params) == {"clouds": "a:3,b:-1", "n_preserve": "5"}


@pytest.mark.parametrize(("body", "code"), [
    (b"Action=A&Action=B", "MalformedQueryString"),
    (b"\xff\xfe=1", "MalformedQueryString"),
    (b"&".join(b"k%d=1" % i for i in range(query.MAX_FIELDS + 1)), "MalformedQueryString"),
])
def test_bad_forms_are_refused(body, code):
    with pytest.raises(ApiError) as err:
        query.parse_form(body)
    assert err.value.code == code


@pytest.mark.parametrize("name", ["X.member.0", "X.member.101", "X.member.one"])
def test_member_numbers_are_bounded(name):
    with pytest.raises(ApiError):
        query.members({name: "v"}, "X")


def test_integers_are_bounded_and_required_means_required():
    assert query.integer({"N": "7"}, "N", 0, 10) == 7
    assert query.integer({}, "N", 0, 10, 3) == 3
    for bad in ("11", "-1", "1e9", "x", "9" * 400):
        with pytest.raises(ApiError) as err:
            query.integer({"N": bad}, "N", 0, 10)
        assert err.value.code == "ValidationError" and bad[:20] not in err.value.message
    with pytest.raises(ApiError) as err:
        query.required({}, "ImageId")
    assert err.value.code == "MissingParameter"


def test_user_data_is_any_bytes_kept_exactly_and_bounded():
    text = b"#!/bin/sh\necho hi\n"
    assert query.decode_user_data(base64.b64encode(text).decode(), 100) == text
    packed = gzip.compress(text)  # what Terraform's cloudinit_config sends by default
    for data in (packed, b"\xff\xfe", b"a\0b", b"x" * 100):
        assert query.decode_user_data(base64.b64encode(data).decode(), 100) == data
    for bad in ("not base64!", base64.b64encode(b"x" * 101).decode()):
        with pytest.raises(ApiError) as err:
            query.decode_user_data(bad, 100)
        assert err.value.code == "ValidationError" and bad[:12] not in err.value.message


# -- the XML, read by botocore --------------------------------------------------------

def _model():
    return botocore.session.get_session().get_service_model("autoscaling")


def test_error_response_is_what_botocore_reads_as_an_aws_error():
    body = query.error_body(ApiError("ValidationError", "bad <thing> & more"), "rid-1")
    parsed = QueryParser().parse({"body": body, "headers": {}, "status_code": 400},
                                 _model().operation_model("SetDesiredCapacity").output_shape)
    assert parsed["Error"] == {"Type": "Sender", "Code": "ValidationError",
                               "Message": "bad <thing> & more"}
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-1"


def _instance(instance_id: str, cloud: str, state: str, idx: int):
    from cloudinitd.records import Instance

    return Instance(id=idx + 1, run="alice.web", service="vm", idx=idx, cloud=cloud,
                    provider="ec2", instance_id=instance_id, client_token=None, state=state,
                    address=None, private_address=None, hostname=None, boot_hash=None,
                    configured=0, launched=0.0, terminated=None)


def test_describe_groups_xml_parses_with_the_service_model():
    from cloudinitd.service import xmlout
    from cloudinitd.service.state import Group

    group = Group(owner="alice", name="web", run="alice.web", launch_config="lc",
                  placements=[("a", 3), ("b", -1)], min_size=5, max_size=5, desired=5,
                  tags={"clouds": "a:3,b:-1"}, phantom=True, status="active", created=0.0)
    rows = [_instance("i-1", "b", "running", 0), _instance("i-2", "a", "error", 1)]
    result = query.element(query.ET.Element("DescribeAutoScalingGroupsResult"),
                           "AutoScalingGroups")
    xmlout.group_member(result, group, rows)
    wrapper = query.ET.Element("DescribeAutoScalingGroupsResult")
    wrapper.append(result)
    body = query.success("DescribeAutoScalingGroups", "rid-2", wrapper)
    assert query.NAMESPACE.encode() in body
    parsed = QueryParser().parse(
        {"body": body, "headers": {}, "status_code": 200},
        _model().operation_model("DescribeAutoScalingGroups").output_shape)
    (g,) = parsed["AutoScalingGroups"]
    assert (g["AutoScalingGroupName"], g["DesiredCapacity"], g["AvailabilityZones"]) == (
        "web", 5, ["a", "b"])
    assert [(i["InstanceId"], i["AvailabilityZone"], i["LifecycleState"], i["HealthStatus"])
            for i in g["Instances"]] == [("i-1", "b", "InService", "Healthy"),
                                         ("i-2", "a", "InService", "Unhealthy")]
    assert g["Tags"][0]["Key"] == "clouds"


@pytest.mark.parametrize(("header", "value", "answer"), [
    # hmac.compare_digest raises TypeError on a str with non-ASCII characters
    ("X-Amz-Content-Sha256", "\x80" * 64, ("SignatureDoesNotMatch", 403)),
    ("Authorization", None, ("IncompleteSignature", 400)),  # a signature is hex digits
    ("Host", "[", ("SignatureDoesNotMatch", 403)),  # urlsplit: "Invalid IPv6 URL"
])
def test_a_header_that_breaks_the_check_is_a_refusal_not_a_crash(header, value, answer):
    """Each answered 500 InternalFailure with a logged traceback (found by
    tests/test_fuzz_service.py)."""
    headers, at = signed()
    if header == "Authorization":
        headers = [(k, v[:-1] + "\x80" if k == header else v) for k, v in headers]
    else:
        headers = [(k, v) for k, v in headers if k != header] + [(header, value)]
    with pytest.raises(ApiError) as err:
        verify(headers, now=at)
    assert code_of(err) == answer
