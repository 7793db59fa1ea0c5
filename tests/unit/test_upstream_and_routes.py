import pytest

from contracts.routes import is_reserved
from contracts.settings import default_gateway_id
from contracts.upstream import OwnAddresses, TargetRefused, UpstreamPolicy
from gateway.steps.loop_guard import names_us
from project_svc.store import template_of


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://127.9.9.9:8080/x", "http://10.0.0.1/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://224.0.0.1/", "http://255.255.255.255/", "http://[::1]/",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://[::ffff:10.0.0.1]/", "http://localhost/",
    "http://api.localhost/",
])
async def test_private_and_special_targets_are_refused(url):
    with pytest.raises(TargetRefused):
        await UpstreamPolicy().check(url)


@pytest.mark.parametrize("url", [
    "ftp://93.184.216.34/", "http://user:pw@93.184.216.34/", "http://93.184.216.34/#frag",
    "http://", "https://93.184.216.34:99999/", "http://93.184.216.34/" + "a" * 2048,
])
async def test_malformed_targets_are_refused(url):
    with pytest.raises(TargetRefused):
        await UpstreamPolicy().check(url)


async def test_public_targets_pass():
    assert await UpstreamPolicy().check("https://93.184.216.34/v2") == ["93.184.216.34"]
    assert await UpstreamPolicy().check("http://[2606:2800:220:1::1]/") == ["2606:2800:220:1::1"]


async def test_operator_allow_list():
    assert await UpstreamPolicy(["127.0.0.0/8"]).check("http://127.0.0.1:9/") == ["127.0.0.1"]
    assert "127.0.0.1" in await UpstreamPolicy(["localhost"]).check("http://localhost:9/")
    assert await UpstreamPolicy(["*"]).check("http://10.1.1.1/") == ["10.1.1.1"]
    with pytest.raises(TargetRefused):
        await UpstreamPolicy(["127.0.0.0/8"]).check("http://10.1.1.1/")


def test_templates_ignore_parameter_names_and_trailing_slashes():
    assert template_of("/users/:id") == template_of("/users/:uid/") == "/users/:"
    assert template_of("/users/me") != template_of("/users/:id")
    assert template_of("/") == "/"


def test_reserved_prefixes():
    assert is_reserved("/api/v1/projects") and is_reserved("/api/v1/projects/x")
    assert is_reserved("/health") and not is_reserved("/healthz")
    assert not is_reserved("/api/v1/test-e2e")


@pytest.mark.parametrize("url", ["http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",
                                 "http://[::ffff:7f00:1]/"])
async def test_ipv4_embedded_in_ipv6_is_checked_too(url):
    with pytest.raises(TargetRefused):
        await UpstreamPolicy().check(url)


@pytest.mark.parametrize("path", ["/:a", "/:a/:b/:c", "/api/:v/projects", "/metrics",
                                  "/:x/v1/auth/login"])
def test_templates_that_could_match_platform_paths_are_reserved(path):
    assert is_reserved(path)


@pytest.mark.parametrize("url", ["http://[::127.0.0.1]/", "http://[::ffff:0:7f00:1]/",
                                 "http://[64:ff9b:1::a9fe:a9fe]/", "http://[fec0::1]/",
                                 "http://a..b.com/"])
async def test_more_special_targets_are_refused(url):
    with pytest.raises(TargetRefused):
        await UpstreamPolicy().check(url)


def test_item_12_ip_literals_in_unicode_digits_are_checked_as_addresses():
    """Issue 12, item 12: the HTTP client turns these hosts into IP literals (and then never
    asks the checking resolver), so the connect-time check must see them as such."""
    from contracts.upstream import UpstreamPolicy
    from gateway.forwarders.http import UpstreamProxy

    proxy = UpstreamProxy(UpstreamPolicy())
    for url, address in (("http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/latest", "169.254.169.254"),
                         ("http://①②⑦.0.0.①:8080/", "127.0.0.1")):
        assert UpstreamPolicy().check_url(url)[0] == address
        refusal = proxy._refusal_of(url)
        assert refusal is not None and address in refusal, refusal
    assert proxy._refusal_of("https://93.184.216.34/") is None


async def test_the_gateways_own_address_and_port_are_refused_even_when_allowed():
    own = await OwnAddresses.of("http://localhost:3000", 3100)
    policy = UpstreamPolicy(["*"], own)
    for url in ("http://127.0.0.1:3100/", "http://127.0.0.7:3100/", "http://0.0.0.0:3100/",
                "http://[::1]:3100/", "http://[::ffff:127.0.0.1]:3100/",
                "http://127.0.0.1:3000/x"):
        with pytest.raises(TargetRefused, match="loop"):
            await policy.check(url)
    # pairs, not hosts: other ports of this machine, and other machines' 3100, stay allowed
    assert await policy.check("http://127.0.0.1:3101/") == ["127.0.0.1"]
    assert await policy.check("http://93.184.216.34:3100/") == ["93.184.216.34"]
    own.add_port(41234)  # the port the gateway turned out to serve
    with pytest.raises(TargetRefused, match="loop"):
        await policy.check("http://127.0.0.1:41234/")


def test_a_via_entry_naming_the_gateway_is_a_loop():
    assert names_us(["1.1 gw-a"], "gw-a")
    assert names_us(["1.0 proxy, HTTP/1.1 gw-a (comment)", "1.1 other"], "gw-a")
    assert not names_us(["1.1 gw-ab, 1.1 gw", "gw-a"], "gw-a")  # a pseudonym is whole
    assert not names_us([""], "gw-a")


def test_the_default_gateway_id_is_one_per_deployment():
    assert default_gateway_id("https://api.example.com") == \
        default_gateway_id("https://api.example.com")
    assert default_gateway_id("https://api.example.com") != default_gateway_id("http://x")
    assert "example" not in default_gateway_id("https://api.example.com")
