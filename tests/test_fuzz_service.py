"""Requests to `cloudinitd serve` come from other people: varied at random (hypothesis).

Whatever a request holds, the service answers with a result or an AWS error
(an `ApiError`: 4xx, or the 503/500 it means to send), never an exception of
its own (which the app turns into a 500 InternalFailure and logs as a bug).
Three layers, each as the app calls it: the form parser, the SigV4 check,
and sequences of Auto Scaling actions on `memory` clouds (no loop, no
launches: the actions only record what is wanted). The protocol as boto3
speaks it is tests/test_service_protocol.py; the real server, test_service_*.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cloudinitd.testing  # noqa: F401  (registers the `memory` provider kind)
from cloudinitd.plan.limits import Limits
from cloudinitd.service import query, sigv4
from cloudinitd.service.actions import ACTIONS, Api
from cloudinitd.service.query import ApiError
from cloudinitd.service.state import ServiceState
from cloudinitd.store import Store
from cloudinitd.testing import forget_clouds
from tests.test_fuzz_plans import EXAMPLES
from tests.test_service_protocol import BODY, KEY, SECRET, signed

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

NAMES = ["AutoScalingGroupName", "LaunchConfigurationName", "ImageId", "InstanceType",
         "KeyName", "UserData", "MinSize", "MaxSize", "DesiredCapacity", "HonorCooldown",
         "ForceDelete", "MaxRecords", "NextToken", "AutoScalingGroupNames.member.1",
         "AutoScalingGroupNames.member.2", "LaunchConfigurationNames.member.1",
         "Tags.member.1.Key", "Tags.member.1.Value", "Tags.member.2.Key", "Tags.member.2.Value",
         "Tags.member.0.Key", "Tags.member.99999.Key", "Tags.member.x.Value", "Version"]
VALUES = st.one_of(
    st.sampled_from([
        "", "g", "lc", "lc@m1", "lc@m2", "lc@nowhere", "@", "lc@", "img", "small", "0", "1", "2",
        "-1", "10", "11", "1000", "99999999999999999999", "1e3", "true", "false",
        "PHANTOM_DEFINITION", "error_overflow_n_preserving", "clouds", "m1:1,m2:2", "m1:x",
        "m1:-1", "m1:1,m1:1", "m1:99999999999", ",", ":", "n_preserve", "aGVsbG8=", "!!",
        "x" * 3000, "a\x00b", "../../etc", "2011-01-01", "hosts", "$(id)", "\u2028"]),
    st.text(max_size=16))
CALLS = st.lists(st.tuples(st.sampled_from(sorted(ACTIONS)),
                           st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=8),
                           st.sampled_from(["alice", "bob"])), min_size=1, max_size=8)


@FUZZ
@given(calls=CALLS)
def test_any_sequence_of_actions_gets_results_or_aws_errors(calls):
    with tempfile.TemporaryDirectory(prefix="cid-fuzz-") as d:
        home = Path(d)
        (home / "clouds.yml").write_text("m1: {provider: memory}\nm2: {provider: memory}\n"
                                         "hosts: {provider: static}\n")
        api = Api(home=home, store=Store(home), state=ServiceState(home),
                  limits=Limits(per_service=10, per_run=12))
        try:
            for action, params, user in calls:
                try:
                    ACTIONS[action](api, user, params)
                except ApiError as err:
                    assert 400 <= err.status < 600 and err.code and err.message
                    query.error_body(err, "r-1")  # the answer it becomes is well-formed
        finally:
            forget_clouds(home)


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_any_body_is_a_form_or_malformed_query_string(body):
    try:
        params = query.parse_form(body)
    except ApiError as err:
        assert err.code == "MalformedQueryString"
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


HEADERS = ["Authorization", "X-Amz-Date", "Host", "Content-Type", "X-Amz-Content-Sha256",
           "X-Amz-Security-Token"]


@FUZZ
@given(drop=st.sets(st.sampled_from(HEADERS)),
       replace=st.dictionaries(st.sampled_from(HEADERS), st.one_of(
           st.text(max_size=40), st.sampled_from([
               "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=", "AWS4-HMAC-SHA256 "
               f"Credential={KEY}/20260101/us-east-1/autoscaling/aws4_request, "
               "SignedHeaders=host, Signature=00", "20260101T000000Z", "99999999T999999Z",
               "garbage", ",,,", "Credential=a/b/c/d/e, SignedHeaders=, Signature="])),
           max_size=3),
       extra=st.lists(st.tuples(st.sampled_from(HEADERS), st.text(max_size=20)), max_size=2),
       body=st.sampled_from([BODY, b"", b"Action=X"]))
def test_any_change_to_a_signed_request_is_refused_with_an_aws_error(drop, replace, extra,
                                                                      body):
    original, at = signed()
    headers = [(k, replace.get(k, v)) for k, v in original if k not in drop] + extra
    try:
        key = sigv4.verify("POST", "/", "", headers, body, {KEY: SECRET}.get, now=at)
    except ApiError as err:
        assert 400 <= err.status < 500, (err.code, err.status)
        return
    # Accepted: then nothing the signature covers was changed.
    def values(pairs, name):
        return [v for k, v in pairs if k.lower() == name]
    auth = dict(original)["Authorization"]
    covered = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    assert key == KEY and body == BODY
    for name in [*covered, "authorization"]:
        assert values(headers, name) == values(original, name), f"{name} changed, accepted"
