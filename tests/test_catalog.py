"""The cloud catalog ($CLOUDINITD_HOME/clouds.yml): loading, errors with file:line, no secrets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudinitd.catalog import describe_catalog, format_catalog, load_catalog, parse_catalog
from cloudinitd.cloudspec import CREDENTIALS, PROVIDER_SCHEMAS, SECRET_NAME_HINT
from cloudinitd.errors import PlanError, PlanErrors
from cloudinitd.plan.loader import load_plan
from cloudinitd.providers import KINDS
from cloudinitd.secretcheck import looks_like_secret, secret_key_name, url_problem


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


ERROR_CASES = {
    "secret-key": (
        """
        a:
          provider: ec2
          credentials:
            access_key_env: AK
            secret_access_key: abc/def+ghi
        """,
        5,
        "credentials.secret_access_key would hold a secret",
    ),
    "password": (
        """
        a:
          provider: ec2
          password: hunter2
        """,
        3,
        "password would hold a secret",
    ),
    "env-holds-secret": (
        """
        a:
          provider: ec2
          credentials: {access_key_env: AK, secret_key_env: "wJalr/XUtnFEMI+K7MDENG"}
        """,
        3,
        "credentials.secret_key_env looks like a credential",
    ),
    "akia-as-env-name": (
        """
        a:
          provider: ec2
          credentials:
            access_key_env: AKIAIOSFODNN7EXAMPLE
            secret_key_env: SK
        """,
        4,
        "credentials.access_key_env looks like a credential",
    ),
    "akia-under-unknown-key": (
        """
        a:
          provider: ec2
          extra: [AKIAIOSFODNN7EXAMPLE]
        """,
        3,
        "extra[0] looks like a credential",
    ),
    "unknown-key": (
        """
        a:
          provider: ec2
          region: r
          key: s3cr3t
        """,
        4,
        "unknown key 'key' (known: address, connect_timeout, credentials",
    ),
    "typo-key": (
        """
        a:
          provider: ec2
          regoin: us-east-1
        """,
        3,
        "unknown key 'regoin' (did you mean 'region'?)",
    ),
    "typo-in-credentials": (
        """
        a:
          provider: ec2
          credentials:
            profle: hotel
        """,
        4,
        "unknown key 'profle' in credentials (did you mean 'profile'?)",
    ),
    "access-key-env-at-top": (
        """
        a:
          provider: ec2
          access_key_env: AK
        """,
        3,
        "unknown key 'access_key_env'",
    ),
    "userinfo-in-endpoint": (
        """
        a:
          provider: ec2
          region: r
          endpoint: http://KEYID:s3cret@127.0.0.1:8773/services/Cloud
        """,
        4,
        "endpoint must not contain a user name or password",
    ),
    "query-in-endpoint": (
        """
        a:
          provider: ec2
          endpoint: https://ec2.example.org/?X-Amz-Signature=abc
        """,
        3,
        "endpoint must not have a query",
    ),
    "not-a-url": (
        """
        a:
          provider: ec2
          endpoint: ftp://ec2.example.org/
        """,
        3,
        "endpoint must be a URL like https://host",
    ),
    "half-credentials": (
        """
        a:
          provider: ec2
          credentials: {access_key_env: AK}
        """,
        3,
        "credentials: access_key_env and secret_key_env go together",
    ),
    "profile-and-env": (
        """
        a:
          provider: ec2
          credentials: {profile: p, access_key_env: AK, secret_key_env: SK}
        """,
        3,
        "credentials: give either profile or access_key_env/secret_key_env, not both",
    ),
    "wrong-type": (
        """
        a:
          provider: ec2
          region: r
          max_attempts: many
        """,
        4,
        "max_attempts: expected a whole number from 1 to 20",
    ),
    "wrong-enum": (
        """
        a:
          provider: ec2
          address: elastic
        """,
        3,
        "address: must be one of public, private",
    ),
    "qemu-accel": (
        """
        a:
          provider: qemu
          accel: hvf
        """,
        3,
        "accel: must be one of kvm, tcg",
    ),
    "qemu-size": (
        """
        a:
          provider: qemu
          sizes:
            huge: [64000]
        """,
        4,
        "sizes.huge: expected [memory_mb, cpus]",
    ),
    "local-lxcpath": (
        """
        a:
          provider: local
          lxcpath: relative/dir
        """,
        3,
        "lxcpath: expected an absolute directory path",
    ),
    "static-takes-nothing": (
        """
        a:
          provider: static
          region: r
        """,
        3,
        "unknown key 'region' (this provider takes no options)",
    ),
    "typo-provider": (
        """
        a:
          provider: ecc2
        """,
        2,
        "unknown provider 'ecc2' (did you mean 'ec2'?)",
    ),
    "no-provider": (
        """
        a:
          region: x
        """,
        1,
        "`provider:` is missing",
    ),
    "not-mapping": (
        """
        a: [1, 2]
        """,
        1,
        "expected a mapping",
    ),
    "bad-name": (
        """
        "a b":
          provider: local
        """,
        1,
        "a cloud name is letters, digits",
    ),
    "bad-yaml": (
        """
        a:
          provider: ec2
            region: bad-indent
        """,
        3,
        "bad YAML",
    ),
}


@pytest.mark.parametrize(("text", "line", "words"), ERROR_CASES.values(), ids=ERROR_CASES)
def test_errors_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line, str(err)
    assert words in str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert "\n" not in str(err)
    assert err.exit_code == 2


# (entry lines, the secret written in them): each must be refused without echoing it.
PASTED = [
    ("endpoint: http://AKIAPASTEDKEY0000001:pw-Pasted-9x@127.0.0.1:5000/", "pw-Pasted-9x"),
    ("endpoint: http://AKIAPASTEDKEY0000001:pw-Pasted-9x@127.0.0.1:5000/", "AKIAPASTEDKEY0000001"),
    ("endpoint: https://h.example/p?token=tok-Pasted-77", "tok-Pasted-77"),
    ("key: s3cr3t-Pasted-1", "s3cr3t-Pasted-1"),
    ("secret: s3cr3t-Pasted-2", "s3cr3t-Pasted-2"),
    ("aws_secret_access_key: s3cr3t-Pasted-3", "s3cr3t-Pasted-3"),
    ("credentials: {secret_key: s3cr3t-Pasted-4}", "s3cr3t-Pasted-4"),
    ("credentials: {session_token: s3cr3t-Pasted-5}", "s3cr3t-Pasted-5"),
    ("credentials: {access_key_env: AK, secret_key_env: wJalrXUtnFEMI/K7MDENG+Pasted6}",
     "wJalrXUtnFEMI/K7MDENG+Pasted6"),
    ("credentials: {profile: AKIAPASTEDKEY0000007}", "AKIAPASTEDKEY0000007"),
    ("region: wJalrXUtnFEMI/K7MDENG/bPxRfiCYPASTED8KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPASTED8KEY"),
    ("images: {AKIAPASTEDKEY0000009: ami-1}", "AKIAPASTEDKEY0000009"),
    ("max_attempts: Xq9vT2mLp8RzK4wN7bYcPasted10", "Xq9vT2mLp8RzK4wN7bYcPasted10"),
    ("security_groups: [{Xq9vT2mLp8RzK4wN7bYcPasted11: 1}]", "Xq9vT2mLp8RzK4wN7bYcPasted11"),
    ("user_data: 'export K=AKIAPASTEDKEY0000012'", "AKIAPASTEDKEY0000012"),
    ("provider2: Xq9vT2mLp8RzK4wN7bYcPasted13", "Xq9vT2mLp8RzK4wN7bYcPasted13"),
    ('images: {"a\\nb": AKIAPASTEDKEY0000014}', "AKIAPASTEDKEY0000014"),
]


@pytest.mark.parametrize(("line", "secret"), PASTED, ids=[s for _, s in PASTED])
def test_pasted_secrets_refused_and_never_echoed(tmp_path, line, secret):
    path = write(tmp_path, f"a:\n  provider: ec2\n  {line}\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert str(info.value).startswith(f"{path}:3: cloud 'a': ")
    assert secret not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_secret_as_provider_or_cloud_name_is_not_echoed(tmp_path):
    write(tmp_path, "a:\n  provider: Xq9vT2mLp8RzK4wN7bYcName\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert "Xq9vT2mLp8RzK4wN7bYcName" not in str(info.value)
    write(tmp_path, "AKIAPASTEDKEY0000099:\n  provider: local\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert "AKIAPASTEDKEY0000099" not in str(info.value)


# Key names that say "I hold a secret", wherever the word stands, in any case.
SECRET_KEY_NAMES = [
    "secret", "Secret", "client_secret", "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY",
    "secret_key", "password", "db_password", "PASSWORD", "passwd", "user_passwd",
    "passphrase", "key_passphrase", "token", "Token", "session_token", "aws_session_token",
    "auth_token", "private_key", "ssh_private_key", "privateKey", "access_key",
    "aws_access_key_id", "accessKey", "api_key", "x_api_key", "apikey", "APIKey",
]  # fmt: skip
# Names that are references or plain settings, never secrets themselves.
PLAIN_KEY_NAMES = [
    "profile", "region", "endpoint", "key_name", "keypair", "credentials", "images",
    "instance_types", "security_groups", "subnet", "user_data", "address", "max_attempts",
    "poll_interval", "lxcpath", "sizes", "accel", "monkey", "keyboard", "passage",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_KEY_NAMES)
def test_secret_key_names_are_recognised_anywhere_in_the_name(tmp_path, name):
    assert secret_key_name(name)
    path = write(tmp_path, f"a:\n  provider: ec2\n  credentials:\n    {name}: some-value\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert str(info.value) == f"{path}:4: cloud 'a': credentials.{name} {SECRET_NAME_HINT}"


@pytest.mark.parametrize("name", PLAIN_KEY_NAMES)
def test_plain_key_names_are_not_taken_for_secrets(name):
    assert not secret_key_name(name)


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
        "Xq9vT2mLp8RzK4wN7bYc",
        "wJalr/XUtnFEMI+K7MDENG",
        "Zk3Qw9LmP2xR7vT4nB8cY1hJ5gF6dS0aE3uI9oKq",  # a 40-character key without / or +
    ],
)
def test_credential_shaped_values(value):
    assert looks_like_secret(value)


@pytest.mark.parametrize(
    "value",
    [
        "us-east-1", "RegionOne", "nimbus", "hotel", "ami-0abcdef1234567890",
        "sg-0123456789abcdef0", "subnet-0bb1c79de3EXAMPLE", "t3.micro",
        "CLOUDINITD_TEST_EC2_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "MyCustomImageVersion2024Build",
        "ubuntu-22.04-LTS-Server-amd64", "Debian12GenericCloudAmd64v2", "my-key-pair",
        "MyCustomImageVersion2024BuildForTesting1", "UbuntuServer2204LtsAmd64HvmEbsGp3Image",
        "https://svc.uc.futuregrid.org:8444", "/var/lib/cloudinitd/containers",
    ],
)  # fmt: skip
def test_names_are_not_taken_for_credentials(value):
    assert not looks_like_secret(value)


def test_every_provider_kind_has_a_cloud_schema():
    assert set(PROVIDER_SCHEMAS) == set(KINDS)


def test_only_validated_options_are_kept(tmp_path):
    write(
        tmp_path,
        """
        a:
          provider: ec2
          endpoint: http://127.0.0.1:8773/services/Cloud
          region: RegionOne
          credentials: {access_key_env: AK, secret_key_env: SK, session_token_env: ST}
          key_name: my-key
          security_groups: [default, sg-0123456789abcdef0]
          images: {debian-12: ami-0abcdef1234567890}
          instance_types: {small: m1.small}
          spot: {max_price: 0.05, fallback: on-demand}
          address: private
          max_attempts: 2
          read_timeout: 30
        q:
          provider: qemu
          accel: tcg
          sizes: {huge: [8192, 4]}
        """,
    )
    catalog = load_catalog(tmp_path)
    assert catalog["a"].options["credentials"] == {
        "access_key_env": "AK",
        "secret_key_env": "SK",
        "session_token_env": "ST",
    }
    assert set(catalog["a"].options) == {
        "endpoint", "region", "credentials", "key_name", "security_groups", "images",
        "instance_types", "spot", "address", "max_attempts", "read_timeout",
    }  # fmt: skip
    # Plain data (no position-carrying YAML types) is what a run records.
    assert type(catalog["a"].options["credentials"]) is dict
    assert catalog["q"].options == {"accel": "tcg", "sizes": {"huge": [8192, 4]}}


def test_plan_cloud_entries_pass_the_same_schema(tmp_path):
    """A plan's inline `clouds:` is checked exactly like the catalog, at the plan's lines."""
    plan = tmp_path / "plan.yml"
    plan.write_text(
        textwrap.dedent(
            """
            clouds:
              a:
                provider: ec2
                endpoint: http://AKIAPLANKEY000000001:pl4n-Secret@127.0.0.1:9/
              b:
                provider: ec2
                regoin: r
              c:
                provider: ec2
                token: pl4n-token-value
            services:
              web: {cloud: a, image: ami-1}
            """
        ).lstrip()
    )
    with pytest.raises(PlanErrors) as info:
        load_plan(plan)
    text = str(info.value)
    assert "pl4n-Secret" not in text and "AKIAPLANKEY000000001" not in text
    assert "pl4n-token-value" not in text
    lines = text.splitlines()
    assert lines[0].endswith(":4: cloud 'a': endpoint must not contain a user name or password"
                             " (scheme://USER:PASSWORD@host); name the environment variables"
                             " that hold the keys in `credentials:` instead")
    assert lines[1].endswith(":7: cloud 'b': unknown key 'regoin' (did you mean 'region'?)")
    assert lines[2].endswith(f":10: cloud 'c': token {SECRET_NAME_HINT}")
    assert len(lines) == 3


def test_plan_cloud_entry_of_the_wrong_shape_is_not_echoed(tmp_path):
    plan = tmp_path / "plan.yml"
    plan.write_text("clouds:\n  a: http://AKIAPLANKEY000000002:s3cr3t@h/\nservices: {w: {}}\n")
    with pytest.raises(PlanErrors) as info:
        load_plan(plan)
    assert "s3cr3t" not in str(info.value) and ":2: clouds.a: expected" in str(info.value)


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


def test_readme_documents_every_cloud_key_and_its_example_loads():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Clouds (clouds.yml)", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert set(parse_catalog(example, "README.md")) == {"hotel", "aws"}
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines()
            if line.startswith("| `")}  # fmt: skip
    assert set(rows) == set(PROVIDER_SCHEMAS)
    for kind, schema in PROVIDER_SCHEMAS.items():
        for key in set(schema["properties"]) - {"provider"}:
            assert f"`{key}`" in rows[kind], f"README: {kind} row does not name `{key}`"
    for key in CREDENTIALS["properties"]:
        assert f"{key}" in section


def test_catalog_that_is_not_a_mapping_is_refused_at_line_1(tmp_path):
    path = write(tmp_path, "- hotel\n- aws\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert (info.value.file, info.value.line) == (str(path), 1)
    assert info.value.message == "the catalog must map cloud names to cloud entries"


def test_the_first_problem_by_line_is_reported(tmp_path):
    # Two bad entries: the one written first wins, whatever order validation found them in.
    write(tmp_path, "a:\n  provider: ec2\n  colour: red\nb:\n  provider: nosuch\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert info.value.line == 3 and "colour" in info.value.message


@pytest.mark.parametrize(("options", "summary"), [
    ({}, "-"),
    ({"region": "r1"}, "default"),
    ({"region": "r1", "credentials": {}}, "default"),
    ({"credentials": {"profile": "p1"}}, "profile p1"),
    ({"credentials": {"access_key_env": "AK"}}, "env AK"),
    ({"credentials": {"secret_key_env": "SK"}}, "env SK"),
    ({"credentials": {"access_key_env": "AK", "secret_key_env": "SK"}}, "env AK/SK"),
    ({"credentials": {"other": "x"}}, "-"),
])
def test_credentials_summary_names_references_only(options, summary):
    from cloudinitd.plan.model import CloudSpec

    row = describe_catalog({"c": CloudSpec("c", "ec2", options)})[0]
    assert row["credentials"] == summary
    assert row["source"] is None and row["endpoint"] == options.get("endpoint")
    assert (row["name"], row["provider"], row["region"]) == ("c", "ec2", options.get("region"))
    assert "check" not in row and "error" not in row


def test_format_catalog_aligns_columns_and_shows_checks():
    rows = [
        {"name": "a", "provider": "ec2", "endpoint": "https://e.example:8444", "region": None,
         "credentials": "profile p", "check": "2 zone(s)"},
        {"name": "longer-name", "provider": "local", "endpoint": None, "region": "r1",
         "credentials": "-", "error": "credentials not set"},
    ]
    assert format_catalog(rows).splitlines() == [
        "NAME         PROVIDER  ENDPOINT                REGION  CREDENTIALS",
        "a            ec2       https://e.example:8444  -       profile p",
        "    ok: 2 zone(s)",
        "longer-name  local     -                       r1      -",
        "    error: credentials not set",
    ]
    assert format_catalog([]) == "no clouds in the catalog"
    wide = [{**rows[0], "credentials": "env A_LONG_KEY_VAR/A_LONG_SECRET_VAR"}]
    assert format_catalog(wide).splitlines()[0] == (
        "NAME  PROVIDER  ENDPOINT                REGION  CREDENTIALS")  # no trailing padding


def test_a_catalog_that_cannot_be_read_is_one_located_line(tmp_path):
    path = tmp_path / "clouds.yml"
    path.write_bytes(b"hotel:\n  provider: ec2 \xff\n")
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert (info.value.file, info.value.message) == (str(path), "not UTF-8 text (byte 23)")
    path.unlink()
    path.mkdir()
    with pytest.raises(PlanError) as info:
        load_catalog(tmp_path)
    assert (info.value.file, info.value.message) == (
        str(path), "cannot read the cloud catalog: Is a directory")


@pytest.mark.parametrize(("value", "secret"), [
    ("Abc1/Def2+Ghi3Jkl4", True),     # 16 letters and digits, base64 '/' and '+' inside
    ("Abc1/Def2+Ghi3Jk4", False),     # 15: too short to be a key
    ("/Abc1/Def2+Ghi3Jkl4", False),   # a path, not base64
    ("Ab1Cd2Ef3GGhhhhhhhhh", True),   # 20 characters, 8 words: ratio 0.4
    ("Ab1Cd2Ef3Ghhhhhhhhhh", False),  # 20 characters, 7 words: reads as a name
    ("Ab1Cd2Ef3GGhhhhhhhh", False),   # 19 characters: too short without base64 joins
    ("Ab1Cd2Ef3Gh4Ij5abcdefghijklmnop", False),   # 31 characters, 11 words: 0.35 < 0.4
    ("Ab1Cd2Ef3Gh4Ij5abcdefghijklmnopq", True),   # 32 characters: 0.33 is enough
    ("ab1cd2ef3gh4ij5klmno", False),  # no capitals
    ("AB1CD2EF3GH4IJ5KLMNO", False),  # no small letters
    ("AbcDefGhiJklMnoPqrSt", False),  # no digits
    ("Ab1Cd2Ef3GGhhhh!hhhhh", False),  # not token characters
])
def test_random_looking_thresholds(value, secret):
    assert looks_like_secret(value) is secret
    assert looks_like_secret(f"x {value}.y") is secret  # one part of a longer text
    assert looks_like_secret(value, name_like=False) is False  # free text: shapes only


URL_SHAPE = "must be a URL like https://host[:port][/path]"
URL_QUERY = "must not have a query or fragment (they can carry signatures or tokens)"
URL_CREDENTIAL = "looks like it contains a credential; put keys in environment variables"


@pytest.mark.parametrize(("url", "problem"), [
    ("https://svc.example.org:8444/nimbus", None),
    ("https://h.example.org/Ab1/Cd2/Ef3/Gh4/Ij5/Kl6/Mn7", None),  # short path parts
    ("http://h.example.org:99999/", URL_SHAPE),  # a port out of range
    ("ftp://h.example.org/", URL_SHAPE),
    ("https:///path", URL_SHAPE),
    ("https://h.example.org/?", URL_QUERY),  # an empty query still says "?"
    ("https://h.example.org/#", URL_QUERY),
    ("https://h.example.org/?X-Amz-Signature=abc", URL_QUERY),
    ("https://h.example.org/#frag", URL_QUERY),
    ("https://h.example.org/AKIAIOSFODNN7EXAMPLE/x", URL_CREDENTIAL),  # in the path
    ("https://AKIAIOSFODNN7EXAMPLE.example.org/", URL_CREDENTIAL),  # in the host
])
def test_url_problems(url, problem):
    assert url_problem(url) == problem
