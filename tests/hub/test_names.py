import pytest

from graft.errors import InvalidArgumentError
from graft.hub.names import base_url, check_label, check_name, parse_handle


def test_parse_handle_forms():
    h = parse_handle("hub://localhost:8080/digits@stable")
    assert (h.base_url, h.name, h.ref, h.pinned) == (
        "http://localhost:8080",
        "digits",
        "stable",
        False,
    )
    assert parse_handle("hub://h/digits").ref == "latest"
    assert parse_handle("hubs://h.example:443/a.b-c_d@12").base_url == "https://h.example:443"
    assert parse_handle("hub://h/x@3").pinned
    assert str(parse_handle("hub://h:1/x@3")) == "hub://h:1/x@3"


@pytest.mark.parametrize(
    "handle",
    [
        "hub://",
        "hub://host",
        "hub://host/",
        "hub://host/a/b",
        "hub://host/../x",
        "hub://host/X",
        "hub://host/x@0",
        "hub://host/x@-1",
        "hub://host/x@Stable",
        "ftp://host/x",
    ],
)
def test_bad_handles_name_the_form(handle):
    with pytest.raises(InvalidArgumentError, match=r"hub://host\[:port\]/name"):
        parse_handle(handle)


@pytest.mark.parametrize("name", ["..", "a..b", "-x", "A", "a/b", "a\\b", "%2e", "", "x" * 129])
def test_names_that_could_escape_are_refused(name):
    with pytest.raises(InvalidArgumentError, match="Received: name="):
        check_name(name)


def test_labels_and_addresses():
    assert check_label("stable") == "stable"
    for bad in ("latest", "3", "Stable"):
        with pytest.raises(InvalidArgumentError, match="Received: label="):
            check_label(bad)
    assert base_url("localhost:8080") == "http://localhost:8080"
    assert base_url("hubs://h:1/") == "https://h:1"
    with pytest.raises(InvalidArgumentError, match="Received: url="):
        base_url("ftp://x")
