#!/usr/bin/env python3
"""Writes hostile layer tarballs: every trick a layer can use to reach outside its target.

    make-layers.py OUTDIR VICTIM

VICTIM is an absolute directory outside the target that the layers aim at (it should contain a
file `secret`); tests check afterwards that nothing under VICTIM changed and nothing new appeared
next to it. Each layer is OUTDIR/<case>.tar; OUTDIR/cases.txt lists `<case> <expect>` where expect
is `refuse` (applying must fail) or `contain` (may succeed, but only inside the target).
"""
import io
import os
import sys
import tarfile

out, victim = sys.argv[1], sys.argv[2].rstrip("/")
os.makedirs(out, exist_ok=True)
cases = []


def layer(name, expect, entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            kind, path = e[0], e[1]
            ti = tarfile.TarInfo(path)
            ti.mtime = 0
            data = b""
            if kind == "file":
                data = e[2] if len(e) > 2 else b"pwned\n"
                ti.size = len(data)
                ti.mode = e[3] if len(e) > 3 else 0o644
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = e[2] if len(e) > 2 else 0o755
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
                ti.mode = 0o777
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
            t.addfile(ti, io.BytesIO(data) if data else None)
    with open(os.path.join(out, name + ".tar"), "wb") as f:
        f.write(buf.getvalue())
    cases.append((name, expect))


v = victim
layer("dotdot-file", "refuse", [("file", "../../../../../../" + v.lstrip("/") + "/pwned")])
layer("dotdot-inner", "refuse", [("dir", "a"), ("file", "a/../../pwned")])
layer("absolute-file", "contain", [("file", v + "/pwned")])
layer("symlink-dir-escape", "contain", [("symlink", "link", v), ("file", "link/pwned")])
layer("symlink-relative-escape", "contain", [("symlink", "up", "../../../../../../../../"), ("file", "up/" + v.lstrip("/") + "/pwned")])
layer("symlink-chain", "contain", [("symlink", "a", "b"), ("symlink", "b", v), ("dir", "a/sub"), ("file", "a/sub/pwned")])
layer("symlink-overwrite-target", "contain", [("symlink", "secret", v + "/secret"), ("file", "secret", b"overwritten\n")])
layer("symlink-then-dir-chmod", "contain", [("symlink", "d", v), ("dir", "d", 0o777)])
layer("symlink-chmod-file", "contain", [("symlink", "s", v + "/secret"), ("file", "s", b"x", 0o777)])
layer("hardlink-outside-absolute", "refuse", [("hardlink", "hl", v + "/secret")])
layer("hardlink-outside-dotdot", "refuse", [("hardlink", "hl", "../../../../../../" + v.lstrip("/") + "/secret")])
layer("hardlink-through-symlink", "refuse", [("symlink", "l", v), ("hardlink", "hl", "l/secret")])
layer("whiteout-dotdot", "refuse", [("file", ".wh..")])
layer("whiteout-climb", "refuse", [("file", "a/../../.wh.secret")])
layer("whiteout-through-symlink", "contain", [("symlink", "w", v), ("file", "w/.wh.secret")])
layer("opaque-through-symlink", "contain", [("symlink", "o", v), ("file", "o/.wh..wh..opq")])
layer("symlink-named-dot", "refuse", [("symlink", ".", v)])
layer("symlink-named-dot-slash", "refuse", [("symlink", "./", v)])
layer("file-named-root", "refuse", [("file", "./")])
layer("overlay-xattr-forgery", "contain", [("dir", "x")])  # xattrs added below
layer("deep-symlink-loop", "contain", [("symlink", "loop", "loop/loop"), ("file", "loop/pwned")])

# A directory carrying forged trusted.overlay.* xattrs must not pass them on.
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("x")
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": v, "SCHILY.xattr.trusted.overlay.opaque": "y"}
    t.addfile(ti)
with open(os.path.join(out, "overlay-xattr-forgery.tar"), "wb") as f:
    f.write(buf.getvalue())

with open(os.path.join(out, "cases.txt"), "w") as f:
    for n, e in cases:
        f.write(f"{n} {e}\n")
