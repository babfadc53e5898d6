"""``release build`` and ``release verify``: the bundles agentupdate and ``install`` take (``agent.release``);
``release deb`` and ``release rpm``: distribution packages of a bundle (``agent.packages``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent.cli import output

if TYPE_CHECKING:
    from agent.cli.app import Subparsers


def register(commands: Subparsers) -> None:
    releases = commands.add_parser("release", help="build or check release bundles",
                                   description="Build or check the release bundles agentupdate installs.")
    actions = releases.add_subparsers(title="release commands", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build a bundle from a source checkout", description=(
        "Build openstack-agent-<version>.tar.gz: a manifest (version, target Python and platform, SHA-256 of "
        "every file), the agent's wheel and the wheels of its dependencies, so that a guest installs it "
        "offline. --version builds the same source under another version number (candidates, tests). "
        "--frozen bundles a frozen one-folder build instead (PyInstaller's, made with "
        "packaging/windows/openstack-agent.spec on Windows, where a release is that build: no Python, no pip); it "
        "needs --version, the build's own, and is for the system it is bundled on."))
    build.add_argument("--out", required=True, metavar="DIR", help="directory to write the bundle to")
    build.add_argument("--source", default=".", metavar="DIR", help="the source checkout (default: .)")
    build.add_argument("--frozen", metavar="DIR",
                       help="bundle this frozen build (openstack-agent.exe and _internal/) instead of a checkout")
    build.add_argument("--version", metavar="X.Y.Z",
                       help="build under this version instead of the source's (with --frozen: the build's version)")
    build.add_argument("--sign", metavar="KEY", help="sign the manifest with this Ed25519 private key (PEM)")
    build.set_defaults(handler=cmd_release_build)

    verify = actions.add_parser("verify", help="check a bundle", description=(
        "Check a bundle's members, manifest and digests; with --key, also that it is signed by that key."))
    verify.add_argument("bundle", metavar="FILE")
    verify.add_argument("--key", action="append", default=[], metavar="PUB",
                        help="require a signature by this Ed25519 public key (PEM); may be repeated")
    output.json_flag(verify, "print the manifest summary as JSON")
    verify.set_defaults(handler=cmd_release_verify)

    deb = actions.add_parser("deb", help="build a Debian package from a bundle", description=(
        "Build openstack-agent_<version>_<arch>.deb with dpkg-deb: the bundle, and maintainer scripts that "
        "install it offline as the service ('openstack-agent install BUNDLE --service') and run 'uninstall' "
        "on removal; purge also removes the journal and the configuration. Depends on the Python the "
        "bundle's wheels are for; the architecture is the bundle's platform ('all' if its wheels are pure)."))
    _package_flags(deb)
    deb.add_argument("--maintainer", default=_debian_maintainer(), metavar="'NAME <EMAIL>'",
                     help="the control file's Maintainer (default: $DEBFULLNAME <$DEBEMAIL>, as Debian's tools)")
    deb.set_defaults(handler=cmd_release_deb)

    rpm = actions.add_parser("rpm", help="build an rpm from a bundle", description=(
        "Build openstack-agent-<version>-1.<arch>.rpm with rpmbuild from packaging/rpm/openstack-agent.spec: "
        "the bundle, %post 'openstack-agent install BUNDLE --service' (offline), %preun 'uninstall' when "
        "the package is erased."))
    _package_flags(rpm)
    rpm.set_defaults(handler=cmd_release_rpm)


def _package_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="the .tar.gz made by 'openstack-agent release build'")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write the package to")
    parser.add_argument("--source", default=".", metavar="DIR",
                        help="the source checkout whose packaging/ holds the templates (default: .)")


def _debian_maintainer() -> str | None:
    name, email = os.environ.get("DEBFULLNAME"), os.environ.get("DEBEMAIL")
    return f"{name} <{email}>" if name and email else None


def cmd_release_build(args: argparse.Namespace, out: TextIO) -> int:
    from agent import release
    from agent.errors import ReleaseError

    sign = Path(args.sign) if args.sign else None
    if args.frozen is None:
        bundle = release.build(Path(args.out), Path(args.source), args.version, sign)
    elif args.version is None:
        # A frozen build does not say which version it is without being run, which it cannot be off Windows.
        raise ReleaseError("--frozen needs --version: the version of the agent that build was made from")
    else:
        bundle = release.build_frozen(Path(args.out), Path(args.frozen), args.version, sign_key=sign)
    out.write(f"{bundle}\n")
    return 0


def cmd_release_verify(args: argparse.Namespace, out: TextIO) -> int:
    from agent import release

    keys = release.load_public_keys(Path(k) for k in args.key)
    bundle = release.open_bundle(Path(args.bundle), keys, require_signature=bool(keys))
    summary = {"version": bundle.version, "python": bundle.manifest.python, "platform": bundle.manifest.platform,
               "files": len(bundle.manifest.files), "signed_by": bundle.signed_by}
    if args.json:
        output.as_json(summary, out)
    else:
        output.fields(list(summary.items()), out)
    return 0


def cmd_release_deb(args: argparse.Namespace, out: TextIO) -> int:
    from agent import packages
    from agent.errors import ReleaseError

    if args.maintainer is None:
        raise ReleaseError("a Debian package needs a maintainer: pass --maintainer 'Name <email>', or set "
                           "DEBFULLNAME and DEBEMAIL")
    out.write(f"{packages.build_deb(Path(args.bundle), Path(args.out), Path(args.source), args.maintainer)}\n")
    return 0


def cmd_release_rpm(args: argparse.Namespace, out: TextIO) -> int:
    from agent import packages

    out.write(f"{packages.build_rpm(Path(args.bundle), Path(args.out), Path(args.source))}\n")
    return 0
