"""network render: nova's network data rendered into a directory for review, for every stack, never applied."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.network import FILE_STACKS, interface_map
from agent.network.description import FORMAT
from tests.cli.conftest import run
from tests.network.scenarios import GOLDEN

PUBLIC = {"label": "public", "mac": "fa:16:3e:0a:1b:2c", "broadcast": "203.0.113.255", "gateway": "203.0.113.1",
          "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1", "gateway": "203.0.113.1"}],
          "gateway_v6": "2001:db8::1",
          "ip6s": [{"ip": "2001:db8::10", "netmask": 64, "enabled": "1", "gateway": "2001:db8::1"}],
          "dns": ["198.51.100.53", "198.51.100.54"]}
PRIVATE = {"label": "private", "mac": "fa:16:3e:99:88:77",
           "ips": [{"ip": "10.1.2.3", "netmask": "255.255.0.0", "enabled": "1"}],
           "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.1.0.1"},
                      {"route": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.1.0.1"}]}
#: The golden scenario "two-nics" (tests/network/scenarios.py) in each form a description may take.
FORMS = {
    "keyed": {"networking": {"fa163e0a1b2c": PUBLIC, "fa163e998877": PRIVATE}, "hostname": "web-1.example.com"},
    "list": {"networking": [PUBLIC, PRIVATE], "hostname": "web-1.example.com"},
}
TWO_NICS = FORMS["keyed"]
#: Files the agent writes beside the stack's own (agent.network.names), which the stack goldens leave out.
NAME_FILES = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A guest root with the two interfaces of the scenario (and a loopback), and nothing else."""
    root = tmp_path / "root"
    for name, mac in (("eth0", "fa:16:3e:0a:1b:2c"), ("eth1", "FA:16:3E:99:88:77"), ("lo", "00:00:00:00:00:00")):
        (root / "sys/class/net" / name).mkdir(parents=True)
        (root / "sys/class/net" / name / "address").write_text(mac + "\n")
    return root


def describe(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "network.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def written(out: Path) -> dict[str, bytes]:
    """What render wrote under ``out``, by guest path."""
    return {"/" + p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def tree(path: Path) -> str:
    """A checksum of every name, mode, time and byte under ``path`` (links not followed)."""
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        info = item.lstat()
        digest.update(f"{item.relative_to(path)} {info.st_mode:o} {info.st_mtime_ns}\n".encode())
        if item.is_file() and not item.is_symlink():
            digest.update(item.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("stack", FILE_STACKS)
def test_render_writes_each_stacks_golden_files(tmp_path: Path, root: Path, stack: str) -> None:
    """For every stack, the files written under --out are the golden files of its renderer (and of the host
    name and resolver files, where the names goldens cover the stack) for the same network, and no others."""
    out = tmp_path / "out"
    code, _ = run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out),
                  "--renderer", stack, "--root", str(root))
    files = written(out)
    expected: dict[str, bytes] = {}
    for golden in (GOLDEN / stack / "two-nics", GOLDEN / stack / "two-nics/fresh",
                   GOLDEN / "names/two-nics" / f"{stack}-fresh"):
        if (golden / "etc").is_dir():
            expected.update(written(golden))
    assert code == 0
    assert expected
    assert {path: files[path] for path in expected if path in files} == expected
    assert set(files) - set(expected) <= NAME_FILES


@pytest.mark.parametrize("form", [*FORMS, "bare-list", "stdin"])
def test_every_input_form_renders_the_same(tmp_path: Path, root: Path, form: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The keyed object, the list in an object, a bare list and standard input all give the same files (a
    bare list carries no host name, so the name files are left out of the comparison)."""
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(reference),
               "--renderer", "networkd", "--root", str(root))[0] == 0
    document = [PUBLIC, PRIVATE] if form == "bare-list" else FORMS.get(form, TWO_NICS)
    source = str(describe(tmp_path, document))
    if form == "stdin":
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(json.dumps(document).encode())))
        source = "-"
    code, _ = run("network", "render", "--input", source, "--out", str(out), "--renderer", "networkd",
                  "--root", str(root))
    assert code == 0
    expected = written(reference)
    assert written(out) == ({p: b for p, b in expected.items() if p not in NAME_FILES} if form == "bare-list"
                            else expected)


def test_render_prints_the_stack_then_one_line_per_file(tmp_path: Path, root: Path) -> None:
    """The exact text output: the stack chosen, then each file's path, size, mode and status."""
    code, out = run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out",
                    str(tmp_path / "out"), "--renderer", "ifupdown", "--root", str(root))
    assert (code, out) == (0, (
        "stack  ifupdown\n"
        "path                                              bytes  mode  status\n"
        "/etc/hostname                                     6      0644  new\n"
        "/etc/hosts                                        95     0644  new\n"
        "/etc/network/interfaces                           157    0644  new\n"
        "/etc/network/interfaces.d/50-openstack-agent.cfg  769    0644  new\n"
        "/etc/resolv.conf                                  126    0644  new\n"))


def test_render_json(tmp_path: Path, root: Path) -> None:
    """--json prints the stack and one object per file (path, bytes, mode, status), sizes matching the files."""
    out = tmp_path / "out"
    code, text = run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out),
                     "--renderer", "networkmanager", "--root", str(root), "--json")
    document = json.loads(text)
    files = written(out)
    assert code == 0
    assert document == {"stack": "networkmanager", "files": [
        {"path": path, "bytes": len(data), "mode": "0600" if "NetworkManager" in path else "0644", "status": "new"}
        for path, data in files.items()]}


