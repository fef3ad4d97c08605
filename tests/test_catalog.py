"""The cloud catalog ($CLOUDINITD_HOME/clouds.yml): loading, errors with file:line, no secrets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudinitd.catalog import describe_catalog, find_secrets, format_catalog, load_catalog
from cloudinitd.errors import PlanError


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "clouds.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_absent_catalog_is_empty(tmp_path):
    assert load_catalog(tmp_path / "nowhere") == {}


def test_empty_catalog_is_empty(tmp_path):
    write(tmp_path, "# nothing yet\n")
    assert load_catalog(tmp_path) == {}


def test_loads_clouds_with_positions(tmp_path):
    path = write(
        tmp_path,
        """
        hotel:
          provider: ec2
          endpoint: https://svc.example.org:8444
          region: nimbus
          credentials: {profile: hotel}
        here:
          provider: local
        """,
    )
    catalog = load_catalog(tmp_path)
    assert set(catalog) == {"hotel", "here"}
    hotel = catalog["hotel"]
    assert hotel.provider == "ec2"
    assert hotel.options == {
        "endpoint": "https://svc.example.org:8444",
        "region": "nimbus",
        "credentials": {"profile": "hotel"},
    }
    assert hotel.pos.file == str(path) and hotel.pos.line == 1
    assert catalog["here"].pos.line == 6
    assert catalog["here"].options == {}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            """
            a:
              provider: ec2
              credentials:
                access_key_env: AK
                secret_access_key: abc/def+ghi
            """,
            5,
            "secret_access_key would hold a secret",
        ),
        (
            """
            a:
              provider: ec2
              password: hunter2
            """,
            3,
            "password would hold a secret",
        ),
        (
            """
            a:
              provider: ec2
              credentials: {access_key_env: AK, secret_key_env: "wJalr/XUtnFEMI+K7MDENG"}
            """,
            3,
            "secret_key_env must be the NAME of an environment variable",
        ),
        (
            """
            a:
              provider: ec2
              extra: [AKIAIOSFODNN7EXAMPLE]
            """,
            3,
            "looks like a credential",
        ),
        (
            """
            a:
              provider: ecc2
            """,
            2,
            "unknown provider 'ecc2' (did you mean 'ec2'?)",
        ),
        (
            """
            a:
              region: x
            """,
            1,
            "`provider:` is missing",
        ),
        (
            """
            a: [1, 2]
            """,
            1,
            "expected a mapping",
        ),
        (
            """
            a:
              provider: ec2
                region: bad-indent
            """,
            3,
            "invalid YAML",
        ),
    ],
    ids=[
        "secret-key",
        "password",
        "env-holds-secret",
        "akia-value",
        "typo-provider",
        "no-provider",
        "not-mapping",
        "bad-yaml",
    ],
)
def test_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line, str(err)
    assert words in str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert err.exit_code == 2


def test_secret_values_never_echoed(tmp_path):
    write(
        tmp_path,
        """
        a:
          provider: ec2
          credentials: {access_key_env: AK, secret_key_env: "wJalr/XUtnFEMI+K7MDENG"}
          secret: "s3cr3t-value"
        """,
    )
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert "wJalr" not in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_find_secrets_accepts_references():
    ok = {
        "endpoint": "http://127.0.0.1:5000",
        "key_name": "mykey",
        "credentials": {"access_key_env": "AK", "secret_key_env": "SK", "session_token_env": "T"},
        "images": {"debian-12": "ami-123"},
    }
    assert find_secrets(ok) == []
    assert [p for p, _ in find_secrets({"credentials": {"secret_key": "x"}})] == [
        ("credentials", "secret_key")
    ]


def test_describe_catalog_rows_and_text(tmp_path):
    write(
        tmp_path,
        """
        aws:
          provider: ec2
          region: us-east-1
          credentials: {access_key_env: MY_AK, secret_key_env: MY_SK}
        hotel:
          provider: ec2
          endpoint: https://svc.example.org:8444
          credentials: {profile: hotel}
        here:
          provider: local
        """,
    )
    rows = describe_catalog(load_catalog(tmp_path))
    assert [r["name"] for r in rows] == ["aws", "here", "hotel"]
    assert rows[0]["credentials"] == "env MY_AK/MY_SK"
    assert rows[2]["credentials"] == "profile hotel"
    assert rows[2]["endpoint"] == "https://svc.example.org:8444"
    assert rows[0]["source"].endswith("clouds.yml:1")
    text = format_catalog(rows)
    assert text.splitlines()[0].split() == ["NAME", "PROVIDER", "ENDPOINT", "REGION", "CREDENTIALS"]
    assert "hotel" in text and "env MY_AK/MY_SK" in text


def test_describe_catalog_check_against_test_cloud(tmp_path, ec2_cloud, ec2_credentials):
    cloud = ec2_cloud("cat")
    ak, sk = ec2_credentials
    write(
        tmp_path,
        f"""
        good:
          provider: ec2
          endpoint: {cloud.endpoint}
          region: us-east-1
          credentials: {{access_key_env: {ak}, secret_key_env: {sk}}}
        nokeys:
          provider: ec2
          endpoint: {cloud.endpoint}
          credentials: {{access_key_env: UNSET_AK_VAR_X, secret_key_env: UNSET_SK_VAR_X}}
        """,
    )
    rows = {r["name"]: r for r in describe_catalog(load_catalog(tmp_path), tmp_path, check=True)}
    assert "zone(s)" in rows["good"]["check"]
    assert "UNSET_AK_VAR_X" in rows["nokeys"]["error"] and "not set" in rows["nokeys"]["error"]
