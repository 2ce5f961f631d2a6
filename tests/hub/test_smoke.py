import graft.hub
from graft.hub import HubClient


def test_push_pull_roundtrip(hub, module_dir, graft_home):
    record = graft.hub.push(module_dir, hub.url, "digits", labels=("stable",))
    assert record["version"] == 1
    path = graft.hub.pull(f"hub://{hub.hostport}/digits@stable")
    assert (path / "model.keras").read_bytes() == (module_dir / "model.keras").read_bytes()
    with HubClient(hub.url) as c:
        assert c.list("digits")[0]["downloads"] == 1