def test_interfaces_flag_names_the_guests_interfaces(tmp_path: Path, root: Path) -> None:
    """--interfaces replaces the root's /sys/class/net: the MACs map to the names given (any MAC spelling)."""
    out = tmp_path / "out"
    code, _ = run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out),
                  "--renderer", "networkd", "--root", str(root),
                  "--interfaces", "FA-16-3E-0A-1B-2C=ens3, fa:16:3e:99:88:77=ens4")
    assert code == 0
    assert sorted(written(out)) == ["/etc/hostname", "/etc/hosts",
                                    "/etc/systemd/network/50-openstack-agent-ens3.network",
                                    "/etc/systemd/network/50-openstack-agent-ens4.network"]
    assert b"\n# ens3 (public)\n" in written(out)["/etc/systemd/network/50-openstack-agent-ens3.network"]


@pytest.mark.parametrize("interfaces", [None, "fa:16:3e:0a:1b:2c=eth0"])
def test_a_mac_the_guest_lacks_is_an_error_naming_it(tmp_path: Path, root: Path, interfaces: str | None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A MAC the guest does not have (in its /sys, or in --interfaces) exits 2, names the MAC, writes nothing."""
    description = describe(tmp_path, {"networking": [PUBLIC, {**PRIVATE, "mac": "fa:16:3e:00:00:01"}]})
    out = tmp_path / "out"
    argv = ["network", "render", "--input", str(description), "--out", str(out), "--renderer", "netplan",
            "--root", str(root)]
    assert main([*argv, *(["--interfaces", interfaces] if interfaces else [])], io.StringIO()) == 2
    assert capsys.readouterr().err == (f"Error: {description}: vm-data/networking/fa163e000001: this guest has no "
                                       "interface with MAC fa:16:3e:00:00:01\n")
    assert not out.exists()


@pytest.mark.parametrize(("content", "message"), [
    pytest.param('{"networking": [', "the description is not JSON (Expecting value: line 1 column 17 (char 16))",
                 id="not-json"),
    pytest.param(b"\xff[]", "the description is not UTF-8 text", id="not-utf8"),
    pytest.param({"networking": [PUBLIC], "hostnme": "web-1"}, "unknown key 'hostnme' in the description; it "
                 "holds 'networking' and, optionally, 'hostname'", id="unknown-key"),
    pytest.param([{**PUBLIC, "gateway": "203.0.113.300"}], "vm-data/networking/fa163e0a1b2c: 'gateway' is not an "
                 "IPv4 address (got '203.0.113.300')", id="bad-address"),
])
def test_bad_input_exits_2_naming_the_file(tmp_path: Path, root: Path, content: object, message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A description that is not valid network data exits 2 with 'Error: <file>: <what is wrong>' (every
    mistake the description can hold is in tests/network/test_description.py)."""
    description = tmp_path / "network.json"
    if isinstance(content, bytes):
        description.write_bytes(content)
    else:
        describe(tmp_path, content)
    code = main(["network", "render", "--input", str(description), "--out", str(tmp_path / "out"), "--root",
                 str(root), "--renderer", "netplan"], io.StringIO())
    assert (code, capsys.readouterr().err) == (2, f"Error: {description}: {message}\n")
    assert not (tmp_path / "out").exists()


def test_a_missing_input_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An input file that cannot be read exits 2, naming it and the fix."""
    assert main(["network", "render", "--input", str(tmp_path / "none.json"), "--out", str(tmp_path / "out")],
                io.StringIO()) == 2
    assert capsys.readouterr().err == (f"Error: cannot read {tmp_path}/none.json: No such file or directory; give a "
                                       "readable file, or '-' for standard input\n")


@pytest.mark.parametrize("kind", ["non-empty directory", "file"])
def test_an_out_that_is_not_a_new_or_empty_directory_is_refused(tmp_path: Path, root: Path, kind: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--out must be new or empty: anything else exits 2 naming the fix, and what is there is left untouched."""
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep\n")
    else:
        (out / "etc").mkdir(parents=True)
        (out / "etc/hosts").write_text("keep\n")
    before = tree(tmp_path / "out") if out.is_dir() else out.read_text()
    code = main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out), "--root",
                 str(root), "--renderer", "ifupdown"], io.StringIO())
    fix = ("is not empty; give a new or empty directory (render never writes over files, so that it can never write "
           "over a real /etc)" if kind != "file" else "is not a directory; give a new or empty directory")
    assert (code, capsys.readouterr().err) == (2, f"Error: --out {out} {fix}\n")
    assert (tree(out) if out.is_dir() else out.read_text()) == before


def test_an_empty_out_directory_is_used(tmp_path: Path, root: Path) -> None:
    """An existing empty --out is fine: the files go into it."""
    out = tmp_path / "out"
    out.mkdir()
    assert run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out), "--root",
               str(root), "--renderer", "netplan")[0] == 0
    assert "/etc/netplan/50-openstack-agent.yaml" in written(out)


def test_statuses_against_the_present_files_and_the_root_left_untouched(tmp_path: Path, root: Path) -> None:
    """With --root holding the files a first render wrote, a second render reports them 'same' (or leaves them
    out, as ifupdown does /etc/network/interfaces once it sources the agent's file), a file edited since
    'changed', keeps what the renderer keeps (a resolver option), and changes nothing under --root."""
    description = str(describe(tmp_path, TWO_NICS))
    assert run("network", "render", "--input", description, "--out", str(tmp_path / "first"), "--root", str(root),
               "--renderer", "ifupdown")[0] == 0
    shutil.copytree(tmp_path / "first/etc", root / "etc")
    (root / "etc/hostname").write_text("old-name\n")
    with (root / "etc/resolv.conf").open("a") as fh:
        fh.write("options rotate\n")
    before = tree(root)
    code, out = run("network", "render", "--input", description, "--out", str(tmp_path / "second"), "--root",
                    str(root), "--renderer", "ifupdown", "--json")
    assert code == 0
    assert {f["path"]: f["status"] for f in json.loads(out)["files"]} == {
        "/etc/hostname": "changed", "/etc/hosts": "same", "/etc/network/interfaces.d/50-openstack-agent.cfg": "same",
        "/etc/resolv.conf": "same"}
    assert written(tmp_path / "second")["/etc/hostname"] == b"web-1\n"
    assert written(tmp_path / "second")["/etc/resolv.conf"].endswith(b"options rotate\n")
    assert tree(root) == before


@pytest.mark.parametrize(("link", "where"), [
    pytest.param("etc/hostname", "'/etc/hostname': it is", id="the-file"),
    pytest.param("etc", "'/etc/hosts': '/etc' is", id="a-directory-on-its-path"),  # the first file read
])
def test_a_link_in_the_root_is_refused_as_the_agent_refuses_it(tmp_path: Path, root: Path, link: str, where: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A present file that is a symbolic link, or whose path goes through one, under --root (here pointing
    inside the root, where a chroot would find a file) is an error naming it, as the agent's network port
    refuses to read it: exit 1, nothing written, the root untouched."""
    (root / "data/etc").mkdir(parents=True)
    (root / "data/etc/hostname").write_text("web-1\n")
    (root / "etc").mkdir()
    if link == "etc":
        (root / "etc").rmdir()
    (root / link).symlink_to("/data/" + link)
    before = tree(root)
    out = tmp_path / "out"
    assert main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out), "--root",
                 str(root), "--renderer", "networkd"], io.StringIO()) == 1
    assert capsys.readouterr().err == (f"Error: --root {root}: refused to read {where} a symbolic link, "
                                       "and the agent follows none; resetnetwork would refuse it too\n")
    assert not out.exists()
    assert tree(root) == before


def test_the_same_refusal_as_the_agents_network_port(tmp_path: Path, root: Path) -> None:
    """The dry run reads as the live network port does: where LiveNetwork.read refuses a file, render fails."""
    from agent.errors import FileRefused
    from agent.platform.network import LiveNetwork

    (root / "etc").mkdir()
    (root / "etc/resolv.conf").symlink_to("/run/resolv.conf")
    with pytest.raises(FileRefused, match=re.escape("refused to read '/etc/resolv.conf': it is a symbolic link")):
        LiveNetwork(root=root).read("/etc/resolv.conf")
    assert main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(tmp_path / "out"),
                 "--root", str(root), "--renderer", "ifupdown"], io.StringIO()) == 1


@pytest.mark.parametrize(("path", "make", "what"), [
    pytest.param("etc/hosts", lambda p: p.write_bytes(b"#" * (256 * 1024 + 1)),
                 "it is 262145 bytes, more than the 262144 bytes allowed", id="over-the-size-limit"),
    pytest.param("etc/hosts", lambda p: p.mkdir(), "the path names a directory, not a file", id="a-directory"),
    pytest.param("etc/hosts", lambda p: os.mkfifo(p), "it is not a regular file (a device, FIFO or socket)",
                 id="a-fifo"),
])
def test_a_present_file_the_agent_would_refuse_is_refused(tmp_path: Path, root: Path, path: str, make, what: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A present file larger than resetnetwork reads, or no regular file, is an error naming it (exit 1), and
    nothing is written."""
    (root / "etc").mkdir()
    make(root / path)
    out = tmp_path / "out"
    assert main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out), "--root",
                 str(root), "--renderer", "netplan"], io.StringIO()) == 1
    assert capsys.readouterr().err == (f"Error: --root {root}: refused to read '/{path}': {what}; resetnetwork would "
                                       "refuse it too\n")
    assert not out.exists()


@pytest.mark.parametrize("stack", FILE_STACKS)
def test_modes(tmp_path: Path, root: Path, stack: str) -> None:
    """Each file gets the mode the agent gives a new one: 0600 for NetworkManager's keyfiles and netplan's YAML
    (which must not be readable by others), 0644 for the rest, whatever the umask."""
    out = tmp_path / "out"
    old = os.umask(0o077)
    try:
        assert run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out), "--root",
                   str(root), "--renderer", stack)[0] == 0
    finally:
        os.umask(old)
    modes = {path: (out / path.lstrip("/")).stat().st_mode & 0o7777 for path in written(out)}
    private = ("/etc/NetworkManager/", "/etc/netplan/")
    assert modes == {path: 0o600 if path.startswith(private) else 0o644 for path in modes}


@pytest.mark.parametrize(("signs", "stack"), [
    (["usr/sbin/ifup", "etc/network/interfaces"], "ifupdown"),
    (["usr/sbin/netplan", "etc/netplan/", "lib/systemd/systemd-networkd"], "netplan"),
    (["etc/sysconfig/network-scripts/"], "sysconfig"),
])
def test_auto_picks_the_stack_the_root_has(tmp_path: Path, root: Path, signs: list[str], stack: str) -> None:
    """Without --renderer the stack is the one the image under --root has, and it is printed first."""
    for sign in signs:
        (root / sign).parent.mkdir(parents=True, exist_ok=True)
        if sign.endswith("/"):
            (root / sign).mkdir(exist_ok=True)
        else:
            (root / sign).write_text("")
    code, out = run("network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out",
                    str(tmp_path / "out"), "--root", str(root))
    assert code == 0
    assert out.startswith(f"stack  {stack}\n")


def test_no_stack_found_exits_2(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A root with no known stack, and no --renderer, exits 2 saying to name one."""
    assert main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(tmp_path / "out"),
                 "--root", str(root)], io.StringIO()) == 2
    assert capsys.readouterr().err == (f"Error: no network stack found under {root} (none of netplan, ifupdown, "
                                       "sysconfig, NetworkManager, systemd-networkd, FreeBSD's rc.conf, Windows); "
                                       "name one with --renderer\n")


def test_a_windows_image_has_no_files_to_render(tmp_path: Path, root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An image detected as Windows exits 2 saying its network is set through WMI, and nothing is written."""
    (root / "Windows/System32/wbem").mkdir(parents=True)
    out = tmp_path / "out"
    assert main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out),
                 "--root", str(root)], io.StringIO()) == 2
    assert capsys.readouterr().err == (f"Error: the image under {root} is Windows, whose network is set through "
                                       "WMI, not written to files: there is nothing to render; name a file stack "
                                       "with --renderer\n")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--renderer", "systemd", "argument --renderer: invalid choice: 'systemd'"),
    ("--interfaces", "fa:16:3e:0a:1b=eth0", "argument --interfaces: 'fa:16:3e:0a:1b=eth0' is not MAC=NAME"),
    ("--interfaces", "fa:16:3e:0a:1b:2g=eth0", "argument --interfaces: 'fa:16:3e:0a:1b:2g=eth0' is not MAC=NAME"),
    ("--interfaces", "eth0", "argument --interfaces: 'eth0' is not MAC=NAME"),
    ("--interfaces", "fa:16:3e:0a:1b:2c=a/b", "argument --interfaces: 'a/b' is not an interface name"),
    ("--interfaces", "fa:16:3e:0a:1b:2c=-eth0", "argument --interfaces: '-eth0' is not an interface name"),
    ("--interfaces", "fa:16:3e:0a:1b:2c=eth:0", "argument --interfaces: 'eth:0' is not an interface name"),
    ("--interfaces", "fa:16:3e:0a:1b:2c=a234567890123456", "argument --interfaces: 'a234567890123456' is not an "
     "interface name"),
    ("--interfaces", "fa:16:3e:0a:1b:2c=", "argument --interfaces: '' is not an interface name"),
    ("--interfaces", "fa:16:3e:0a:1b:2c=eth0,FA163E0A1B2C=eth1", "argument --interfaces: MAC FA163E0A1B2C is given "
     "twice"),
    ("--interfaces", " , ", "argument --interfaces: give at least one MAC=NAME"),
])
def test_bad_flags_exit_2(tmp_path: Path, flag: str, value: str, message: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --renderer or a malformed --interfaces is a usage error: exit 2, naming the flag."""
    with pytest.raises(SystemExit) as exited:
        main(["network", "render", "--input", "-", "--out", str(tmp_path / "out"), flag, value], io.StringIO())
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_interfaces_takes_the_descriptions_mac_spellings_and_the_agents_names() -> None:
    """--interfaces checks MACs as the description does (any case; colons, hyphens, dots or none) and names as
    the agent does (up to 15 characters, no '/', ':' or space, no leading '-')."""
    assert interface_map("FA:16:3E:0A:1B:2C=eth0,fa-16-3e-99-88-77=enp0s3.100,fa16.3e00.0001=a23456789012345,"
                         "fa163e000002=br-lan") == {
        "fa163e0a1b2c": "eth0", "fa163e998877": "enp0s3.100", "fa163e000001": "a23456789012345",
        "fa163e000002": "br-lan"}


def test_a_root_that_is_not_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--root must be a directory: a missing one is a usage error, before the description is read."""
    assert main(["network", "render", "--input", "-", "--out", str(tmp_path / "out"), "--root",
                 str(tmp_path / "none"), "--renderer", "netplan"], io.StringIO()) == 2
    assert capsys.readouterr().err == f"Error: --root {tmp_path}/none is not a directory; give the guest's root\n"


def test_an_interface_name_the_agent_would_not_apply_to_is_refused(tmp_path: Path, root: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A guest interface (from <root>/sys/class/net) whose name the agent refuses to apply a network to is an
    error naming it, exit 1, as resetnetwork would fail on it."""
    (root / "sys/class/net/eth0").rename(root / "sys/class/net/-eth0")
    out = tmp_path / "out"
    assert main(["network", "render", "--input", str(describe(tmp_path, TWO_NICS)), "--out", str(out), "--root",
                 str(root), "--renderer", "networkd"], io.StringIO()) == 1
    assert capsys.readouterr().err == ("Error: the guest's interface '-eth0' (MAC fa:16:3e:0a:1b:2c) is not a name "
                                       "the agent applies a network to; resetnetwork would refuse it too\n")
    assert not out.exists()


def test_the_help_states_the_format_of_agent_network_description(capsys: pytest.CaptureFixture[str]) -> None:
    """The help quotes the format from agent.network.description, the one place that states it."""
    with pytest.raises(SystemExit):
        main(["network", "render", "--help"], io.StringIO())
    assert FORMAT.startswith("The description is JSON: ")
    assert "".join(FORMAT.split()) in "".join(capsys.readouterr().out.split())  # argparse rewraps it


def test_render_imports_neither_the_host_side_nor_pyxs() -> None:
    """The network command line reads a description without agent.host and pyxs; --help of render (and of
    host) loads no pyxs."""
    code = ("import sys; import agent.network.description, agent.cli.network; "
            "from agent.cli.app import build_parser; build_parser(); "
            "assert 'pyxs' not in sys.modules and 'agent.xenstore' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    source = (Path(__file__).parents[2] / "agent/cli/network.py").read_text()
    assert "agent.host" not in source
